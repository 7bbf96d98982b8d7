from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from catalog import services
from catalog.models import Album, Artist, ImportJob, Track

pytestmark = pytest.mark.django_db


def test_import_reads_tags_and_stream_properties(imported):
    track = Track.objects.select_related("artist", "album").get(title="Test Song")
    # second.mp3 ("test artist") is imported first: names match without regard to case
    assert track.artist.name.lower() == "test artist"
    assert track.album.title.lower() == "test album"
    assert track.album.year == 2024
    assert track.track_number == 2
    assert 3.9 < track.duration_s < 4.2
    assert track.format == "mp3"
    assert track.mime_type == "audio/mpeg"
    assert track.sample_rate_hz == 44100
    assert 100_000 < track.bitrate_bps < 160_000
    assert track.size_bytes == Path(track.file_path).stat().st_size
    assert len(track.checksum) == 64


def test_artist_and_album_names_are_matched_without_regard_to_case(imported):
    assert Artist.objects.filter(name__iexact="test artist").count() == 1
    assert Album.objects.filter(title__iexact="test album").count() == 1
    assert Track.objects.filter(album__title__iexact="Test Album").count() == 2


def test_untagged_file_gets_title_from_file_name_and_unknown_artist(imported):
    track = Track.objects.get(format="ogg")
    assert track.title == "No Tags Here"
    assert track.artist.name == "Unknown Artist"
    assert track.album is None


def test_non_ascii_tags_survive(imported):
    assert Track.objects.get(title="Flac Tone").artist.name == "Ünïcode Ärtist"


def test_corrupt_and_non_audio_files_are_skipped_with_reasons(imported):
    assert imported.status == ImportJob.Status.DONE
    assert imported.files_seen == 6
    assert imported.imported == 4
    assert imported.skipped == 2
    reasons = {Path(skip.path).name: skip.reason for skip in imported.skips.all()}
    assert set(reasons) == {"corrupt.mp3", "notes.txt"}
    assert "not an audio file" in reasons["notes.txt"]
    assert "not a playable audio file" in reasons["corrupt.mp3"]


def test_reimporting_the_same_folder_creates_nothing(imported, library_dir):
    before = Track.objects.count()
    job = services.import_job_run(job_id=services.import_job_create(path=str(library_dir), enqueue=False).pk)
    assert Track.objects.count() == before
    assert job.imported == 0
    assert job.already_present == 4
    assert job.skipped == 2


def test_a_copy_of_a_known_file_elsewhere_is_not_imported_twice(imported, library_dir):
    copy = library_dir / "elsewhere"
    copy.mkdir()
    (copy / "same.mp3").write_bytes((library_dir / "music" / "tagged.mp3").read_bytes())
    outcome = services.track_import_file(path=copy / "same.mp3")
    assert outcome.status == "present"
    assert Track.objects.filter(title="Test Song").count() == 1


def test_a_moved_file_is_followed(imported, library_dir):
    track = Track.objects.get(title="Test Song")
    new_place = library_dir / "moved.mp3"
    Path(track.file_path).rename(new_place)
    services.track_import_file(path=new_place)
    track.refresh_from_db()
    assert track.file_path == str(new_place.resolve())


def test_web_imports_are_limited_to_the_library_folder(library_dir, staff, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    with pytest.raises(ValidationError, match="inside the library folder"):
        services.import_job_create(path=str(outside), user=staff, enqueue=False)


def test_only_staff_may_import(library_dir, alice):
    with pytest.raises(PermissionDenied):
        services.import_job_create(path=str(library_dir), user=alice, enqueue=False)


def test_missing_folder_is_a_clear_error(library_dir, staff):
    with pytest.raises(ValidationError, match="No such folder"):
        services.import_job_create(path="does-not-exist", user=staff, enqueue=False)


def test_a_finished_job_delivered_twice_changes_nothing(imported):
    assert services.import_job_run(job_id=imported.pk) is None
    imported.refresh_from_db()
    assert imported.status == ImportJob.Status.DONE


def test_management_command_imports_and_reports(library_dir, capsys):
    call_command("import_library", str(library_dir))
    out, err = capsys.readouterr()
    assert "4 imported" in out
    assert "corrupt.mp3" in err
    assert Track.objects.count() == 4


def test_management_command_rejects_missing_path(db, tmp_path):
    with pytest.raises(CommandError, match="No such folder"):
        call_command("import_library", str(tmp_path / "nope"))
