from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from scrobbling import links
from scrobbling.clients import registry
from scrobbling.inputs import ScrobbleError
from scrobbling.models import BufferEntry


class Command(BaseCommand):
    help = (
        "Link a user's scrobbling account without a browser. A service linked in the browser "
        "(Last.fm, Libre.fm) takes a session key (checked with user.getInfo); one that takes a token "
        "(ListenBrainz) a user token (checked with validate-token)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("service", choices=registry.names())
        parser.add_argument("--session-key", help="Session key (Last.fm, Libre.fm).")
        parser.add_argument("--token", help="User token (ListenBrainz).")
        parser.add_argument("--api-root", default="", help="A ListenBrainz-compatible server (Maloja, Koito...).")

    def handle(self, *args, username, service, session_key, token, api_root, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user called {username!r}.")
        kind = registry.get(service)
        try:
            if kind.auth == "web":
                if not session_key or token or api_root:
                    raise CommandError(f"{kind.label} takes --session-key KEY (and no --token or --api-root).")
                link = links.link_web(user=user, service=service, session_key=session_key)
            else:
                if not token or session_key:
                    raise CommandError(f"{kind.label} takes --token TOKEN [--api-root URL].")
                link = links.link_token(user=user, service=service, token=token, api_root=api_root)
        except ScrobbleError as exc:
            raise CommandError(exc.message) from None
        waiting = BufferEntry.objects.filter(user=user, service=service).count()
        self.stdout.write(self.style.SUCCESS(
            f"{username} is linked to {link.get_service_display()} as {link.account_name}; {waiting} play(s) waiting."
        ))
