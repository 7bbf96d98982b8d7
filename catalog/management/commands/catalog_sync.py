"""manage.py catalog_sync SOURCE [--kind newest|changes|refresh] [--wait]: start a film
catalog sync, as the catalog page's "Sync now" does. Without --wait a worker runs it (the
command prints the run's id and page); with --wait it runs here and now, printing the counts."""

from django.core.management.base import BaseCommand, CommandError

from catalog import sync
from catalog.clients import registry
from catalog.models import SyncRun


class Command(BaseCommand):
    help = "Start a film catalog sync of SOURCE (douban, tmdb): a worker runs it, or this command with --wait."

    def add_arguments(self, parser):
        parser.add_argument("source", help=f"The source: {', '.join(registry.names())}.")
        parser.add_argument("--kind", default="newest", choices=SyncRun.Kind.values,
                            help="newest: the source's newest films and TV (default); changes: what TMDB says changed; "
                                 "refresh: the titles whose tier says they are due.")
        parser.add_argument("--wait", action="store_true",
                            help="Run the sync in this process and wait for it (no worker needed).")

    def handle(self, *args, source: str, kind: str, wait: bool, **options):
        try:
            run, started = sync.sync_start(source=source, kind=kind, trigger=SyncRun.Trigger.MANUAL, enqueue=not wait)
        except sync.UnknownService:
            raise CommandError(f"No catalog source called {source!r}; the sources are {', '.join(registry.names())}.") from None
        except sync.SyncRefused as exc:
            raise CommandError(exc.message) from None
        if not started:
            self.stdout.write(f"{run.source} is already syncing: run {run.pk} ({run.state}).")
        if not wait:
            if started:
                self.stdout.write(f"Sync run {run.pk} of {run.source} ({run.kind}) queued: {run.get_absolute_url()}")
            return
        run = sync.sync_execute(run_id=run.pk)
        self.stdout.write(
            f"Sync run {run.pk} of {run.source} ({run.kind}): {run.state}. listed {run.listed}, new {run.new}, "
            f"updated {run.updated}, unchanged {run.unchanged}, skipped {run.skipped}, failed {run.failed}, "
            f"{run.detail_requests} detail requests.")
        for error in run.errors[-20:]:
            self.stdout.write(f"  {error.get('item')}: {error.get('reason')}")
        if run.state in (SyncRun.State.FAILED, SyncRun.State.BLOCKED):
            raise CommandError(run.error or f"The run ended {run.state}.")
