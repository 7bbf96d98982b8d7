"""Video files made playable: names matched to titles ("Title (Year)", "S01E02"), real tiny
videos probed with ffprobe, a re-import that changes nothing, the command, and the stream
with byte ranges that the player seeks with."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import AsyncClient

from catalog import film_services as services
from catalog.film_services import FilmError, ParsedName, parse_video_name
from catalog.models import Episode, Video
from project.accounts.services import token_create
from tests.catalog.film_support import make_video, small_catalog
from tests.catalog.test_stream import fetch

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("name", "parsed"), [
    ("英雄 (2002).mp4", ParsedName("英雄", 2002)),
    ("Blade Runner 2049 (2017).mkv", ParsedName("Blade Runner 2049", 2017)),
    ("1917.mp4", ParsedName("1917", None)),
    ("Hero.2002.1080p.BluRay.mp4", ParsedName("Hero", 2002)),
    ("Black Mirror S01E02.mp4", ParsedName("Black Mirror", None, 1, 2)),
    ("Black.Mirror.s02e10.720p.mkv", ParsedName("Black Mirror", None, 2, 10)),
    ("黑镜 (2011) - S01E03 - 白熊.mp4", ParsedName("黑镜", 2011, 1, 3)),
    ("黑镜/Season 1/S01E03.mp4", ParsedName("黑镜", None, 1, 3)),
    ("Show (2020)/S02E01.webm", ParsedName("Show", 2020, 2, 1)),
])
def test_file_names_say_the_title_year_season_and_episode(name, parsed):
    assert parse_video_name(Path("/library/videos") / name) == parsed


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """One second of ffmpeg's test pattern, H.264 in MP4 (about 10 KB)."""
    return make_video(tmp_path_factory.mktemp("clips") / "clip.mp4", 1)


