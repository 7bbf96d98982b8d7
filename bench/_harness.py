"""Shared helpers of the rooms benchmarks (bench/rooms_fanout.py, bench/clock_offset.py,
bench/radio_cpu.py). Run by hand, never by pytest; loopback only.

What lives here:
- a scratch environment: its own PostgreSQL database (created and dropped here) or a
  SQLite file, its own Redis database number (flushed first), production-like settings;
- Daphne and the "floor" servers as subprocesses on free loopback ports;
- the floor servers themselves (`python bench/_harness.py floor-ws PORT` and
  `python bench/_harness.py floor-radio PORT COMMAND_JSON`): the least a server written
  with the `websockets` library / plain asyncio can do for the same job;
- a websocket load generator (`python bench/_harness.py load ...`) that keeps a server
  busy from another process;
- CPU accounting from /proc and percentiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
PYTHON = str(BIN / "python")
SCRATCH = Path("/tmp/chorus-bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- numbers ------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan"), "mean": float("nan")}
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def report(results, *, table: str, json_path: str, started: float) -> None:
    """Print a benchmark's table, keep its full results as JSON, and say how long it took."""
    print()
    print(table)
    Path(json_path).write_text(json.dumps(results, indent=1))
    print(f"\n(total {time.monotonic() - started:.0f} s; details in {json_path})")


def raise_open_files(wanted: int = 65536) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- CPU from /proc -----------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces: split after its closing parenthesis.
    return raw[raw.rindex(")") + 2:].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def tree_cpu_s(pid: int) -> float:
    """utime+stime of `pid`, of its reaped children (cutime+cstime) and of its live
    descendants, in seconds. Deltas of this are exact across children that exit."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
    total = sum(int(v) for v in fields[11:15]) / CLK_TCK
    for child in _children(pid):
        total += _tree_live_cpu_s(child)
    return total


def _tree_live_cpu_s(pid: int) -> float:
    fields = _stat(pid)
    if fields is None:
        return 0.0
    total = sum(int(v) for v in fields[11:15]) / CLK_TCK
    return total + sum(_tree_live_cpu_s(child) for child in _children(pid))


def system_busy_s() -> float:
    """CPU seconds spent by every process of the machine (all cores), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def others_cores(window_s: float = 2.0) -> float:
    """Cores busy over `window_s` with processes that are not this one or its children."""
    mine, every = tree_cpu_s(os.getpid()), system_busy_s()
    time.sleep(window_s)
    return max(0.0, (system_busy_s() - every) - (tree_cpu_s(os.getpid()) - mine)) / window_s


def wait_quiet(max_wait_s: float, threshold_cores: float = 0.3) -> float:
    """Wait (at most `max_wait_s`) until other processes use under `threshold_cores`; the
    machine may be shared. Returns the last figure (printed by the caller)."""
    deadline = time.monotonic() + max_wait_s
    busy = others_cores()
    while busy > threshold_cores and time.monotonic() < deadline:
        busy = others_cores()
    return busy


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the scratch environment -------------------------------------------------------


