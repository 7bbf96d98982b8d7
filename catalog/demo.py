"""Demo content: a handful of generated tracks (no copyrighted audio ships)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from catalog import services
from catalog.models import ImportJob


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