@pytest.fixture
def videos(library_dir, clip) -> Path:
    folder = library_dir / "videos"
    for name in ["英雄 (2002).mp4", "Black Mirror S01E02.mp4", "黑镜/Season 1/S01E03.mp4", "Unknown Film (1999).mp4",
                 "天使爱美丽 (1990).mp4"]:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, folder / name)
    (folder / "黑镜 S01E09.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)
    (folder / "notes.txt").write_text("not a video")
    return folder


def test_videos_are_matched_to_titles_and_episodes_by_name(videos):
    catalog = small_catalog()
    report = services.video_import(path=str(videos))
    by_name = {Path(v.file_path).name: v for v in report.created}
    assert set(by_name) == {"英雄 (2002).mp4", "Black Mirror S01E02.mp4", "S01E03.mp4"}
    hero = by_name["英雄 (2002).mp4"]
    assert (hero.title, hero.episode, hero.mime_type, hero.width, hero.height) == (catalog["hero"], None, "video/mp4",
                                                                                    160, 90)
    assert hero.duration_s == pytest.approx(1, abs=0.2)
    assert hero.size_bytes == (videos / "英雄 (2002).mp4").stat().st_size
    second = by_name["Black Mirror S01E02.mp4"]
    assert (second.title, second.episode.season.number, second.episode.number, second.episode.name) == (
        catalog["show"], 1, 2, "一千五百万积分")
    third = by_name["S01E03.mp4"]
    assert (third.title, third.episode.number) == (catalog["show"], 3)  # the episode is made under the title
    skipped = {Path(path).name: why for path, why in report.skipped}
    assert skipped["Unknown Film (1999).mp4"] == "no title “Unknown Film” (1999) in the catalog"
    assert skipped["天使爱美丽 (1990).mp4"] == "“天使爱美丽” is in the catalog, but not from 1990"
    assert skipped["黑镜 S01E09.mp4"].startswith("not a playable video")
    assert not Episode.objects.filter(number=9).exists()  # nothing made for a file that does not play
    assert "notes.txt" not in skipped


def test_importing_again_changes_nothing_until_a_file_changes(videos, clip):
    small_catalog()
    services.video_import(path=str(videos))
    rows = sorted(Video.objects.values_list("pk", "file_path", "title_id", "episode_id"))
    episodes = Episode.objects.count()
    again = services.video_import(path=str(videos))
    assert (again.created, again.updated, again.unchanged) == ([], [], 3)
    assert sorted(Video.objects.values_list("pk", "file_path", "title_id", "episode_id")) == rows
    assert Episode.objects.count() == episodes
    changed = videos / "英雄 (2002).mp4"
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    third = services.video_import(path=str(videos))
    assert [Path(v.file_path).name for v in third.updated] == ["英雄 (2002).mp4"]
    assert Video.objects.count() == 3


def test_a_name_matching_two_titles_asks_for_the_year(videos):
    from tests.factories import TitleFactory

    small_catalog()
    TitleFactory(title="英雄", year=1999)
    TitleFactory(title="英雄", year=1998)
    os.rename(videos / "英雄 (2002).mp4", videos / "英雄.mp4")
    report = services.video_import(path=str(videos))
    assert dict((Path(p).name, why) for p, why in report.skipped)["英雄.mp4"] == (
        "“英雄” matches 3 titles; add the year to the file name")


@pytest.mark.parametrize("path", ["/etc", "../../etc", "videos/../../..", "", "a\x00b", "/no/such/folder"])
def test_only_folders_inside_the_library_are_imported_from_the_web(videos, path):
    with pytest.raises(FilmError) as refused:
        services.video_import(path=path)
    assert refused.value.field == "path"
    assert not Video.objects.exists()


def test_only_staff_import(videos, alice):
    with pytest.raises(FilmError) as refused:
        services.video_import(path=str(videos), user=alice)
    assert refused.value.code == "forbidden"


def test_the_command_imports_and_reports(videos, capsys):
    small_catalog()
    call_command("catalog_import_videos", str(videos))
    out, err = capsys.readouterr()
    assert "3 added, 0 updated, 0 unchanged, 3 skipped." in out
    assert "skipped" in err
    assert "Unknown Film (1999).mp4" in err
    call_command("catalog_import_videos", str(videos))
    assert "0 added, 0 updated, 3 unchanged" in capsys.readouterr().out


# --- streaming ------------------------------------------------------------------------------


@pytest.fixture
def video(videos):
    small_catalog()
    services.video_import(path=str(videos))
    return Video.objects.get(file_path__endswith="英雄 (2002).mp4")


def test_a_video_streams_with_byte_ranges(video, alice):
    viewer = AsyncClient()
    viewer.force_login(alice)
    whole = Path(video.file_path).read_bytes()
    response, body = fetch(viewer, video.get_stream_url())
    assert (response.status_code, response["Content-Type"], response["Accept-Ranges"], body) == (
        200, "video/mp4", "bytes", whole)
    response, body = fetch(viewer, video.get_stream_url(), range="bytes=100-199")
    assert (response.status_code, response["Content-Range"], body) == (206, f"bytes 100-199/{len(whole)}", whole[100:200])
    response, body = fetch(viewer, video.get_stream_url(), range=f"bytes={len(whole)}-")
    assert response.status_code == 416


def test_a_video_stream_needs_a_login_or_a_token(video, alice):
    response, _ = fetch(AsyncClient(), video.get_stream_url())
    assert response.status_code == 401
    raw = token_create(user=alice, name="player")[1]
    response, body = fetch(AsyncClient(), video.get_stream_url(), authorization=f"Bearer {raw}", range="bytes=0-3")
    assert (response.status_code, len(body)) == (206, 4)


def test_a_missing_video_file_is_410_and_an_unknown_video_404(video, alice):
    viewer = AsyncClient()
    viewer.force_login(alice)
    Path(video.file_path).unlink()
    response, body = fetch(viewer, video.get_stream_url())
    assert response.status_code == 410
    assert b"missing" in body
    response, _ = fetch(viewer, "/catalog/videos/999999/stream")
    assert response.status_code == 404
