from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60)
def run_import(job_id: int) -> None:
    """Import a folder into the library. Idempotent: a re-run finds every file present."""
    from catalog import services

    services.import_job_run(job_id=job_id)


@shared_task(bind=True, max_retries=240)
def demo_videos_import(self, run_id: int) -> None:
    """The demo video of `make run`, imported once the demo sync (`run_id`) has ended and so
    made its film: until then, asked again every 5 s (for at most 20 minutes)."""
    from catalog import demo

    if not demo.videos_import_after(run_id=run_id):
        raise self.retry(countdown=5)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=12 * 3600, soft_time_limit=12 * 3600 - 60)
def sync_run(run_id: int) -> None:
    """Run (or continue) a film catalog sync. Idempotent: the run's lease lets one worker do
    it; a finished run, or one another worker holds, is left alone; a redelivered task after a
    crash continues from the items still pending."""
    from catalog import sync

    sync.sync_execute(run_id=run_id)


@shared_task
def scheduled_sync(source: str, kind: str = "newest") -> None:
    """The beat's trigger (catalog-douban-newest, catalog-tmdb-changes): a run of `source`,
    unless one is in flight (that one goes on) or the source is not set up (logged, nothing run)."""
    from catalog import sync

    _scheduled(sync, source=source, kind=kind)


@shared_task
def scheduled_refresh() -> None:
    """The beat's refresh (catalog-refresh): for every enabled source, a run that re-fetches
    the titles whose tier says they are due."""
    from catalog import sync

    for source in sync.enabled_sources():
        _scheduled(sync, source=source.name, kind="refresh")


def _scheduled(sync, *, source: str, kind: str) -> None:
    import logging

    logger = logging.getLogger(__name__)
    try:
        run, started = sync.sync_start(source=source, kind=kind, trigger="schedule")
    except (sync.SyncRefused, sync.UnknownService) as exc:
        logger.info("scheduled catalog sync not started: %s", exc, extra={"source": source, "kind": kind})
        return
    logger.info("scheduled catalog sync", extra={"source": source, "kind": kind, "run_id": run.pk,
                                                 "started": started})
