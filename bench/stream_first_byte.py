"""Time to first byte and total time of the audio stream through a real Daphne, against floors.

Run by hand from the repository root (pytest does not collect it):

    .venv/bin/python bench/stream_first_byte.py --requests 30 --out /tmp/stream-bench.md

What it does, all on loopback in a scratch folder that is deleted afterwards:
  1. a scratch SQLite database (migrated), a user with an API token, and a generated library:
     a ~3 minute FLAC (sine + pink noise, so it does not compress to nothing) and a large WAV;
  2. Daphne on a free port serving project.asgi:application, `python -m http.server` on another;
  3. N requests per case, interleaved round by round so that noise hits every case alike:
       (a) the original FLAC            GET /library/tracks/<id>/stream
       (b) an mp3 transcode             ?format=mp3&bitrate=192
       (c) an opus transcode            ?format=opus&bitrate=128
       (d) floors for (b) and (c): the same ffmpeg command run directly, writing to a pipe
       (e) floor for (a): the same FLAC from python -m http.server
     Time to first byte is from before connecting (or spawning ffmpeg) to the first body byte.
  4. Daphne's memory while streaming the large WAV: VmRSS sampled every 10 ms, and VmHWM
     (peak RSS, reset through /proc/PID/clear_refs before each phase), for a client that reads
     everything and for one that reads 64 KiB and then stops reading for a few seconds.

Needs ffmpeg and Redis (REDIS_URL, default database 14: the settings configure a Redis cache).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
REQUEST_TIMEOUT_S = 60
START_TIMEOUT_S = 30
READ_BYTES = 64 * 1024
REQUIREMENT_FIRST_BYTE_MS = 300


@dataclass
class Case:
    name: str
    first_byte_s: list[float] = field(default_factory=list)
    total_s: list[float] = field(default_factory=list)
    sizes: set[int] = field(default_factory=set)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on port {port} exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing answered on port {port} within {START_TIMEOUT_S} s")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=300)


def make_library(folder: Path, *, seconds: int, big_mb: int) -> None:
    folder.mkdir(parents=True)
    ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate=44100",
        "-f", "lavfi", "-i", f"anoisesrc=color=pink:duration={seconds}:sample_rate=44100:amplitude=0.3",
        "-filter_complex", "amix=inputs=2", "-ac", "2", "-c:a", "flac",
        "-metadata", "title=Bench Track", "-metadata", "artist=Bench", str(folder / "track.flac"),
    )
    big_seconds = math.ceil(big_mb * 1024 * 1024 / (44100 * 2 * 2))
    ffmpeg(
        "-f", "lavfi", "-i", f"sine=frequency=330:duration={big_seconds}:sample_rate=44100",
        "-ac", "2", "-c:a", "pcm_s16le", "-metadata", "title=Big Wave", str(folder / "big.wav"),
    )


def setup_django(scratch: Path, redis_url: str) -> dict[str, str]:
    """Point Django at the scratch folder (this process and, through the env, Daphne)."""
    env = {
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "CHORUS_ENV_FILE": os.devnull,
        "DEBUG": "0",
        "SECRET_KEY": "bench-only-" + "q8Wm3zR5tY1uI9oP2aS6dF4gH7jK0lZx" * 2,
        "ALLOWED_HOSTS": f"{HOST},localhost",
        "SECURE_SSL_REDIRECT": "0",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "DATABASE_URL": f"sqlite:///{scratch / 'bench.sqlite3'}",
        "REDIS_URL": redis_url,
        "LIBRARY_DIR": str(scratch / "library"),
        "STATIC_MANIFEST": "0",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    return env


def prepare_data(library: Path) -> tuple[dict[str, int], str]:
    """Migrate, import the library, create a user and token: ({file name: track id}, raw token)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from catalog import services
    from catalog.models import Track
    from project.accounts.services import token_create

    call_command("migrate", verbosity=0)
    job = services.import_job_create(path=str(library), enqueue=False)
    services.import_job_run(job_id=job.pk)
    tracks = {Path(track.file_path).name: track.pk for track in Track.objects.all()}
    if set(tracks) != {"track.flac", "big.wav"}:
        raise SystemExit(f"import did not take both files: {tracks}")
    user = get_user_model().objects.create_user("bench")
    _, raw = token_create(user=user, name="bench")
    return tracks, raw


