"""Fixtures of the streaming tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from catalog import services
from catalog.models import Track
from tests.conftest import make_audio


@pytest.fixture(scope="session")
def long_wav(tmp_path_factory) -> Path:
    """An hour of 8 kHz mono WAV (58 MB): ffmpeg needs seconds to encode it, milliseconds to start."""
    return make_audio(tmp_path_factory.mktemp("long") / "long.wav", 3600, ["-ac", "1", "-ar", "8000", "-c:a", "pcm_s16le"], {})


@pytest.fixture
def long_track(library_dir, long_wav, db) -> Track:
    folder = library_dir / "long"
    folder.mkdir()
    os.link(long_wav, folder / long_wav.name)
    services.import_job_run(job_id=services.import_job_create(path=str(folder), enqueue=False).pk)
    return Track.objects.get(file_path__endswith=f"/long/{long_wav.name}")