@dataclass
class BenchEnv:
    """Environment variables of a scratch Chorus: its own database and Redis db."""

    name: str
    db: str = "postgres"  # or "sqlite"
    redis_db: int = 11
    keep_db: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def db_name(self) -> str:
        return f"chorus_bench_{self.name}"

    @property
    def database_url(self) -> str:
        if self.db == "sqlite":
            return f"sqlite:////tmp/bench-{self.name}.sqlite3"
        return f"postgres://postgres@127.0.0.1:5432/{self.db_name}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:6379/{self.redis_db}"

    def vars(self) -> dict:
        folder = SCRATCH / self.name
        return {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "CHORUS_ENV_FILE": os.devnull,  # never a developer's .env
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "SECRET_KEY": "bench-only-" + secrets.token_urlsafe(48),
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "STATIC_MANIFEST": "0",
            "LOG_LEVEL": "WARNING",
            "LIBRARY_DIR": str(folder / "library"),
            "STATIC_ROOT": str(folder / "static"),
            **self.extra,
        }

    def environ(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        env.update(self.vars())
        return env

    @contextlib.contextmanager
    def created(self) -> Iterator[BenchEnv]:
        """Create the scratch database and flush the Redis db; drop the database after."""
        for sub in ("media", "library", "static"):
            (SCRATCH / self.name / sub).mkdir(parents=True, exist_ok=True)
        self._flush_redis()
        self._drop_db()
        self._create_db()
        os.environ.update(self.vars())
        try:
            subprocess.run([PYTHON, str(ROOT / "manage.py"), "migrate", "--noinput", "-v", "0"],
                           env=self.environ(), check=True, cwd=ROOT)
            yield self
        finally:
            self._close_django_connections()
            self._flush_redis()
            if not self.keep_db:
                self._drop_db()

    def _flush_redis(self) -> None:
        import redis

        redis.Redis.from_url(self.redis_url).flushdb()

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(sql)

    def _create_db(self) -> None:
        if self.db == "postgres":
            self._admin(f'CREATE DATABASE "{self.db_name}"')

    def _drop_db(self) -> None:
        if self.db == "postgres":
            self._admin(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"/tmp/bench-{self.name}.sqlite3{suffix}").unlink(missing_ok=True)

    @staticmethod
    def _close_django_connections() -> None:
        if "django.db" in sys.modules:
            from django.db import connections

            connections.close_all()


@dataclass
class PrivateRedisEnv(BenchEnv):
    """The scratch environment, on the private redis-server instead of the shared one."""

    private_url: str = ""

    @property
    def redis_url(self) -> str:
        return self.private_url


def django_setup() -> None:
    """Configure Django in this process (after BenchEnv.created() set the environment)."""
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def make_audio(path: Path, *, seconds: float, frequency_hz: int = 440) -> Path:
    """A stereo 44.1 kHz MP3 tone (distinct bytes per frequency, so distinct tracks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        subprocess.run(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
             "-i", f"sine=frequency={frequency_hz}:sample_rate=44100:duration={seconds}", "-ac", "2",
             "-c:a", "libmp3lame", "-b:a", "128k", "-metadata", f"title=Bench tone {frequency_hz} Hz",
             "-metadata", "artist=Chorus bench", str(path)],
            check=True,
        )
    return path


def create_users(count: int, prefix: str = "bench") -> list[tuple[object, str]]:
    """`count` users, each with an API token: [(user, raw token)]."""
    from django.contrib.auth import get_user_model

    from project.accounts.services import token_create

    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [user_model(username=f"{prefix}{i:04d}", email=f"{prefix}{i:04d}@example.org") for i in range(count)]
    )
    users = list(user_model.objects.filter(username__startswith=prefix).order_by("username"))
    return [(user, token_create(user=user, name="bench")[1]) for user in users]


def import_track(path: Path):
    from catalog import services as catalog_services

    outcome = catalog_services.track_import_file(path=path)
    if outcome.track is None:
        raise RuntimeError(f"could not import {path}: {outcome.reason}")
    return outcome.track


# --- servers as subprocesses --------------------------------------------------------


GC_LOGGING_DAPHNE = """
import gc, sys, time
started = [0.0]
def log_pause(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - started[0]) * 1000
    if ms > 2:
        gen2 = len(gc.get_objects(generation=2)) if info["generation"] == 2 else 0
        print(f"gc-pause {time.time():.4f} {info['generation']} {ms:.2f} {info['collected']} {gen2}",
              file=sys.stderr, flush=True)
gc.callbacks.append(log_pause)
import os
if os.environ.get("BENCH_GC_THRESHOLD"):  # an experiment: python's collector tuned
    gc.set_threshold(*(int(v) for v in os.environ["BENCH_GC_THRESHOLD"].split(",")))
if os.environ.get("BENCH_GC_FREEZE"):  # an experiment: what exists after startup is never scanned again
    import project.asgi
    gc.freeze()
if os.environ.get("BENCH_RADIO_COALESCE"):  # an experiment: the radio fans out >= 4 KiB at a time
    import project.asgi
    import rooms.radio as radio
    fan_out = radio.Station._fan_out
    def coalesced(self, chunk):
        self._pending = getattr(self, "_pending", b"") + chunk
        if len(self._pending) >= radio.CHUNK_BYTES:
            fan_out(self, self._pending)
            self._pending = b""
    radio.Station._fan_out = coalesced
if os.environ.get("BENCH_NO_PREPARED"):  # an experiment: every frame through its consumer's send (the way before project/wsframes.py)
    import project.wsframes
    project.wsframes.daphne_writer = lambda send: None
if os.environ.get("BENCH_NO_SEND_NOW"):  # an experiment: prepared frames always through Twisted's buffer
    import project.wsframes
    project.wsframes._send_now = lambda transport, wire: False
if os.environ.get("BENCH_SAMPLE"):  # a sampling profiler: every thread's stack every 5 ms
    import collections, threading, traceback
    counts = collections.Counter()
    def sample():
        path = os.environ["BENCH_SAMPLE"]
        last_write = time.monotonic()
        while True:
            time.sleep(0.005)
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == threading.get_ident():
                    continue
                stack = ";".join(f"{f.name}@{os.path.basename(f.filename)}:{f.lineno}"
                                 for f in traceback.extract_stack(frame)[-40:])
                counts[f"{names.get(ident, ident)};{stack}"] += 1
            if time.monotonic() - last_write > 3:
                last_write = time.monotonic()
                with open(path, "w") as out:
                    for stack, count in counts.most_common():
                        out.write(f"{stack} {count}\\n")
    threading.Thread(target=sample, daemon=True, name="bench-sampler").start()
from daphne.cli import CommandLineInterface
sys.argv = ["daphne", *sys.argv[1:]]
CommandLineInterface.entrypoint()
"""


class Server:
    """A server subprocess on a loopback port: Daphne or one of the floors below."""

    def __init__(self, command: list[str], port: int, env: dict | None = None, label: str = "server"):
        self.command = command
        self.port = port
        self.env = env
        self.label = label
        self.process: subprocess.Popen | None = None
        self.log = SCRATCH / f"{label}-{port}.log"

    @classmethod
    def daphne(cls, bench_env: BenchEnv, port: int | None = None, *, gc_log: bool = True) -> Server:
        """`daphne -b 127.0.0.1 -p PORT --access-log /dev/null project.asgi:application`; with
        gc_log, started through a two-line wrapper that logs every garbage collection that
        takes over 2 ms (`gc_pauses()` reads them back)."""
        port = port or free_port()
        args = ["-b", "127.0.0.1", "-p", str(port), "--access-log", "/dev/null", "project.asgi:application"]
        command = [PYTHON, "-c", GC_LOGGING_DAPHNE, *args] if gc_log else [str(BIN / "daphne"), *args]
        return cls(command, port, bench_env.environ(), label="daphne")

    def gc_pauses(self) -> list[tuple[float, int, float]]:
        """(wall time at the end, generation, ms) of each logged collection."""
        pauses = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("gc-pause "):
                _, at, generation, ms, *_ = line.split()
                pauses.append((float(at), int(generation), float(ms)))
        return pauses

    @classmethod
    def floor_ws(cls, port: int | None = None) -> Server:
        port = port or free_port()
        return cls([PYTHON, __file__, "floor-ws", str(port)], port, label="floor-ws")

    @classmethod
    def floor_radio(cls, command: list[str], port: int | None = None) -> Server:
        port = port or free_port()
        return cls([PYTHON, __file__, "floor-radio", str(port), json.dumps(command)], port, label="floor-radio")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout_s: float = 30) -> Server:
        SCRATCH.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.label} did not listen on {self.port} within {timeout_s}s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- websocket clients --------------------------------------------------------------


async def ws_connect(url: str, token: str | None):
    """A `websockets` client as a program connects: bearer token, no Origin, no
    compression (Daphne does not negotiate permessage-deflate, so neither does the floor)."""
    from websockets.asyncio.client import connect

    headers = {"Authorization": f"Bearer {token}"} if token else None
    return await connect(url, additional_headers=headers, compression=None, max_size=2**24,
                         open_timeout=120, ping_interval=None, close_timeout=2, max_queue=None)


@dataclass
class ConnectStats:
    handshake_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    gave_up: int = 0


async def connect_all(urls_and_tokens: list[tuple[str, str | None]], concurrency: int = 50,
                      stats: ConnectStats | None = None, retries: int = 5) -> list:
    """Open every socket, at most `concurrency` handshakes at a time. A failed handshake is
    retried after a second (as the browser player reconnects) and counted in `stats`; a
    socket that fails `retries` + 1 times is None."""
    gate = asyncio.Semaphore(concurrency)
    stats = stats if stats is not None else ConnectStats()

    async def one(url: str, token: str | None):
        for attempt in range(retries + 1):
            async with gate:
                started = time.perf_counter()
                try:
                    ws = await ws_connect(url, token)
                except Exception as exc:  # refused, reset, timed out, closed before the response
                    stats.failures.append(f"{type(exc).__name__}: {exc}"[:120])
                    if attempt == retries:
                        stats.gave_up += 1
                        return None
                else:
                    stats.handshake_ms.append((time.perf_counter() - started) * 1000)
                    return ws
            await asyncio.sleep(1)
        raise AssertionError("unreachable")

    return await asyncio.gather(*(one(url, token) for url, token in urls_and_tokens))


async def close_all(sockets: list, concurrency: int = 200) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(ws):
        async with gate:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)

    await asyncio.gather(*(one(ws) for ws in sockets))


# --- floors --------------------------------------------------------------------------


async def floor_ws_main(port: int) -> None:
    """The least a `websockets` server does for a room: every message one client sends is
    parsed, stamped and serialised once, then written to every connected socket
    (`websockets.broadcast`); `time.ping` is answered like the room consumer does."""
    from websockets.asyncio.server import broadcast, serve

    connected: set = set()

    async def handler(ws) -> None:
        connected.add(ws)
        try:
            async for message in ws:
                received_ms = time.time() * 1000
                data = json.loads(message)
                if data.get("type") == "time.ping":
                    await ws.send(json.dumps({"type": "time.pong", "t0": data["t0"], "t1": received_ms,
                                              "t2": time.time() * 1000}, separators=(",", ":")))
                    continue
                data["server_ms"] = int(received_ms)
                broadcast(connected, json.dumps(data, separators=(",", ":")))
        finally:
            connected.discard(ws)

    async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**20, ping_interval=None,
                     backlog=2048):
        await asyncio.Future()


async def floor_radio_main(port: int, command: list[str]) -> None:
    """The least an asyncio server does for a radio: one ffmpeg (the very command the
    room station runs), each chunk written to every listener's socket."""
    listeners: set[asyncio.StreamWriter] = set()
    encoder: asyncio.Task | None = None

    async def encode() -> None:
        process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            while chunk := await process.stdout.read(4096):
                for writer in list(listeners):
                    if writer.transport.get_write_buffer_size() > 1 << 20:
                        listeners.discard(writer)
                        writer.close()
                    else:
                        writer.write(chunk)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal encoder
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\nCache-Control: no-store\r\n\r\n")
        listeners.add(writer)
        if encoder is None or encoder.done():
            encoder = asyncio.create_task(encode())
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the listener hangs up
        listeners.discard(writer)
        writer.close()
        if not listeners and encoder is not None:
            encoder.cancel()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


# --- load generator ------------------------------------------------------------------


async def load_main(url: str, tokens_file: str, count: int, rate_hz: float, duration_s: float, kind: str) -> None:
    """Connect `count` sockets to `url` and keep the server fanning out: one socket sends
    `rate_hz` messages a second (a volume control for Daphne, a same-size payload for
    the floor); every socket reads everything. Prints "ready" once all are connected."""
    raise_open_files()
    tokens = json.loads(Path(tokens_file).read_text())[:count] if tokens_file != "-" else [None] * count
    sockets = await connect_all([(url, token) for token in tokens])
    received = 0

    async def drain(ws) -> None:
        nonlocal received
        with contextlib.suppress(Exception):
            async for _ in ws:
                received += 1

    readers = [asyncio.create_task(drain(ws)) for ws in sockets]
    await asyncio.sleep(3)  # let the joins settle
    print("ready", flush=True)
    sender = sockets[0]
    deadline = time.monotonic() + duration_s
    sent = 0
    while time.monotonic() < deadline:
        volume = 0.5 + (sent % 40) / 100
        if kind == "daphne":
            message = {"type": "control", "action": "volume", "volume": volume}
        else:
            message = {"type": "room.state", "reason": "change", "version": sent, "volume": volume, "pad": "x" * 380}
        await sender.send(json.dumps(message))
        sent += 1
        await asyncio.sleep(1 / rate_hz)
    print(f"sent {sent} received {received}", flush=True)
    for task in readers:
        task.cancel()
    await close_all(sockets)


def main(argv: list[str]) -> None:
    command = argv[1] if len(argv) > 1 else ""
    if command == "floor-ws":
        asyncio.run(floor_ws_main(int(argv[2])))
    elif command == "floor-radio":
        raise_open_files()
        asyncio.run(floor_radio_main(int(argv[2]), json.loads(argv[3])))
    elif command == "load":
        url, tokens_file, count, rate_hz, duration_s, kind = argv[2:8]
        asyncio.run(load_main(url, tokens_file, int(count), float(rate_hz), float(duration_s), kind))
    else:
        sys.exit("usage: _harness.py floor-ws PORT | floor-radio PORT COMMAND_JSON | "
                 "load URL TOKENS_FILE COUNT RATE_HZ DURATION_S daphne|floor")


if __name__ == "__main__":
    raise_open_files()
    with contextlib.suppress(KeyboardInterrupt):
        main(sys.argv)
