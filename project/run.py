"""`make run`: prepare and start everything (web, workers, beat, the live simulator, the demo
Douban) with one command.

1. Write `.env` with a fresh SECRET_KEY on first run (embedded defaults: SQLite).
2. When REDIS_URL is not set, start a private redis-server under var/ on a free port; when
   CATALOG_DOUBAN_ROOT is not set, start the demo Douban (the Procfile's `catalogdemo`) on a
   free port and point CATALOG_DOUBAN_ROOT at it (CATALOG_DOUBAN_MIN_INTERVAL_S 0.2 unless set);
   start the local live simulator (the Procfile's `simulator`), on a free port in
   LIVEFEED_SIMULATOR_ROOT unless that is set.
3. Migrate, collect static files, load the demo content (which queues a sync of the demo
   Douban's films when the catalog has none yet); wait until the live simulator listens.
4. Run the rest of the Procfile (Daphne, the Celery worker, the livefeed worker, Celery beat)
   under a small supervisor (no honcho: honcho stops every process as soon as one exits).

The supervisor keeps the site up when one process dies: it says which one died and
restarts it after a short pause (1 s, then 2, 4 and 8 s while it keeps dying; a run of a
minute resets the pause), while the others carry on. A process that dies five times within
two minutes is crash-looping: the supervisor stops everything and says so. Ctrl-C (or
SIGTERM) stops every process in three rounds, each waited for, and exits 0: Chorus's own
processes (web, workers, beat) first, then the stand-ins for the outside world they talk to
(the live simulator, the demo Douban), so that a followed demo room is stopped by its worker
rather than seen to drop, and the private Redis last. A second Ctrl-C kills what is still
running instead of waiting for it.

Everything under var/ (the SQLite database, Redis' dump, the demo password) is the
user's alone: var/ is created 0700 and every process runs with umask 077.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
VAR = BASE_DIR / "var"
BIN = Path(sys.executable).parent
ENV_FILE = BASE_DIR / ".env"

LOCAL_ENV = """\
# Written by `make run` for a local installation; see .env.example for every setting.
SECRET_KEY={secret}
# DEBUG=0 even locally, so you see the real error pages; http on localhost is allowed below.
DEBUG=0
ALLOWED_HOSTS=localhost,127.0.0.1,[::1]
SECURE_SSL_REDIRECT=0
SESSION_COOKIE_SECURE=0
CSRF_COOKIE_SECURE=0
DATABASE_URL=sqlite:///var/chorus.sqlite3
# REDIS_URL unset: `make run` starts a private redis-server under var/.
"""

PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
STOP_TIMEOUT_S = 10
DEMO_DOUBAN = "catalogdemo"
SIMULATOR = "simulator"
# Stop rounds (Child.stop_round), in order: Chorus's processes, then the Procfile's stand-ins
# for outside services (the demo Douban, the live simulator), then the private Redis.
APP, STAND_IN, STORE = 0, 1, 2
DEMO_DOUBAN_INTERVAL_S = "0.2"  # the demo's sync: quick, and slow enough to watch on its page


def say(message: str) -> None:
    print(f"\033[1;35mchorus\033[0m {message}", flush=True)


def free_port(preferred: int | None = None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port")


def make_private() -> None:
    """var/ and everything in it readable by the owner only (also for a var/ made by an older version)."""
    os.umask(0o077)
    VAR.mkdir(mode=0o700, exist_ok=True)
    for root, _dirs, files in os.walk(VAR):
        with contextlib.suppress(OSError):  # not ours (made by another user): leave it be
            os.chmod(root, 0o700)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o600)


def ensure_env_file() -> None:
    if not ENV_FILE.exists():
        ENV_FILE.write_text(LOCAL_ENV.format(secret=secrets.token_urlsafe(50)))
        ENV_FILE.chmod(0o600)
        say("wrote .env with a new SECRET_KEY")


def manage(*args: str, env: dict) -> None:
    subprocess.run([str(BIN / "python"), str(BASE_DIR / "manage.py"), *args], env=env, check=True, cwd=BASE_DIR)


def read_procfile(path: Path) -> dict[str, str]:
    processes = {}
    for line in path.read_text().splitlines():
        match = PROCFILE_LINE.match(line.strip())
        if match:
            processes[match.group(1)] = match.group(2)
    return processes


def _exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the supervisor itself is killed, so nothing is left behind."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _prctl = None


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    crashes: list[float] = field(default_factory=list)  # monotonic times of recent deaths
    stop_round: int = APP  # APP, then STAND_IN, then STORE (see Supervisor.stop_all)
    restart_at: float | None = None


class Supervisor:
    """Runs named commands, prefixing their output; restarts one that dies (see the module docstring)."""

    def __init__(self, *, env: dict, cwd: Path = BASE_DIR, delays_s: tuple[float, ...] = (1, 2, 4, 8),
                 stable_s: float = 60, crash_limit: int = 5, crash_window_s: float = 120) -> None:
        self.env, self.cwd = env, cwd
        self.delays_s, self.stable_s = delays_s, stable_s
        self.crash_limit, self.crash_window_s = crash_limit, crash_window_s
        self.children: dict[str, Child] = {}
        self.stopping = threading.Event()
        self._force = threading.Event()
        self._print_lock = threading.Lock()
        self._width = 6

    def add(self, name: str, command: list[str], *, stop_round: int = APP) -> Child:
        self.children[name] = child = Child(name=name, command=command, stop_round=stop_round)
        self._width = max(self._width, len(name))
        return child

    def add_shell(self, name: str, command: str, *, stop_round: int = APP) -> Child:
        # `exec`: the pid we watch (and report) is the program itself, not a shell around it.
        return self.add(name, ["/bin/sh", "-c", f"exec {command}"], stop_round=stop_round)

    def log(self, name: str, line: str) -> None:
        with self._print_lock:
            sys.stdout.write(f"{time.strftime('%H:%M:%S')} {name:<{self._width}} | {line.rstrip()}\n")
            sys.stdout.flush()

    def start(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.command, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
        )
        child.started_at, child.restart_at = time.monotonic(), None
        self.log("chorus", f"{child.name} started (pid {child.process.pid})")
        threading.Thread(target=self._relay, args=(child.name, child.process.stdout), daemon=True).start()

    def _relay(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.log(name, raw.decode(errors="replace"))
        stream.close()

    def run(self) -> int:
        """Start every child and watch them until a signal (0) or a crash loop (1)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self.children.values():
                if child.process is None:
                    self.start(child)
            while not self.stopping.wait(0.2):
                if self._check() is not None:
                    return 1
            return 0
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        if self.stopping.is_set():
            self._force.set()  # a second Ctrl-C: no more waiting
            return
        self.log("chorus", f"{signal.Signals(signum).name} received: stopping everything (again to kill at once)")
        self.stopping.set()

    def _check(self) -> str | None:
        """Notice deaths, schedule and do restarts; the name of a crash-looping child, if any."""
        now = time.monotonic()
        for child in self.children.values():
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self.start(child)
                continue
            if child.process is None or (returncode := child.process.poll()) is None:
                continue
            self._kill_group(child)  # what it leaves behind (a Celery pool, say) goes with it
            if now - child.started_at >= self.stable_s:
                child.crashes.clear()
            child.crashes = [t for t in child.crashes if now - t < self.crash_window_s] + [now]
            if len(child.crashes) >= self.crash_limit:
                self.log("chorus", f"{child.name} died ({_exit_reason(returncode)}) {len(child.crashes)} times "
                                   f"within {self.crash_window_s:g} s: it keeps crashing, so everything stops. "
                                   f"Its output is above; fix the cause and run `make run` again.")
                return child.name
            delay = self.delays_s[min(len(child.crashes) - 1, len(self.delays_s) - 1)]
            child.restart_at = now + delay
            self.log("chorus", f"{child.name} died ({_exit_reason(returncode)}); restarting it in {delay:g} s "
                               f"(the other processes keep running)")
        return None

    def _kill_group(self, child: Child, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child.process.pid, sig)

    def stop_all(self) -> None:
        """SIGTERM to the children round by round (Child.stop_round: APP, then STAND_IN, then
        STORE), each round's children at once, the next round once they are gone; SIGKILL
        after STOP_TIMEOUT_S or at a second Ctrl-C."""
        running = [c for c in self.children.values() if c.process is not None and c.process.poll() is None]
        for stop_round in sorted({c.stop_round for c in running}):
            batch = [c for c in running if c.stop_round == stop_round]
            for child in batch:
                self._kill_group(child, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while any(c.process.poll() is None for c in batch) and time.monotonic() < deadline:
                if self._force.wait(0.05):
                    break
            for child in batch:
                if child.process.poll() is None:
                    why = "Ctrl-C again" if self._force.is_set() else f"still running after {STOP_TIMEOUT_S} s"
                    self.log("chorus", f"killing {child.name} ({why})")
                    self._kill_group(child)
                    child.process.wait()
                self._kill_group(child)  # anything it left in its group


def start_private_redis(supervisor: Supervisor, env: dict) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("chorus: redis-server is not installed: sudo apt-get install redis-server (or set REDIS_URL)")
    port = free_port()
    data = VAR / "redis"
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    child = supervisor.add("redis", [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "60 1",
        "--appendonly", "no", "--logfile", str(data / "redis.log"), "--protected-mode", "yes",
    ], stop_round=STORE)
    supervisor.start(child)
    wait_listening(child, port, timeout_s=10, exited=f"redis-server exited; see {data / 'redis.log'}")
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    say(f"private redis-server on 127.0.0.1:{port} (data in var/redis)")


def wait_listening(child: Child, port: int, *, timeout_s: float, exited: str) -> None:
    """Until `child` accepts connections on 127.0.0.1:port; exit with `exited` if it dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if child.process.poll() is not None:
                sys.exit(f"chorus: {exited}")
            time.sleep(0.05)


def start_demo_douban(supervisor: Supervisor, env: dict, processes: dict[str, str]) -> None:
    """The demo Douban (the Procfile's `catalogdemo`) on a free port, with CATALOG_DOUBAN_ROOT
    pointed at it and a short interval between its requests, unless CATALOG_DOUBAN_ROOT is set
    (then the sync uses that, and no demo Douban runs)."""
    command = processes.pop(DEMO_DOUBAN, None)
    if command is None:
        return
    if env.get("CATALOG_DOUBAN_ROOT"):
        say(f"CATALOG_DOUBAN_ROOT is set ({env['CATALOG_DOUBAN_ROOT']}): no demo Douban, no demo films")
        return
    port = free_port(8766)
    env["CATALOG_DOUBAN_ROOT"] = f"http://127.0.0.1:{port}"
    env.setdefault("CATALOG_DOUBAN_MIN_INTERVAL_S", DEMO_DOUBAN_INTERVAL_S)
    child = supervisor.add_shell(DEMO_DOUBAN, command, stop_round=STAND_IN)
    supervisor.start(child)
    wait_listening(child, port, timeout_s=30, exited="the demo Douban (manage.py catalog_demo_server) exited; "
                                                      "its output is above")
    say(f"demo Douban on {env['CATALOG_DOUBAN_ROOT']}: the film catalog syncs its made-up titles "
        f"(set CATALOG_DOUBAN_ROOT to sync from another)")


def start_live_simulator(supervisor: Supervisor, env: dict, processes: dict[str, str]) -> Child | None:
    """The live simulator (the Procfile's `simulator`) on a free port in LIVEFEED_SIMULATOR_ROOT
    unless that is set, started now: it gets ready while the database is migrated, and the
    livefeed worker, started after it listens, finds the demo room at its first try (not a
    "connection failed" in the demo channel's history on a new machine)."""
    command = processes.pop(SIMULATOR, None)
    if command is None:
        return None
    if not env.get("LIVEFEED_SIMULATOR_ROOT"):
        env["LIVEFEED_SIMULATOR_ROOT"] = f"http://127.0.0.1:{free_port(8765)}"
    child = supervisor.add_shell(SIMULATOR, command, stop_round=STAND_IN)
    supervisor.start(child)
    return child


def main() -> int:
    os.chdir(BASE_DIR)
    make_private()
    ensure_env_file()
    from project.config import read_env_file

    read_env_file()
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if "PROMETHEUS_MULTIPROC_DIR" not in env:
        # One /metrics for web and worker: prometheus_client's multiprocess mode.
        metrics_dir = VAR / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    env["CHORUS_BIN"] = str(BIN)
    processes = read_procfile(BASE_DIR / "Procfile")
    supervisor = Supervisor(env=env)
    try:
        # Redis and the demo Douban first: loading the demo queues the demo films' sync there.
        if not os.environ.get("REDIS_URL"):
            start_private_redis(supervisor, env)
        start_demo_douban(supervisor, env, processes)
        simulator = start_live_simulator(supervisor, env, processes)
        say("migrating the database")
        manage("migrate", "--noinput", env=env)
        manage("collectstatic", "--noinput", "-v", "0", env=env)
        say("loading demo content")
        manage("load_demo", env=env)
        root = urlsplit(env.get("LIVEFEED_SIMULATOR_ROOT", ""))
        if simulator is not None and root.hostname in {"127.0.0.1", "localhost"}:
            # listening before the livefeed worker looks for the demo room
            wait_listening(simulator, root.port or 8765, timeout_s=30,
                           exited="the live simulator (manage.py live_simulator) exited; its output is above")
        return _serve(supervisor, env, processes)
    finally:
        supervisor.stop_all()  # also after Ctrl-C while the private Redis was starting


def _serve(supervisor: Supervisor, env: dict, processes: dict[str, str]) -> int:
    host = env.get("CHORUS_HOST", "127.0.0.1")
    port = free_port(int(env.get("CHORUS_PORT", "8000")))
    env.update(CHORUS_HOST=host, CHORUS_PORT=str(port))
    for name, command in processes.items():
        if name not in supervisor.children:  # not started already (the demo Douban)
            supervisor.add_shell(name, command)
    shown_host = "localhost" if host in {"127.0.0.1", "0.0.0.0", "::"} else host  # noqa: S104 - only for display
    url = f"http://{shown_host}:{port}/"
    password_file = VAR / "demo-password.txt"
    login = f" and log in as demo / {password_file.read_text().strip()}" if password_file.exists() else ""
    say(f"starting web, workers, beat and the live simulator: open {url}{login}  (Ctrl-C stops everything)")
    code = supervisor.run()
    say("stopped" if code == 0 else "stopped: a process kept crashing (see above)")
    return code


if __name__ == "__main__":
    # SIGTERM like Ctrl-C: both end the run cleanly, also while preparing (migrate, demo).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("stopped")
        sys.exit(0)
