from django.core.management.base import BaseCommand, CommandError

from livefeed import services
from livefeed.clients import UnsupportedUrl, client_for_url
from livefeed.management.commands.live_follow import acting_user
from livefeed.models import LiveChannel
from livefeed.services import LiveError


class Command(BaseCommand):
    help = "Stop following a live room (by its URL or channel id); what was received is kept."

    def add_arguments(self, parser):
        parser.add_argument("channel", help="The room's URL or the channel id.")
        parser.add_argument("--as", dest="username", help="Act as this user (default: the first superuser or staff user).")

    def handle(self, *args, channel, username, **options):
        user = acting_user(username)
        if channel.isdigit():
            found = LiveChannel.objects.filter(pk=int(channel)).first()
        else:
            try:
                client, ref = client_for_url(channel)
            except UnsupportedUrl as exc:
                raise CommandError(str(exc)) from None
            found = LiveChannel.objects.filter(platform=client.name, ref=ref).first()
        if found is None:
            raise CommandError(f"No channel {channel!r}.")
        try:
            services.channel_unfollow(channel_id=found.pk, actor=user)
        except LiveError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Stopped following channel {found.pk} ({found}).")
