import asyncio
import contextlib
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from livefeed.simulator import Simulator


class Command(BaseCommand):
    help = ("Run the local Douyin simulator (room pages, enter API, push socket) that the `simulator` platform "
            "follows; rooms are http://HOST:PORT/<digits>. Ctrl-C stops it.")

    def add_arguments(self, parser):
        root = urlsplit(settings.LIVEFEED_SIMULATOR_ROOT)
        parser.add_argument("--host", default=root.hostname or "127.0.0.1",
                            help="Address to listen on (default: LIVEFEED_SIMULATOR_ROOT's host).")
        parser.add_argument("--port", type=int, default=root.port or 8765,
                            help="Port (default: LIVEFEED_SIMULATOR_ROOT's port, 8765).")
        parser.add_argument("--rate", type=float, default=20.0, help="Messages a second per room (default 20).")
        parser.add_argument("--resend", type=int, default=20,
                            help="Recent messages re-sent to every reconnecting socket, as Douyin does (default 20).")
        parser.add_argument("--stream-port", type=int, default=0,
                            help="Port of the rooms' video streams (FLV made by ffmpeg; default: a free port, "
                                 "which the enter API's pull URLs name).")
        parser.add_argument("--shared-stream", action="store_true",
                            help="One ffmpeg makes the video of every room (for many rooms at once: benchmarks).")

    def handle(self, *args, host, port, rate, resend, stream_port=0, shared_stream=False, **options):
        if rate < 0:
            raise CommandError("--rate must be at least 0")
        simulator = Simulator(host=host, port=port, rate=rate, resend_count=max(resend, 0),
                              stream_port=stream_port,
                              stream_shared=shared_stream)

        async def run() -> None:
            try:
                await simulator.start()
            except OSError as exc:
                raise CommandError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from None
            self.stdout.write(f"Douyin simulator on {simulator.root} ({rate:g} messages/s per room); "
                              f"follow {simulator.root}/7001, control at {simulator.root}/_sim/7001; "
                              f"streams on {simulator.streams.netloc}")
            try:
                await asyncio.Future()
            finally:
                await simulator.stop()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())
