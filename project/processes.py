"""Which kind of process this is, read from how it was started, before the settings load."""

from __future__ import annotations

import os

WORKER_ENTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")


def celery_process(argv0: str) -> bool:
    """Whether this process is a Celery worker or beat: started by Celery's command line
    (`celery ...`) or by `python -m project.worker`, which sets argv[0] to that module's path
    before the settings load (the package `project`, and with it the Celery app, is imported
    earlier, while argv[0] is still "-m": project.worker does what that import could not)."""
    return os.path.basename(argv0) == "celery" or worker_entry(argv0)


def worker_entry(argv0: str) -> bool:
    """Whether this process was started by `python -m project.worker`: a worker, never beat."""
    return os.path.abspath(argv0) == WORKER_ENTRY
