"""Shared pieces of the film catalog's page, API and player tests: a small catalog, and real
tiny videos made with ffmpeg."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

from django.conf import settings

from tests.factories import TitleFactory, credit, episode


def make_video(path: Path, seconds: float = 2, *, size: str = "160x90") -> Path:
    """A small real video (ffmpeg's test pattern, H.264 in MP4 so that chromium plays it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = ["-c:v", "libvpx", "-b:v", "200k", "-deadline", "realtime", "-cpu-used", "8"] if path.suffix == ".webm" else [
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
    subprocess.run(
        [settings.FFMPEG_BINARY, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size={size}:rate=15", *codec, str(path)],
        check=True, timeout=60,
    )
    return path


def small_catalog():
    """Three titles in two languages, with people, genres and countries; returns them by key."""
    from catalog.models import Country, ExternalId, Genre, Language, Release

    drama, comedy, scifi = (Genre.objects.get_or_create(name=n)[0] for n in ("剧情", "喜剧", "科幻"))
    china, usa = (Country.objects.get_or_create(name=n)[0] for n in ("中国大陆", "美国"))
    mandarin = Language.objects.get_or_create(name="汉语普通话")[0]
    hero = TitleFactory(title="英雄", original_title="Hero", other_titles=["Ying xiong"], year=2002, rating=7.7,
                        votes=400000, runtime_min=99, imdb_id="tt0299977", release_date=datetime.date(2002, 12, 14),
                        synopsis="秦王统一六国前夕……")
    hero.genres.set([drama])
    hero.countries.set([china])
    hero.languages.set([mandarin])
    Release.objects.create(title=hero, date=datetime.date(2002, 12, 14), region="中国大陆")
    Release.objects.create(title=hero, date=datetime.date(2004, 8, 27), region="美国")
    ExternalId.objects.create(title=hero, source="douban", kind="movie", value="1306123")
    ExternalId.objects.create(title=hero, source="tmdb", kind="movie", value="79")
    credit(hero, "张艺谋", "director")
    credit(hero, "李冯", "writer", 0)
    credit(hero, "张艺谋", "writer", 1)
    for order, name in enumerate(["李连杰", "梁朝伟", "张曼玉", "章子怡"]):
        credit(hero, name, "actor", order, character=f"角色{order}")
    amelie = TitleFactory(title="天使爱美丽", original_title="Le Fabuleux Destin d'Amélie Poulain",
                          other_titles=["Amélie"], year=2001, rating=8.7, release_date=datetime.date(2001, 4, 25))
    amelie.genres.set([comedy])
    credit(amelie, "Audrey Tautou", "actor")
    show = TitleFactory(kind="tv", title="黑镜", original_title="Black Mirror", year=2011, rating=8.6,
                        runtime_min=None, episode_count=3, episode_runtime_min=1, release_date=datetime.date(2011, 12, 4))
    show.genres.set([scifi])
    show.countries.set([usa])
    episode(show, 1, 1, name="国歌", runtime_min=1)
    episode(show, 1, 2, name="一千五百万积分")
    return {"hero": hero, "amelie": amelie, "show": show}
