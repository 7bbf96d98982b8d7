from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from catalog import film_services
from catalog.film_services import FilmError


class Command(BaseCommand):
    help = ("Make the video files below FOLDER (default: LIBRARY_DIR) playable in the film catalog: each is "
            "matched to a title by its name (\"Title (Year).mp4\", \"Show S01E02.mkv\"). Safe to run again.")

    def add_arguments(self, parser):
        parser.add_argument("folder", nargs="?", default=None)

    def handle(self, *args, folder, **options):
        # On the command line a relative FOLDER means relative to the current folder.
        path = str(Path(folder).expanduser().resolve()) if folder else str(settings.LIBRARY_DIR)
        try:
            report = film_services.video_import(path=path, restrict_to_library=False)
        except FilmError as exc:
            raise CommandError(exc.message) from None
        for video in report.created:
            self.stdout.write(f"added {video.file_path} -> {video.episode or video.title}")
        for video in report.updated:
            self.stdout.write(f"updated {video.file_path} -> {video.episode or video.title}")
        for file_path, why in report.skipped:
            self.stderr.write(f"skipped {file_path}: {why}")
        self.stdout.write(self.style.SUCCESS(
            f"{len(report.created)} added, {len(report.updated)} updated, {report.unchanged} unchanged, "
            f"{len(report.skipped)} skipped."))
