import signal
import threading
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from catalog.demo_source.server import DemoDouban, NotLoopback, check_loopback

DEFAULT_PORT = 8766


def _default_address() -> tuple[str, int]:
    """CATALOG_DOUBAN_ROOT's host and port when it points at this machine (make run points it
    at this server), else 127.0.0.1:8766."""
    root = urlsplit(settings.CATALOG_DOUBAN_ROOT)
    try:
        check_loopback(root.hostname or "")
    except NotLoopback:
        return "127.0.0.1", DEFAULT_PORT
    return root.hostname, root.port or 80


class Command(BaseCommand):
    help = ("Run the demo Douban: a local server speaking movie.douban.com's protocol (the newest list, subject "
            "pages, covers) with made-up films and series, for a catalog sync with no internet "
            "(CATALOG_DOUBAN_ROOT=http://HOST:PORT). Ctrl-C stops it.")

    def add_arguments(self, parser):
        host, port = _default_address()
        parser.add_argument("--host", default=host,
                            help="Loopback address to listen on (default: CATALOG_DOUBAN_ROOT's host if it is one, "
                                 "else 127.0.0.1).")
        parser.add_argument("--port", type=int, default=port,
                            help=f"Port; 0 picks a free one (default: CATALOG_DOUBAN_ROOT's port if it is on this "
                                 f"machine, else {DEFAULT_PORT}).")

    def handle(self, *args, host, port, **options):
        if not 0 <= port <= 65535:
            raise CommandError("--port must be between 0 and 65535")
        try:
            demo = DemoDouban(host=host, port=port).start()
        except NotLoopback as exc:
            raise CommandError(f"--host: {exc}") from None
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        movies = sum(subject.kind == "movie" for subject in demo.subjects)
        self.stdout.write(f"Demo Douban on {demo.root}: {movies} films and {len(demo.subjects) - movies} TV seasons "
                          f"(sync them with CATALOG_DOUBAN_ROOT={demo.root})")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            demo.stop()
