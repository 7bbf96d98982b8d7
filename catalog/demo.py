"""Demo content: a handful of generated tracks (no copyrighted audio ships), and the demo film
catalog: a sync of the local demo Douban and a generated video for one of its films."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from catalog import film_services, services, sync
from catalog.clients.douban import DoubanClient
from catalog.demo_source import content as demo_content
from catalog.demo_source.server import NotLoopback, check_loopback
from catalog.models import ImportJob, SyncRun, Title


@dataclass(frozen=True)
class DemoTrack:
    file_name: str
    title: str
    artist: str
    album: str
    track_number: int
    duration_s: int
    root_hz: float
    tempo_bpm: int


DEMO_TRACKS = [
    DemoTrack("01-first-light.mp3", "First Light", "The Sine Collective", "Waveforms", 1, 75, 220.0, 96),
    DemoTrack("02-harmonic-drift.mp3", "Harmonic Drift", "The Sine Collective", "Waveforms", 2, 120, 261.63, 84),
    DemoTrack("03-overtone-avenue.mp3", "Overtone Avenue", "The Sine Collective", "Waveforms", 3, 95, 196.0, 110),
    DemoTrack("01-night-bus.ogg", "Night Bus", "Lo Pass", "City Filters", 1, 150, 146.83, 72),
    DemoTrack("02-rain-on-glass.ogg", "Rain on Glass", "Lo Pass", "City Filters", 2, 180, 174.61, 66),
    DemoTrack("01-square-dance.flac", "Square Dance", "Nyquist", "Sample Rate", 1, 64, 329.63, 128),
]


# A I-V-vi-IV progression as frequency ratios of the root (just intonation).
PROGRESSION = [(1, 1.25, 1.5), (1.5, 1.875, 2.25), (1.667, 2.0, 2.5), (1.333, 1.667, 2.0)]


def _loop_expression(track: DemoTrack) -> tuple[str, float]:
    """One pass through the progression, two beats a chord, each beat plucked; returns (expr, seconds)."""
    beat_s = 60 / track.tempo_bpm
    chord_s = 2 * beat_s
    r = track.root_hz
    terms = []
    for index, ratios in enumerate(PROGRESSION):
        gate = f"between(t,{index * chord_s:.4f},{(index + 1) * chord_s:.4f})"
        tones = "+".join(f"sin(2*PI*{r * ratio:.3f}*t)" for ratio in ratios)
        terms.append(f"{gate}*({tones})")
    pluck = f"(0.5+0.5*exp(-5*mod(t,{beat_s:.4f})))"
    bass = f"0.5*sin(2*PI*{r / 2:.3f}*t)"
    return f"0.16*(({'+'.join(terms)})+{bass})*{pluck}", chord_s * len(PROGRESSION)


def generate(target: Path | None = None) -> list[Path]:
    """Write the demo files (skipping those already there); returns their paths."""
    folder = target or Path(settings.LIBRARY_DIR) / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for track in DEMO_TRACKS:
        path = folder / track.artist.replace(" ", "-").lower() / track.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.append(path)
        if path.exists() and path.stat().st_size > 0:
            continue
        codec = {".mp3": ["-c:a", "libmp3lame", "-b:a", "160k"], ".ogg": ["-c:a", "libvorbis", "-q:a", "4"],
                 ".flac": ["-c:a", "flac"]}[path.suffix]
        expression, loop_s = _loop_expression(track)
        sample_rate = 44100
        # Synthesise one pass of the progression, then loop it: fast even for long tracks.
        graph = (
            f"aevalsrc='{expression}|{expression}':s={sample_rate}:d={loop_s:.4f},"
            f"aloop=loop=-1:size={round(loop_s * sample_rate)},atrim=duration={track.duration_s},"
            f"afade=t=in:d=2,afade=t=out:st={track.duration_s - 3}:d=3"
        )
        command = [
            settings.FFMPEG_BINARY, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", graph,
            *codec,
            "-metadata", f"title={track.title}", "-metadata", f"artist={track.artist}",
            "-metadata", f"album={track.album}", "-metadata", f"track={track.track_number}",
            "-metadata", "date=2026", str(path.with_suffix(".part" + path.suffix)),
        ]
        subprocess.run(command, check=True, timeout=120)
        path.with_suffix(".part" + path.suffix).rename(path)
    return paths


def library_load() -> ImportJob:
    """Generate the demo files and import them, here and now (no worker): the finished job.
    FileNotFoundError when ffmpeg is missing."""
    paths = generate()
    job = services.import_job_create(path=str(paths[0].parent.parent), restrict_to_library=False, enqueue=False)
    return services.import_job_run(job_id=job.pk)


# --- the demo film catalog ------------------------------------------------------------------
#
# `make run` starts the demo Douban (catalog/demo_source/, `manage.py catalog_demo_server`) and
# points CATALOG_DOUBAN_ROOT at it; `films_load` then starts a real sync of it, which the worker
# runs while the user watches its page, and makes a short generated video for one demo film,
# imported once the sync has made that film.

DEMO_VIDEO_S = 40
DEMO_VIDEO_INDEX = 0  # 盐之路 The Salt Road


@dataclass(frozen=True)
class FilmsLoad:
    run: SyncRun | None  # the demo sync started now or already in flight; None when none was needed
    started: bool
    titles: int  # demo titles already in the catalog
    note: str  # one line for load_demo's output


def douban_is_demo() -> bool:
    """Whether CATALOG_DOUBAN_ROOT is a server on this machine (make run's demo Douban), so
    that loading the demo may sync from it: never a sync of the real Douban from load_demo."""
    try:
        check_loopback(urlsplit(settings.CATALOG_DOUBAN_ROOT).hostname or "")
    except NotLoopback:
        return False
    return True


def films_load(*, user) -> FilmsLoad:
    """Sync the demo films once: a run of the Douban source when no demo title is in the
    catalog yet; a run in flight (one a stopped `make run` left) is handed back by sync_start,
    which sends its task again when no worker holds it; otherwise nothing new. The demo video
    is imported now if its film is there, or by a task once the run ends. FileNotFoundError
    when ffmpeg is missing."""
    if not douban_is_demo():
        return FilmsLoad(None, False, 0, f"skipped: CATALOG_DOUBAN_ROOT is {settings.CATALOG_DOUBAN_ROOT}, not the "
                                         f"local demo Douban (make run starts one)")
    video_generate()
    present = Title.objects.filter(external_ids__source=DoubanClient.name,
                                   external_ids__value__in=demo_content.demo_ids()).distinct().count()
    in_flight = SyncRun.objects.filter(source=DoubanClient.name, state__in=SyncRun.IN_FLIGHT).exists()
    if present and not in_flight:
        videos_import()
        return FilmsLoad(None, False, present, f"{present} demo titles already in the catalog")
    run, started = sync.sync_start(source=DoubanClient.name, trigger=SyncRun.Trigger.MANUAL, user=user)
    transaction.on_commit(lambda: _videos_import_later(run.pk), robust=True)
    return FilmsLoad(run, started, present, f"{'started' if started else 'already running'}: sync run {run.pk} of "
                                            f"{settings.CATALOG_DOUBAN_ROOT}")


def _videos_import_later(run_id: int) -> None:
    from catalog.tasks import demo_videos_import

    demo_videos_import.apply_async(kwargs={"run_id": run_id}, countdown=2)


def videos_folder() -> Path:
    return Path(settings.LIBRARY_DIR) / "videos"


def video_path() -> Path:
    """LIBRARY_DIR/videos/<Title> (<year>).mp4, the name the video import matches by."""
    subject = demo_content.subject(DEMO_VIDEO_INDEX)
    return videos_folder() / f"{subject.title} ({subject.year}).mp4"


def video_generate() -> Path:
    """A short test-pattern film with a tone (ffmpeg's testsrc2 and sine), made once."""
    path = video_path()
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".part.mp4")
    command = [
        settings.FFMPEG_BINARY, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25:duration={DEMO_VIDEO_S}",
        "-f", "lavfi", "-i", f"sine=frequency=330:beep_factor=2:duration={DEMO_VIDEO_S}",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "32", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", "-shortest", str(partial),
    ]
    subprocess.run(command, check=True, timeout=120)
    partial.rename(path)
    return path


def videos_import():
    """Import the demo videos folder (matched to titles by name; unchanged files are skipped)."""
    return film_services.video_import(path=str(videos_folder()), restrict_to_library=False)


def videos_import_after(*, run_id: int) -> bool:
    """Import the demo video once the run has ended (True), or False while it is in flight."""
    if SyncRun.objects.filter(pk=run_id, state__in=SyncRun.IN_FLIGHT).exists():
        return False
    if video_path().exists():
        videos_import()
    return True
