"""`python -m project.worker` (the Procfile's livefeed line): a Celery worker started without
Celery's command line, which answers remote control like any other, leaves out what only the
web process and beat use, and refuses bad options and bad settings in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from project.celery import app
from project.config import BASE_DIR
from tests.live import _server_env, stop_process_group

WHAT_IT_LOADS = """
import json, sys
from project.processes import WORKER_ENTRY
sys.argv = [WORKER_ENTRY]  # what `python -m project.worker` sets before the settings load
import django
django.setup()
from django.conf import settings
from project.celery import app
from project.worker import parse
args = parse(["-Q", "livefeed", "-P", "solo", "-n", "probe@%h"])
worker = app.Worker(queues=args.queues, pool_cls=args.pool, hostname="probe@host", loglevel="WARNING")
print(json.dumps({
    "apps": settings.INSTALLED_APPS,
    "command_line_modules": sorted(m for m in sys.modules if m.startswith(("celery.bin", "click_repl", "prompt_toolkit"))),
    "queues": sorted(worker.app.amqp.queues.consume_from),
    "pool": worker.pool_cls.__module__,
}))
"""


def _run(args: list[str], env: dict[str, str], timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=BASE_DIR, capture_output=True, text=True,
                          timeout=timeout_s)


@pytest.mark.django_db
def test_a_worker_process_leaves_out_the_command_line_beat_and_the_web_apps():
    result = _run(["-c", WHAT_IT_LOADS], _server_env({}))
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["command_line_modules"] == []
    for app_name in ("django_celery_beat", "ninja", "daphne"):
        assert app_name not in loaded["apps"]
    assert "livefeed" in loaded["apps"]
    assert "django.contrib.auth" in loaded["apps"]
    assert loaded["queues"] == ["livefeed"]
    assert loaded["pool"] == "celery.concurrency.solo"


@pytest.mark.alone  # starts a Celery worker (see pyproject.toml)
@pytest.mark.django_db(transaction=True)
def test_a_started_worker_answers_remote_control_and_stops_on_term(tmp_path, redis_client):
    name = f"entry-{os.getpid()}@probe"
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "project.worker", "-Q", f"entry-test-{os.getpid()}", "-P", "solo", "-n", name,
             "--loglevel=INFO", "--without-gossip", "--without-mingle"],
            cwd=BASE_DIR, env=_server_env({}), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        answers: list = []
        while time.monotonic() < deadline and not answers:
            assert process.poll() is None, log.read_text()
            answers = app.control.ping(destination=[name], timeout=1.0)
        assert answers == [{name: {"ok": "pong"}}], log.read_text()
        process.terminate()
        assert process.wait(30) == 0, log.read_text()
        assert "Warm shutdown" in log.read_text()
    finally:
        stop_process_group(process)


@pytest.mark.parametrize(("args", "named"), [
    (["-c", "0"], "-c/--concurrency"),
    (["-Q", " , "], "-Q/--queues"),
    (["-P", "gevent"], "-P/--pool"),
    (["--loglevel", "LOUD"], "-l/--loglevel"),
])
def test_bad_options_are_refused_naming_the_option(args, named):
    env = {"PATH": os.environ["PATH"], "CHORUS_ENV_FILE": os.devnull}
    result = _run(["-m", "project.worker", *args], env)
    assert result.returncode == 2
    assert named in result.stderr.strip().splitlines()[-1]


def test_bad_settings_are_reported_in_one_line():
    env = {"PATH": os.environ["PATH"], "CHORUS_ENV_FILE": os.devnull, "DEBUG": "maybe"}
    result = _run(["-m", "project.worker", "-Q", "livefeed", "-P", "solo"], env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "chorus: configuration error: DEBUG='maybe' is not a boolean (use 1/0, true/false, yes/no)"
    ]
