from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from scrobbling import services


class Command(BaseCommand):
    help = (
        "Link a user's Last.fm or ListenBrainz account without a browser. Last.fm takes a session key "
        "(checked with user.getInfo); ListenBrainz a user token (checked with validate-token)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("service", choices=["lastfm", "listenbrainz"])
        parser.add_argument("--session-key", help="Last.fm session key.")
        parser.add_argument("--token", help="ListenBrainz user token.")
        parser.add_argument("--api-root", default="", help="A ListenBrainz-compatible server (Maloja, Koito...).")

    def handle(self, *args, username, service, session_key, token, api_root, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user called {username!r}.")
        try:
            if service == "lastfm":
                if not session_key or token or api_root:
                    raise CommandError("Last.fm takes --session-key KEY (and no --token or --api-root).")
                link = services.lastfm_link(user=user, session_key=session_key)
            else:
                if not token or session_key:
                    raise CommandError("ListenBrainz takes --token TOKEN [--api-root URL].")
                link = services.listenbrainz_link(user=user, token=token, api_root=api_root)
        except services.ScrobbleError as exc:
            raise CommandError(exc.message) from None
        waiting = services.BufferEntry.objects.filter(user=user, service=service).count()
        self.stdout.write(self.style.SUCCESS(
            f"{username} is linked to {link.get_service_display()} as {link.account_name}; {waiting} play(s) waiting."
        ))
