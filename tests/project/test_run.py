"""`make run` for real: a copy of the project started with `make run` on SQLite with its own
private Redis on free ports, then a process killed, var/ inspected and Ctrl-C pressed.

The copy shares this checkout's virtualenv (a symlink; `-o install` keeps make from
reinstalling it) and nothing else: its .env, var/, database and Redis are its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis

from project.run import APP, BASE_DIR, STAND_IN, STORE, Supervisor

# Everything at the top of the checkout but these (so that a new app is copied too).
NOT_COPIED = {".git", ".venv", "var", ".env", "tests", "docs", "bench", ".ci", ".ruff_cache", ".pytest_cache", "media",
              "__pycache__"}
pytestmark = pytest.mark.alone  # a whole `make run`, timed: see pyproject.toml's markers
START_TIMEOUT_S = 180
WAIT_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Run:
    """`make run` in its own session (like a terminal's foreground job), its output collected."""

    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.lines: list[str] = []
        self._changed = threading.Condition()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), "LANG": "C.UTF-8",
               "CHORUS_PORT": str(port), "CELERY_CONCURRENCY": "1"}
        self.process = subprocess.Popen(
            ["make", "-o", "install", "run", f"PYTHON={sys.executable}"], cwd=root, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in iter(self.process.stdout.readline, b""):
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<end of output>")
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str, *, after: int = 0, timeout: float = WAIT_S) -> tuple[int, re.Match]:
        """The first line from index `after` on matching `pattern`: (its index, the match)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index in range(after, len(self.lines)):
                    if match := regex.search(self.lines[index]):
                        return index, match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.lines and self.lines[-1] == "<end of output>"):
                    tail = "\n".join(self.lines[-40:])
                    raise AssertionError(f"no line matching {pattern!r}; output ends with:\n{tail}")
                self._changed.wait(remaining)

    def started_pids(self) -> dict[str, list[int]]:
        pids: dict[str, list[int]] = {}
        for match in re.finditer(r"chorus\s+\| (\w+) started \(pid (\d+)\)", self.output):
            pids.setdefault(match.group(1), []).append(int(match.group(2)))
        return pids

    def healthz(self) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for pids in self.started_pids().values():  # each child is its own process group
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def make_run(tmp_path_factory):
    if shutil.which("make") is None or shutil.which("redis-server") is None:
        pytest.fail("make and redis-server are needed (make test installs redis-server)")
    root = tmp_path_factory.mktemp("chorus-copy")
    for source in BASE_DIR.iterdir():
        name = source.name
        if name in NOT_COPIED:
            continue
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    (root / ".venv").symlink_to(Path(sys.executable).parent.parent)
    # A var/ left by an older version, readable by everyone: the run must close it up.
    (root / "var" / "old").mkdir(parents=True)
    (root / "var").chmod(0o755)
    (root / "var" / "old").chmod(0o755)
    (root / "var" / "old" / "notes.txt").write_text("from before\n")
    (root / "var" / "old" / "notes.txt").chmod(0o644)
    run = Run(root, _free_port())
    try:
        run.wait_for(r"starting web, workers, beat and the live simulator: open http://localhost:\d+/", timeout=START_TIMEOUT_S)
        run.wait_for(r"celery@\S+ ready\.")
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                if run.healthz().status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the web never answered /healthz:\n{run.output[-4000:]}"
            time.sleep(0.2)
        yield run
    finally:
        run.stop()


def test_the_demo_live_channel_flows_with_no_internet(make_run):
    """The livefeed worker follows the demo room on the local simulator: messages are stored."""
    import sqlite3

    database = make_run.root / "var" / "chorus.sqlite3"
    deadline = time.monotonic() + WAIT_S
    seen = None
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            seen = db.execute("SELECT c.state, c.messages_total, c.last_error, c.reconnects, s.gaps "
                              "FROM livefeed_livechannel c LEFT JOIN livefeed_livesession s "
                              "ON s.id = c.current_session_id WHERE c.platform = 'simulator'").fetchone()
        if seen and seen[0] == "running" and seen[1] > 0:
            # The simulator listened before the worker started: no failed connect, no gap.
            assert seen[2:] == ("", 0, "[]"), f"the demo live channel is {seen}:\n{make_run.output[-4000:]}"
            return
        time.sleep(0.5)
    raise AssertionError(f"the demo live channel is {seen}:\n{make_run.output[-4000:]}")


def test_the_demo_films_sync_from_the_demo_douban_with_no_internet(make_run):
    """The demo Douban runs on its own port, load_demo queued a sync of it, the worker fills
    the catalog (covers stored under var/media), the demo video gets its film, and a logged-in
    user sees the titles on the catalog page."""
    import sqlite3

    _, match = make_run.wait_for(r"demo Douban on (http://127\.0\.0\.1:(\d+)): the film catalog syncs")
    demo_root = match.group(1)
    assert httpx.get(f"{demo_root}/subject/99000001/", timeout=10).status_code == 200
    make_run.wait_for(r"Demo films: started: sync run \d+ of " + re.escape(demo_root))
    database = make_run.root / "var" / "chorus.sqlite3"
    deadline = time.monotonic() + 2 * WAIT_S
    seen = None
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as db:
            seen = (db.execute("SELECT state, listed, new, failed FROM catalog_syncrun").fetchall(),
                    db.execute("SELECT count(*), count(NULLIF(cover, '')) FROM catalog_title").fetchone(),
                    db.execute("SELECT count(*) FROM catalog_video").fetchone()[0])
        if seen[0] and seen[0][0][0] not in ("queued", "running") and seen[2]:
            break
        time.sleep(0.5)
    assert seen == ([("done", 32, 32, 0)], (32, 32), 1), f"{seen}\n{make_run.output[-4000:]}"
    covers = sorted((make_run.root / "var" / "media" / "covers").iterdir())
    assert len(covers) == 32
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in covers)

    password = (make_run.root / "var" / "demo-password.txt").read_text().strip()
    with httpx.Client(base_url=f"http://127.0.0.1:{make_run.port}", timeout=10) as web:
        web.get("/accounts/login/")
        logged_in = web.post("/accounts/login/", data={"username": "demo", "password": password,
                                                       "csrfmiddlewaretoken": web.cookies["csrftoken"]})
        assert logged_in.status_code == 302
        page = web.get("/catalog/")
        cover = web.get("/catalog/covers/covers/douban-99000001.png")
    assert page.status_code == 200
    assert "盐之路" in page.text
    assert cover.status_code == 200
    assert cover.headers["content-type"] == "image/png"
    assert cover.content == (make_run.root / "var" / "media" / "covers" / "douban-99000001.png").read_bytes()


def test_a_killed_worker_is_restarted_while_the_web_keeps_answering(make_run):
    before = make_run.started_pids()
    (worker_pid,) = before["worker"]
    start = len(make_run.lines)

    os.kill(worker_pid, signal.SIGKILL)

    died, _ = make_run.wait_for(r"chorus\s+\| worker died \(killed by SIGKILL\); restarting it in 1 s", after=start)
    assert make_run.healthz().json()["status"] == "ok"  # web and Redis stayed up
    restarted, match = make_run.wait_for(r"chorus\s+\| worker started \(pid (\d+)\)", after=died)
    assert int(match.group(1)) != worker_pid
    make_run.wait_for(r"celery@\S+ ready\.", after=restarted)
    after = make_run.started_pids()
    assert after["web"] == before["web"]
    assert after["beat"] == before["beat"]
    assert after["redis"] == before["redis"]
    assert make_run.healthz().json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


def test_var_and_everything_in_it_is_owner_only(make_run):
    _, match = make_run.wait_for(r"private redis-server on 127\.0\.0\.1:(\d+)")
    client = redis.Redis(port=int(match.group(1)))
    client.save()  # so that the dump file exists now
    client.close()
    var = make_run.root / "var"
    expected = [var / "chorus.sqlite3", var / "demo-password.txt", var / "redis" / "dump.rdb",
                var / "redis" / "redis.log", var / "old" / "notes.txt"]
    assert all(path.is_file() for path in expected)
    modes = {}
    for root, dirs, files in os.walk(var):
        for name in dirs + files:
            path = Path(root) / name
            modes[str(path.relative_to(var))] = stat.S_IMODE(path.lstat().st_mode)
    modes["."] = stat.S_IMODE(var.stat().st_mode)
    readable_by_others = {name: oct(mode) for name, mode in modes.items() if mode & 0o077}
    assert readable_by_others == {}
    assert modes["."] == 0o700
    assert modes["chorus.sqlite3"] == 0o600
    assert modes["old/notes.txt"] == 0o600


def test_ctrl_c_stops_everything_and_make_says_nothing_about_an_error(make_run):
    children = [pid for pids in make_run.started_pids().values() for pid in pids[-1:]]

    os.killpg(make_run.process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    make_run.process.wait(timeout=60)
    make_run.wait_for(r"<end of output>")

    output = make_run.output
    assert "SIGINT received: stopping everything" in output
    assert "chorus\x1b[0m stopped" in output
    assert "make: ***" not in output  # no "Error 130", no "Interrupt"
    assert "Traceback" not in output
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(httpx.TransportError):
        make_run.healthz()


def test_a_process_that_keeps_crashing_stops_everything_with_a_message(capsys, tmp_path):
    supervisor = Supervisor(env=dict(os.environ), cwd=tmp_path, delays_s=(0.05, 0.1), crash_limit=3,
                            crash_window_s=30)
    supervisor.add_shell("flaky", "sh -c 'echo trying; exit 3'")
    steady = supervisor.add_shell("steady", "sleep 60")

    assert supervisor.run() == 1

    out = capsys.readouterr().out
    assert out.count("flaky started") == 3
    assert out.count("steady started") == 1
    assert "flaky  | trying" in out
    assert "flaky died (exit code 3); restarting it in 0.05 s (the other processes keep running)" in out
    assert "flaky died (exit code 3); restarting it in 0.1 s" in out
    assert "flaky died (exit code 3) 3 times within 30 s: it keeps crashing, so everything stops." in out
    assert steady.process.returncode == -signal.SIGTERM


def test_a_second_ctrl_c_kills_what_does_not_stop(capsys, tmp_path):
    """A process that ignores SIGTERM (a worker finishing a long task) is not waited for after
    a second Ctrl-C."""
    armed = tmp_path / "armed"
    supervisor = Supervisor(env=dict(os.environ), cwd=tmp_path)
    stubborn = supervisor.add_shell("stubborn", f"sh -c \"trap '' TERM; touch {armed}; while :; do sleep 0.1; done\"")

    def press_ctrl_c_twice():
        while not armed.exists():
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)
        while not supervisor.stopping.is_set():
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c_twice)
    presser.start()
    assert supervisor.run() == 0
    presser.join()

    out = capsys.readouterr().out
    assert "SIGINT received: stopping everything (again to kill at once)" in out
    assert "killing stubborn (Ctrl-C again)" in out
    assert stubborn.process.returncode == -signal.SIGKILL


def test_everything_stops_in_rounds_chorus_first_then_the_stand_ins_then_redis(tmp_path):
    """Each round is waited for: the livefeed worker stops its demo room before the simulator
    goes, and nothing loses Redis while it is still running."""
    log = tmp_path / "order.log"
    supervisor = Supervisor(env=dict(os.environ), cwd=tmp_path)

    def add(name: str, stop_round: int):  # on SIGTERM: say so, take a moment to stop, say so again
        on_term = f"echo {name} stopping >> {log}; sleep 0.3; echo {name} stopped >> {log}; exit 0"
        child = supervisor.add_shell(name, f"sh -c \"trap '{on_term}' TERM; touch {name}.armed; "
                                           f"while :; do sleep 0.05; done\"", stop_round=stop_round)
        supervisor.start(child)
        return child

    children = [add("redis", STORE), add("simulator", STAND_IN), add("web", APP), add("livefeed", APP)]
    deadline = time.monotonic() + 10
    while not all((tmp_path / f"{child.name}.armed").exists() for child in children):
        assert time.monotonic() < deadline, "the children did not start"
        time.sleep(0.02)

    supervisor.stop_all()

    lines = log.read_text().splitlines()
    assert sorted(lines[:4]) == ["livefeed stopped", "livefeed stopping", "web stopped", "web stopping"]
    assert lines[4:] == ["simulator stopping", "simulator stopped", "redis stopping", "redis stopped"]
    assert all(child.process.returncode == 0 for child in children)
