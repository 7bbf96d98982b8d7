"""Loading the demo film catalog (catalog/demo.py `films_load`, what `manage.py load_demo` and so
`make run` do): a real sync of the demo Douban (real HTTP, the real Douban client, the limiter on
the real Redis, covers stored under MEDIA_ROOT), the demo video imported once the run has made
its film, and a second load that starts nothing."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings

from catalog import demo, sync, tasks
from catalog.demo_source import content
from catalog.demo_source.server import DemoDouban
from catalog.models import SyncRun, Title, Video

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo_douban(clean_redis):
    with DemoDouban() as server:
        yield server


@pytest.fixture(scope="session")
def made_video(tmp_path_factory) -> Path:
    """The demo video, made once for the session (ffmpeg takes seconds)."""
    with override_settings(LIBRARY_DIR=tmp_path_factory.mktemp("demo-video")):
        return demo.video_generate()


@pytest.fixture
def demo_settings(settings, demo_douban, tmp_path, made_video):
    settings.CATALOG_DOUBAN_ROOT = demo_douban.root
    settings.CATALOG_DOUBAN_MIN_INTERVAL_S = 0
    settings.CATALOG_TMDB_API_KEY = ""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.LIBRARY_DIR = tmp_path / "library"
    (settings.LIBRARY_DIR / "videos").mkdir(parents=True)
    shutil.copy2(made_video, settings.LIBRARY_DIR / "videos" / made_video.name)
    return settings


def _load(user, django_capture_on_commit_callbacks) -> tuple[demo.FilmsLoad, list]:
    """films_load with its after-commit work held back: (result, callbacks)."""
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        loaded = demo.films_load(user=user)
    return loaded, callbacks


def test_loading_the_demo_syncs_every_demo_title_with_its_cover(demo_settings, staff, monkeypatch,
                                                                django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr(tasks.sync_run, "delay", lambda **kwargs: queued.append(("sync", kwargs)))
    monkeypatch.setattr(tasks.demo_videos_import, "apply_async", lambda **kwargs: queued.append(("videos", kwargs)))

    loaded, callbacks = _load(staff, django_capture_on_commit_callbacks)
    for callback in callbacks:
        callback()

    assert loaded.started
    assert loaded.run.trigger == "manual"
    assert loaded.run.requested_by == staff
    assert queued == [("sync", {"run_id": loaded.run.pk}), ("videos", {"kwargs": {"run_id": loaded.run.pk},
                                                                         "countdown": 2})]
    assert not demo.videos_import_after(run_id=loaded.run.pk)  # the run has not run yet: ask again later

    run = sync.sync_execute(run_id=loaded.run.pk)

    assert (run.state, run.listed, run.new, run.failed, run.errors) == ("done", 32, 32, 0, [])
    titles = list(Title.objects.filter(external_ids__source="douban").order_by("external_ids__value"))
    assert [t.external_ids.get(source="douban").value for t in titles] == content.demo_ids()
    assert sum(t.kind == "movie" for t in titles) == 24
    for title in titles:
        assert title.cover == f"covers/douban-{title.external_ids.get(source='douban').value}.png"
        data = (Path(demo_settings.MEDIA_ROOT) / title.cover).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (270, 400)
        assert title.imdb_id.startswith("tt99")
        assert title.release_date is not None
        assert title.credits.filter(role="director").exists()
        if title.kind == "tv":
            assert title.episode_count > 0
            assert title.episode_runtime_min > 0
        else:
            assert title.runtime_min > 0

    assert demo.videos_import_after(run_id=run.pk)
    video = Video.objects.get()
    film = content.subject(demo.DEMO_VIDEO_INDEX)
    assert video.title == Title.objects.get(external_ids__source="douban", external_ids__value=film.source_id)
    assert video.file_path.endswith(f"/videos/{film.title} ({film.year}).mp4")
    assert 39 <= video.duration_s <= 41
    assert (video.width, video.height) == (640, 360)


def test_loading_the_demo_again_starts_no_second_sync(demo_settings, staff, django_capture_on_commit_callbacks):
    first, _ = _load(staff, django_capture_on_commit_callbacks)
    again, _ = _load(staff, django_capture_on_commit_callbacks)  # the first still queued
    assert first.started
    assert not again.started
    assert again.run == first.run

    sync.sync_execute(run_id=first.run.pk)
    after, callbacks = _load(staff, django_capture_on_commit_callbacks)  # titles there: nothing to sync

    assert after.run is None
    assert after.titles == 32
    assert callbacks == []
    assert SyncRun.objects.count() == 1
    assert Video.objects.count() == 1  # the video imported at once, its film being there
    after_that, _ = _load(staff, django_capture_on_commit_callbacks)
    assert (after_that.run, Video.objects.count(), SyncRun.objects.count()) == (None, 1, 1)


def test_the_demo_video_is_made_once(made_video, settings):
    settings.LIBRARY_DIR = made_video.parent.parent
    made = made_video.stat().st_mtime_ns

    assert demo.video_generate() == made_video
    assert made_video.stat().st_mtime_ns == made
    assert made_video.name == "盐之路 (2026).mp4"
    assert not list(made_video.parent.glob("*.part*"))


def test_a_real_douban_root_is_never_synced_by_loading_the_demo(settings, staff):
    settings.CATALOG_DOUBAN_ROOT = "https://movie.douban.com"

    loaded = demo.films_load(user=staff)

    assert loaded.run is None
    assert "not the local demo Douban" in loaded.note
    assert SyncRun.objects.count() == 0


def test_load_demo_says_what_it_did_with_the_films(demo_settings, capsys, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr("catalog.demo.library_load", lambda: type("Job", (), {"imported": 0, "already_present": 6})())
    monkeypatch.setattr("scrobbling.demo.history_create", lambda **kwargs: 0)
    monkeypatch.setattr("project.demo.management.commands.load_demo.Command._demo_password", lambda self: "pw")

    with django_capture_on_commit_callbacks(execute=False):
        call_command("load_demo")

    out = capsys.readouterr().out
    run = SyncRun.objects.get()
    assert f"Demo films: started: sync run {run.pk} of {demo_settings.CATALOG_DOUBAN_ROOT}." in out


def test_a_demo_run_a_stopped_make_run_left_is_sent_again(demo_settings, staff, monkeypatch,
                                                          django_capture_on_commit_callbacks):
    """Titles there but the run still marked running with nobody holding it (make run stopped
    mid-sync): loading the demo hands the run back and queues its task again, not a new run."""
    first, _ = _load(staff, django_capture_on_commit_callbacks)
    sync.sync_execute(run_id=first.run.pk)
    SyncRun.objects.filter(pk=first.run.pk).update(state=SyncRun.State.RUNNING, lease_until=None)
    queued = []
    monkeypatch.setattr(tasks.sync_run, "delay", lambda **kwargs: queued.append(kwargs))
    monkeypatch.setattr(tasks.demo_videos_import, "apply_async", lambda **kwargs: None)

    again, callbacks = _load(staff, django_capture_on_commit_callbacks)
    for callback in callbacks:
        callback()

    assert (again.run, again.started, again.titles) == (first.run, False, 32)
    assert again.note.startswith(f"already running: sync run {first.run.pk}")
    assert queued == [{"run_id": first.run.pk}]
    assert SyncRun.objects.count() == 1