def timed_get(port: int, path: str, headers: dict[str, str]) -> tuple[float, float, int]:
    """(seconds to first body byte, seconds to the end, body bytes) of one GET."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status} {response.read()[:300]!r}")
        size = len(response.read1(READ_BYTES))
        first = time.perf_counter()
        while chunk := response.read1(READ_BYTES):
            size += len(chunk)
        return first - started, time.perf_counter() - started, size
    finally:
        connection.close()


def timed_ffmpeg(command: list[str]) -> tuple[float, float, int]:
    """The same for ffmpeg run directly: spawn to its first stdout byte, and to its end."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        fd = process.stdout.fileno()
        size = len(os.read(fd, READ_BYTES))
        first = time.perf_counter()
        while chunk := os.read(fd, READ_BYTES):
            size += len(chunk)
        process.wait(REQUEST_TIMEOUT_S)
        return first - started, time.perf_counter() - started, size
    finally:
        if process.poll() is None:
            process.kill()
        process.stdout.close()
        process.wait()


def run_latency(cases: dict[str, Callable[[], tuple[float, float, int]]], requests: int, warmup: int) -> dict[str, Case]:
    results = {name: Case(name) for name in cases}
    for round_index in range(warmup + requests):
        for name, measure in cases.items():
            first_s, total_s, size = measure()
            if round_index >= warmup:
                results[name].first_byte_s.append(first_s)
                results[name].total_s.append(total_s)
                results[name].sizes.add(size)
    return results


# --- memory ------------------------------------------------------------------------------


