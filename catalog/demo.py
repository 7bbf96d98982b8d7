"""Demo content: a handful of generated tracks (no copyrighted audio ships)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings


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


def _expression(track: DemoTrack) -> str:
    """A gentle chord with a pulse at the track's tempo: a sum of sines under an envelope."""
    r = track.root_hz
    beat = track.tempo_bpm / 60
    chord = f"(sin(2*PI*{r}*t)+0.6*sin(2*PI*{r * 1.25:.3f}*t)+0.5*sin(2*PI*{r * 1.5:.3f}*t)+0.3*sin(2*PI*{r * 2:.3f}*t))"
    pulse = f"(0.55+0.45*exp(-6*mod(t,{1 / beat:.4f})))"
    fade = f"min(1,t/2)*min(1,({track.duration_s}-t)/3)"
    return f"0.18*{chord}*{pulse}*{fade}"


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
        command = [
            settings.FFMPEG_BINARY, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"aevalsrc='{_expression(track)}|{_expression(track)}':s=44100:d={track.duration_s}",
            *codec,
            "-metadata", f"title={track.title}", "-metadata", f"artist={track.artist}",
            "-metadata", f"album={track.album}", "-metadata", f"track={track.track_number}",
            "-metadata", "date=2026", str(path.with_suffix(".part" + path.suffix)),
        ]
        subprocess.run(command, check=True, timeout=120)
        path.with_suffix(".part" + path.suffix).rename(path)
    return paths
