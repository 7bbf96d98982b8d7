from celery import shared_task


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60)
def run_import(job_id: int) -> None:
    """Import a folder into the library. Idempotent: a re-run finds every file present."""
    from catalog import services

    services.import_job_run(job_id=job_id)