def status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs); False when not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Largest VmRSS of `pid` seen every 10 ms while the block runs."""

    def __init__(self, pid: int):
        self.pid, self.peak_kib, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            time.sleep(0.01)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def stalled_get(port: int, path: str, headers: dict[str, str], stall_s: float) -> int:
    """Read 64 KiB, then read nothing for `stall_s` (a paused player), then hang up. Returns bytes read."""
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        got = len(response.read1(READ_BYTES))
        time.sleep(stall_s)
        return got
    finally:
        connection.close()


def measure_memory(pid: int, port: int, path: str, headers: dict[str, str], stall_s: float) -> list[tuple[str, int, int, int]]:
    """[(phase, VmRSS before, sampled VmRSS peak, VmHWM after)] in KiB."""
    phases = []
    for phase, action in (
        ("original, reads everything as fast as it can", lambda: timed_get(port, path, headers)),
        (f"original, reads 64 KiB then stalls {stall_s:.0f} s", lambda: stalled_get(port, path, headers, stall_s)),
        (f"mp3 192k transcode, reads 64 KiB then stalls {stall_s:.0f} s",
         lambda: stalled_get(port, path + "?format=mp3&bitrate=192", headers, stall_s)),
    ):
        time.sleep(1)  # let the previous phase's connection close and its memory settle
        before = status_kib(pid, "VmRSS")
        reset_peak(pid)
        with RssSampler(pid) as sampler:
            action()
        phases.append((phase, before, sampler.peak_kib, status_kib(pid, "VmHWM")))
    return phases


# --- report ------------------------------------------------------------------------------


def report(results: dict[str, Case], floors: dict[str, str], memory, *, args, big_mb: float, track_info: str) -> str:
    def ms(value: float) -> str:
        return f"{value * 1000:.1f}"

    lines = [
        "## Stream: time to first byte",
        "",
        f"`{' '.join(['.venv/bin/python', *sys.argv])}` on {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} CPUs, Daphne serving `{args.application}`, loopback, one request at a time, N={args.requests} per case "
        f"(after {args.warmup} warm-up rounds), cases interleaved. Track: {track_info}. "
        "First byte: from before connecting (or spawning ffmpeg) to the first body byte.",
        "",
        "| case | first byte median ms | p95 ms | total median ms | p95 ms | bytes | first byte / floor (median) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, case in results.items():
        ratio = ""
        if name in floors:
            floor = statistics.median(results[floors[name]].first_byte_s)
            ratio = f"{statistics.median(case.first_byte_s) / floor:.2f}x ({floors[name].split(' ')[0]})"
        sizes = "/".join(str(size) for size in sorted(case.sizes))
        lines.append(
            f"| {name} | {ms(statistics.median(case.first_byte_s))} | {ms(percentile(case.first_byte_s, 0.95))} "
            f"| {ms(statistics.median(case.total_s))} | {ms(percentile(case.total_s, 0.95))} | {sizes} | {ratio} |"
        )
    worst = max(percentile(results[name].first_byte_s, 0.95) for name in floors)
    verdict = "met" if worst * 1000 < REQUIREMENT_FIRST_BYTE_MS else "NOT met"
    lines += [
        "",
        f"Requirement, first bytes within {REQUIREMENT_FIRST_BYTE_MS} ms for a local file: {verdict} "
        f"(worst p95 over (a)-(c): {worst * 1000:.1f} ms).",
        "",
        f"### Daphne memory while streaming a {big_mb:.0f} MB WAV (KiB)",
        "",
        "| client | VmRSS before | VmRSS peak (sampled) | VmHWM | growth (HWM - before) |",
        "|---|---:|---:|---:|---:|",
    ]
    for phase, before, peak, hwm in memory:
        lines.append(f"| {phase} | {before} | {peak} | {hwm} | {hwm - before} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30, help="measured requests per case (default 30)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured rounds first (default 2)")
    parser.add_argument("--seconds", type=int, default=180, help="length of the generated track (default 180)")
    parser.add_argument("--big-mb", type=int, default=220, help="size of the WAV for the memory test (default 220)")
    parser.add_argument("--stall-s", type=float, default=5, help="how long the stalled client reads nothing (default 5)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--application", default="project.asgi:application", help="ASGI app for Daphne")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="chorus-stream-bench-"))
    servers: list[subprocess.Popen] = []
    try:
        library = scratch / "library"
        make_library(library, seconds=args.seconds, big_mb=args.big_mb)
        env = setup_django(scratch, args.redis_url)
        tracks, token = prepare_data(library)
        from catalog.streaming import TRANSCODE_FORMATS, transcode_command

        daphne_port, static_port = free_port(), free_port()
        daphne = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "daphne"), "-b", HOST, "-p", str(daphne_port), "--access-log", os.devnull,
             args.application],
            cwd=ROOT, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
        )
        servers.append(daphne)
        static = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(static_port), "--bind", HOST, "--directory", str(library)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        servers.append(static)
        wait_for_port(daphne_port, daphne)
        wait_for_port(static_port, static)

        auth = {"Authorization": f"Bearer {token}"}
        stream = f"/library/tracks/{tracks['track.flac']}/stream"
        flac = library / "track.flac"
        cases = {
            "(a) original FLAC via Daphne": lambda: timed_get(daphne_port, stream, auth),
            "(b) mp3 192k via Daphne": lambda: timed_get(daphne_port, stream + "?format=mp3&bitrate=192", auth),
            "(c) opus 128k via Daphne": lambda: timed_get(daphne_port, stream + "?format=opus&bitrate=128", auth),
            "(d1) ffmpeg mp3 192k to a pipe": lambda: timed_ffmpeg(transcode_command(flac, TRANSCODE_FORMATS["mp3"], 192)),
            "(d2) ffmpeg opus 128k to a pipe": lambda: timed_ffmpeg(transcode_command(flac, TRANSCODE_FORMATS["opus"], 128)),
            "(e) FLAC via python -m http.server": lambda: timed_get(static_port, "/track.flac", {}),
        }
        floors = {
            "(a) original FLAC via Daphne": "(e) FLAC via python -m http.server",
            "(b) mp3 192k via Daphne": "(d1) ffmpeg mp3 192k to a pipe",
            "(c) opus 128k via Daphne": "(d2) ffmpeg opus 128k to a pipe",
        }
        results = run_latency(cases, args.requests, args.warmup)
        big_path = f"/library/tracks/{tracks['big.wav']}/stream"
        memory = measure_memory(daphne.pid, daphne_port, big_path, auth, args.stall_s)
        big_mb = (library / "big.wav").stat().st_size / 1e6
        track_info = f"{args.seconds} s FLAC, {flac.stat().st_size / 1e6:.1f} MB"
        text = report(results, floors, memory, args=args, big_mb=big_mb, track_info=track_info)
        print(text)
        if args.out:
            args.out.write_text(text)
    finally:
        for server in servers:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if args.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
