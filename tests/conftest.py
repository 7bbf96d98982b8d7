"""Fixtures shared by every app's tests: named users, real audio files, a library."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings as django_settings

from tests.factories import UserFactory

# Live ASGI servers (Daphne subprocesses on the test database) and the Playwright browser.
pytest_plugins = ["tests.live"]

# (file name, seconds, ffmpeg codec args, tags): real audio made with ffmpeg once per run.
AUDIO_FILES = [
    ("tagged.mp3", 4, ["-c:a", "libmp3lame", "-b:a", "128k"],
     {"title": "Test Song", "artist": "Test Artist", "album": "Test Album", "track": "2/9", "date": "2024"}),
    ("second.mp3", 3, ["-c:a", "libmp3lame", "-b:a", "96k"],
     {"title": "Second Song", "artist": "test artist", "album": "test album", "track": "3"}),
    ("05 - No Tags Here.ogg", 3, ["-c:a", "libvorbis"], {}),
    ("tone.flac", 2, ["-c:a", "flac"], {"title": "Flac Tone", "artist": "Ünïcode Ärtist"}),
]


def make_audio(path: Path, seconds: float, codec: list[str], tags: dict[str, str], frequency: int = 440) -> Path:
    metadata: list[str] = []
    for key, value in tags.items():
        metadata += ["-metadata", f"{key}={value}"]
    subprocess.run(
        [django_settings.FFMPEG_BINARY, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", f"sine=frequency={frequency}:duration={seconds}:sample_rate=44100",
         "-ac", "2", *codec, *metadata, str(path)],
        check=True, timeout=60,
    )
    return path


@pytest.fixture(scope="session")
def audio_source(tmp_path_factory) -> Path:
    """A folder of small real audio files (tagged, untagged, several formats)."""
    folder = tmp_path_factory.mktemp("audio-source")
    for index, (name, seconds, codec, tags) in enumerate(AUDIO_FILES):
        make_audio(folder / name, seconds, codec, tags, frequency=330 + 110 * index)
    return folder


@pytest.fixture
def library_dir(tmp_path, settings, audio_source) -> Path:
    """LIBRARY_DIR pointing at a fresh copy of the audio files, plus two bad files."""
    library = tmp_path / "library"
    shutil.copytree(audio_source, library / "music")
    (library / "music" / "corrupt.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x10" + bytes(range(256)) * 40)
    (library / "music" / "notes.txt").write_text("liner notes\n")
    settings.LIBRARY_DIR = library
    return library


_left_out = pytest.StashKey[int]()
# pytest-django's fixtures behind every test that touches the test database.
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback"}


def _on_sqlite() -> bool:
    return django_settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"


def _uses_the_database(item: pytest.Item) -> bool:
    return bool(DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ()))) or bool(
        item.get_closest_marker("django_db"))


def pytest_collection_modifyitems(config, items):
    """Deselect (not skip) what this run leaves out:
    - on SQLite, the tests marked `postgres_only`; each such mark must say why;
    - with CHORUS_TEST_DATABASE_TESTS_ONLY=1 (make test's runs after the first database),
      the tests that never touch the database: they ran already and cannot differ."""
    unexplained = [item.nodeid for item in items
                   if (mark := item.get_closest_marker("postgres_only")) and not mark.kwargs.get("reason")]
    if unexplained:
        raise pytest.UsageError("postgres_only needs reason=...: " + ", ".join(unexplained))
    sqlite = _on_sqlite()
    database_tests_only = os.environ.get("CHORUS_TEST_DATABASE_TESTS_ONLY") == "1"
    kept, left_out = [], []
    for item in items:
        leave_out = (sqlite and item.get_closest_marker("postgres_only")) or (
            database_tests_only and not _uses_the_database(item))
        (left_out if leave_out else kept).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        config.stash[_left_out] = len(left_out)
    # Tests marked `long` first (otherwise in pytest-django's order): make test hands whole
    # files to pytest-xdist workers in this order, and one that took a minute at the end
    # would keep the run waiting for it alone.
    items[:] = sorted(kept, key=lambda item: item.get_closest_marker("long") is None)


def pytest_sessionfinish(session, exitstatus):
    """A selection (-k, a file) of tests that this run leaves out is not an error: the run
    passes with nothing to do, instead of pytest's "no tests ran" (exit status 5)."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and session.config.stash.get(_left_out, 0):
        session.exitstatus = pytest.ExitCode.OK


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """On SQLite the test database is a file next to DATABASE_URL's (tests/env.py puts that
    in a private folder), not Django's default in-memory one: live servers are other
    processes and must open the same database."""
    database = django_settings.DATABASES["default"]
    if database["ENGINE"] == "django.db.backends.sqlite3":
        name = os.environ.get("TEST_DATABASE_NAME") or "test_chorus"
        database.setdefault("TEST", {})["NAME"] = str(Path(database["NAME"]).with_name(f"{name}.sqlite3"))


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """The test database, and at the end of the run no session left on it: connections that
    worker threads of async tests opened (and that only those threads could close) are ended,
    so the database can be dropped."""
    yield
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture
def alice(db):
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    return UserFactory(username="bob")


@pytest.fixture
def staff(db):
    return UserFactory(username="sam", is_staff=True)


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.fixture
def imported(db, library_dir):
    """The library folder imported once; returns the finished ImportJob."""
    from catalog import services

    job = services.import_job_create(path=str(library_dir), enqueue=False)
    return services.import_job_run(job_id=job.pk)


@pytest.fixture
def track(imported):
    from catalog.models import Track

    return Track.objects.get(title="Test Song")


@pytest.fixture
def redis_client():
    client = redis_lib.Redis.from_url(django_settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def clean_redis(redis_client):
    """The test's Redis database empty before and after (live lists, presence, queued tasks)."""
    redis_client.flushdb()
    yield
    redis_client.flushdb()


class Published(list):
    """(topic, event) pairs that project.realtime published, in order. Events go out only
    after commit, so run the code under test in `with published.on_commit():` (a test's
    transaction never commits; this runs what would have run on commit, as it would)."""

    def on_commit(self):
        from django.test import TestCase

        return TestCase.captureOnCommitCallbacks(execute=True)

    def of_type(self, event_type: str) -> list[tuple[str, dict]]:
        return [(topic, event) for topic, event in self if event.get("type") == event_type]


@pytest.fixture
def published(monkeypatch) -> Published:
    """What the services publish (after commit), still sent on to Redis as usual."""
    from project import realtime

    sent = Published()
    real_publish = realtime.publish

    def capture(topic: str, event: dict):
        sent.append((topic, event))
        return real_publish(topic, event)

    monkeypatch.setattr(realtime, "publish", capture)
    return sent
