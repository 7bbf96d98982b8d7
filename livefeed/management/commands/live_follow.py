from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from livefeed import services
from livefeed.services import LiveError


def acting_user(username: str | None):
    """The user the command acts as: --as USERNAME, or the first superuser (else staff user)."""
    users = get_user_model().objects
    if username:
        user = users.filter(username=username).first()
    else:
        user = users.filter(is_staff=True, is_active=True).order_by("-is_superuser", "pk").first()
    if user is None:
        raise CommandError(f"No user called {username!r}." if username else "No staff user: pass --as USERNAME.")
    return user


class Command(BaseCommand):
    help = "Follow a live room by its URL (adding the channel if it is new); a livefeed worker picks it up within seconds."

    def add_arguments(self, parser):
        parser.add_argument("url", help="https://live.douyin.com/<id> or https://live.bilibili.com/<id>")
        parser.add_argument("--as", dest="username", help="Act as this user (default: the first superuser or staff user).")
        parser.add_argument("--auto-follow", action="store_true", help="Follow it whenever it goes live.")

    def handle(self, *args, url, username, auto_follow, **options):
        user = acting_user(username)
        try:
            channel, created = services.channel_add(user=user, url=url, auto_follow=auto_follow)
            services.channel_follow(channel_id=channel.pk, actor=user)
        except LiveError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"{'Added and following' if created else 'Following'} channel {channel.pk} ({channel}).")
