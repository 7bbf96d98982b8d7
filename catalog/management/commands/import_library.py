from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from catalog import services


class Command(BaseCommand):
    help = "Import the audio files below PATH into the library (same as the Import page)."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument(
            "--background", action="store_true", help="Hand the import to a Celery worker instead of running it here."
        )

    def handle(self, *args, path, background, **options):
        try:
            # On the command line a relative PATH means relative to the current folder.
            folder = str(Path(path).expanduser().resolve())
            job = services.import_job_create(path=folder, restrict_to_library=False, enqueue=background)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        if background:
            self.stdout.write(f"Import #{job.pk} queued; follow it on the Import page.")
            return
        job = services.import_job_run(job_id=job.pk)
        for skip in job.skips.all():
            self.stderr.write(f"skipped {skip.path}: {skip.reason}")
        summary = (
            f"Import #{job.pk} {job.status}: {job.files_seen} seen, {job.imported} imported, "
            f"{job.already_present} already in the library, {job.skipped} skipped."
        )
        if job.status == job.Status.FAILED:
            raise CommandError(f"{summary} {job.error}")
        self.stdout.write(self.style.SUCCESS(summary))
