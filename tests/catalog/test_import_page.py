from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from catalog.models import ImportJob, Track
from project.celery import app as celery_app

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager_celery():
    """Run tasks inline, as a worker would, once the transaction commits."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


def test_import_page_is_for_staff_only(alice_client):
    response = alice_client.get("/library/import/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_staff_start_an_import_that_runs_after_commit(staff_client, library_dir, eager_celery, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = staff_client.post("/library/import/", {"action": "import", "path": str(library_dir)})
    assert len(callbacks) == 1
    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/library/import/{job.pk}/"
    job.refresh_from_db()
    assert job.status == "done"
    assert job.imported == 4
    assert Track.objects.count() == 4


def test_progress_partial_polls_while_running_and_stops_when_done(staff_client, library_dir):
    job = ImportJob.objects.create(path=str(library_dir), status=ImportJob.Status.RUNNING, files_total=10, files_seen=4, imported=3, skipped=1)
    partial = staff_client.get(f"/library/import/{job.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 1s"' in partial
    assert 'aria-valuenow="40"' in partial
    assert "4 of 10 files" in partial
    job.status = ImportJob.Status.DONE
    job.save()
    partial = staff_client.get(f"/library/import/{job.pk}/", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in partial
    assert 'aria-valuenow="100"' in partial


def test_skipped_files_are_shown_with_their_reason(staff_client, imported):
    body = staff_client.get(f"/library/import/{imported.pk}/").content.decode()
    assert "corrupt.mp3" in body
    assert "not a playable audio file" in body


def test_import_outside_the_library_keeps_input_and_explains(staff_client, library_dir, tmp_path):
    response = staff_client.post("/library/import/", {"action": "import", "path": "/etc"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "inside the library folder" in body
    assert 'value="/etc"' in body
    assert not ImportJob.objects.exists()


def test_upload_stores_files_in_the_library_and_imports_them(staff_client, library_dir, eager_celery, django_capture_on_commit_callbacks):
    data = (library_dir / "music" / "tagged.mp3").read_bytes()
    (library_dir / "music" / "tagged.mp3").unlink()
    upload = SimpleUploadedFile("my song.mp3", data, content_type="audio/mpeg")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post("/library/import/", {"action": "upload", "files": [upload]})
    assert response.status_code == 302
    track = Track.objects.get(title="Test Song")
    assert "/uploads/" in track.file_path
    assert track.file_path.endswith("my song.mp3")


def test_upload_refuses_non_audio_files(staff_client, library_dir):
    upload = SimpleUploadedFile("evil.sh", b"#!/bin/sh\n", content_type="text/x-sh")
    response = staff_client.post("/library/import/", {"action": "upload", "files": [upload]})
    assert response.status_code == 400
    assert "not an audio file" in response.content.decode()
    assert not (library_dir / "uploads").exists()


def test_api_starts_an_import_for_staff_and_refuses_others(client, staff, alice, library_dir):
    from project.accounts.services import token_create

    _, staff_token = token_create(user=staff, name="t")
    _, alice_token = token_create(user=alice, name="t")
    response = client.post("/api/library/imports", {"path": str(library_dir)}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    response = client.post("/api/library/imports", {"path": str(library_dir)}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {alice_token}")
    assert response.status_code == 403
    response = client.post("/api/library/imports", {"path": "nope"}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {staff_token}")
    assert response.status_code == 400
    assert "No such folder" in response.json()["message"]


def test_a_job_started_seconds_ago_says_just_now(staff_client, library_dir):
    job = ImportJob.objects.create(path=str(library_dir), status=ImportJob.Status.DONE, finished_at=timezone.now())
    page = staff_client.get("/library/import/").content.decode()
    assert "0\xa0minutes" not in page
    assert page.count("just now") == 2  # the row's status line and the Started column
    detail = staff_client.get(f"/library/import/{job.pk}/").content.decode()
    assert "Finished just now." in detail


def test_an_older_job_says_how_long_ago(staff_client, library_dir):
    job = ImportJob.objects.create(path=str(library_dir), status=ImportJob.Status.DONE,
                                   finished_at=timezone.now() - timedelta(minutes=5))
    ImportJob.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(minutes=7))
    assert "7\xa0minutes ago" in staff_client.get("/library/import/").content.decode()
    assert "Finished 5\xa0minutes ago." in staff_client.get(f"/library/import/{job.pk}/").content.decode()
