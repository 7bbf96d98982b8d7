import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from catalog import demo as catalog_demo
from catalog.sync import SyncRefused
from livefeed import demo as livefeed_demo
from scrobbling import demo as scrobbling_demo

DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = ("Create the demo user, import a handful of generated demo tracks, give the user a listening history, "
            "add a live channel on the local simulator, and sync the demo films from the local demo Douban "
            "(when CATALOG_DOUBAN_ROOT points at one, as make run does).")

    def handle(self, *args, **options):
        try:
            job = catalog_demo.library_load()
        except FileNotFoundError:
            raise CommandError("ffmpeg is not installed: sudo apt-get install ffmpeg") from None
        self.stdout.write(f"Demo tracks: {job.imported} imported, {job.already_present} already there.")
        password = self._demo_password()
        User = get_user_model()
        user, created = User.objects.get_or_create(username=DEMO_USERNAME, defaults={"is_staff": True, "is_superuser": True})
        if created or not user.check_password(password):
            user.set_password(password)
            user.save()
        plays = scrobbling_demo.history_create(user=user)
        if plays:
            self.stdout.write(f"Demo listening history: {plays} plays over 90 days.")
        _, created = livefeed_demo.channel_load(user=user)
        if created:
            self.stdout.write("Demo live channel: a room on the local simulator, followed whenever it is live.")
        try:
            films = catalog_demo.films_load(user=user)
        except SyncRefused as exc:
            self.stdout.write(f"Demo films: not synced now ({exc}).")
        else:
            self.stdout.write(f"Demo films: {films.note}.")
        self.stdout.write(self.style.SUCCESS(f"Demo login: user {DEMO_USERNAME!r}, password {password!r}"))

    def _demo_password(self) -> str:
        """One random password per installation, kept in var/ so it survives restarts."""
        path = Path(settings.BASE_DIR) / "var" / "demo-password.txt"
        if path.exists():
            return path.read_text().strip()
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        password = "-".join(secrets.token_urlsafe(4) for _ in range(3))
        # Created owner-only, never readable by others even for a moment.
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
            file.write(password + "\n")
        return password
