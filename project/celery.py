"""The Celery app: broker on REDIS_URL, schedules in the database (django-celery-beat)."""

import os
import sys

from celery import Celery, signals

from project.processes import celery_process

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("chorus")


def _load_settings_or_exit() -> None:
    """Report a bad setting in one line, as manage.py and the web server do (Celery would
    show a traceback from its option parsing)."""
    from project.config import ConfigError, exit_on_config_error

    try:
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018 - forces the settings module to load
    except ConfigError as exc:
        exit_on_config_error(exc)


def process_starting() -> None:
    """What a worker or beat does as it starts, before Celery reads its settings: a bad
    setting is reported in one line, and the system checks are skipped. Celery's Django
    fixup runs them as a worker starts, and the URL checks import every view and the whole
    API (ninja, pydantic, the catalog's streaming, ...) into a process that never serves
    them: about 13 MB of every worker. `manage.py migrate` runs them at every deploy (and
    `manage.py check` on demand); CELERY_SKIP_CHECKS= (set, empty) runs them in a worker too.
    Called here for `celery ...`, and by project/worker.py, whose argv[0] says what it is
    only after this module was imported."""
    _load_settings_or_exit()
    os.environ.setdefault("CELERY_SKIP_CHECKS", "1")


if celery_process(sys.argv[0]):  # a worker or beat starting, not an import by Django
    process_starting()

app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _add_live_fetcher() -> None:
    """Workers that consume the livefeed queue also run the live-feed fetcher (livefeed/worker.py)."""
    from livefeed.worker import FetcherStep

    app.steps["worker"].add(FetcherStep)


_add_live_fetcher()


@signals.before_task_publish.connect
def _attach_request_id(headers=None, **kwargs):
    """Carry the current request id into the task so its log lines can be traced."""
    from project.logs import request_id_var

    request_id = request_id_var.get()
    if headers is not None and request_id:
        headers.setdefault("request_id", request_id)


@signals.task_prerun.connect
def _restore_request_id(task=None, **kwargs):
    from project.logs import new_request_id, request_id_var

    request_id = getattr(task.request, "request_id", None) if task else None
    request_id_var.set(request_id or f"task-{new_request_id()}")


@signals.setup_logging.connect
def _use_django_logging(**kwargs):
    """Keep Celery from replacing our JSON logging with its own format."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)
