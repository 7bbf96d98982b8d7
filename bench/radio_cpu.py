"""What the room radio costs: CPU of the Daphne process and its ffmpeg children for 1
listener and for 50 listeners of one room, and the bytes each listener receives.

The room is set up over the HTTP API as a program would (POST /api/rooms, /queue,
/control play: with nobody connected the room starts at once, without waiting); then
listeners GET /rooms/<slug>/radio?token=... on loopback. For each listener count: WARMUP
seconds, then WINDOW seconds of CPU (utime+stime from /proc of the server and of its
children, reaped or alive) and of bytes. The floor: a minimal asyncio server running one
ffmpeg that decodes the track and encodes it as the station does (paced by -re) and writing
each chunk to every listener. Run by hand
(about 2 minutes):

    .venv/bin/python bench/radio_cpu.py
    .venv/bin/python bench/radio_cpu.py --window 5 --listeners 1,5      # smoke

Scratch state: PostgreSQL database chorus_bench_radio (created and dropped here) and
Redis db 11 (flushed first and after).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h

TARGET_BYTES_PER_S = 128_000 / 8  # 128 kbit/s


def api(port: int, token: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


class Listener:
    """GET the stream over a plain socket (HTTP/1.0: no chunking) and count body bytes."""

    def __init__(self, port: int, path: str):
        self.port = port
        self.path = path
        self.body_bytes = 0
        self.status = ""
        self.first_bytes = b""
        self.task: asyncio.Task | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def start(self) -> None:
        reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"GET {self.path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        self.status = head.split(b"\r\n", 1)[0].decode()
        self.task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                if len(self.first_bytes) < 4:
                    self.first_bytes += chunk[:4]
                self.body_bytes += len(chunk)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()


async def measure(label: str, port: int, path: str, count: int, server_pid: int, args, profile: str = "") -> dict:
    listeners = [Listener(port, path) for _ in range(count)]
    await asyncio.gather(*(listener.start() for listener in listeners))
    statuses = sorted({listener.status for listener in listeners})
    await asyncio.sleep(args.warmup)
    encoders_at_start = encoders_of(server_pid)
    cpu, bytes_before, started = h.tree_cpu_s(server_pid), [lst.body_bytes for lst in listeners], time.perf_counter()
    await asyncio.sleep(args.window)
    wall = time.perf_counter() - started
    cpu_per_s = (h.tree_cpu_s(server_pid) - cpu) / wall
    rates = [(lst.body_bytes - b) / wall for lst, b in zip(listeners, bytes_before, strict=True)]
    if profile:  # after the CPU window, so that py-spy's own work is not in it
        spy = await asyncio.create_subprocess_exec(
            args.py_spy, "record", "--pid", str(server_pid), "--format", "raw", "--rate", "500", "--threads",
            "--nonblocking", "--output", profile, "--duration", str(int(args.window)),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await spy.wait()
        print(f"  profile of {count} listeners in {profile}", flush=True)
    mp3 = all(lst.first_bytes[:1] == b"\xff" or lst.first_bytes[:3] == b"ID3" for lst in listeners)
    encoders = max(encoders_at_start, encoders_of(server_pid))
    for listener in listeners:
        await listener.stop()
    await asyncio.sleep(2)  # the station stops with its last listener
    s = h.summary(rates)
    result = {"label": label, "listeners": count, "cpu_s_per_s": cpu_per_s, "bytes_per_s": s, "rate_min": min(rates),
              "status": statuses,
              "starts_like_mp3": mp3, "encoders": encoders, "wall_s": wall}
    print(f"{label:24} {count:3d} listeners: CPU {cpu_per_s:.4f} s/s; per listener B/s min {min(rates):.0f} "
          f"p50 {s['p50']:.0f} max {s['max']:.0f} (target {TARGET_BYTES_PER_S:.0f}); {statuses}; mp3 {mp3}; "
          f"ffmpeg children at most {encoders}; load {h.loadavg()}", flush=True)
    return result


def encoders_of(pid: int) -> int:
    """ffmpeg processes the server runs right now."""
    count = 0
    for child in h._children(pid):
        with contextlib.suppress(OSError):
            count += b"ffmpeg" in Path(f"/proc/{child}/cmdline").read_bytes()
    return count


async def idle_cpu(server_pid: int, seconds: float) -> float:
    cpu, started = h.tree_cpu_s(server_pid), time.perf_counter()
    await asyncio.sleep(seconds)
    return (h.tree_cpu_s(server_pid) - cpu) / (time.perf_counter() - started)


async def run_all(args, bench_env: h.BenchEnv, token: str, track_ids: list[int], floor_command: list[str]) -> dict:
    results = {"daphne": [], "floor": []}
    with h.Server.daphne(bench_env) as daphne:
        room = await asyncio.to_thread(api, daphne.port, token, "POST", "/api/rooms",
                                       {"name": "Radio bench", "control_policy": "everyone"})
        slug = room["slug"]
        for track_id in track_ids:
            await asyncio.to_thread(api, daphne.port, token, "POST", f"/api/rooms/{slug}/queue", {"track_id": track_id})
        state = await asyncio.to_thread(api, daphne.port, token, "POST", f"/api/rooms/{slug}/control", {"action": "play"})
        results["play_state"] = {k: state.get(k) for k in ("status", "version", "anchor_ms", "server_ms")}
        print(f"after play: status {state['status']}, starts {state['anchor_ms'] - state['server_ms']} ms later", flush=True)
        results["daphne_idle_cpu_s_per_s"] = await idle_cpu(daphne.pid, 3)
        for count in args.listeners:
            profile = str(h.SCRATCH / f"radio-profile-{count}.txt") if args.profile and count == max(args.listeners) else ""
            results["daphne"].append(await measure("daphne", daphne.port, f"/rooms/{slug}/radio?token={token}", count,
                                                   daphne.pid, args, profile))
    with h.Server.floor_radio(floor_command) as floor:
        results["floor_idle_cpu_s_per_s"] = await idle_cpu(floor.pid, 3)
        for count in args.listeners:
            results["floor"].append(await measure("floor", floor.port, "/radio", count, floor.pid, args))
    return results


def table(results: dict) -> str:
    lines = ["| server | listeners | CPU s per s (server + ffmpeg) | vs 1 listener | per-listener B/s min / p50 / max | "
             "ffmpeg processes |",
             "| --- | ---: | ---: | ---: | --- | ---: |"]
    for kind in ("daphne", "floor"):
        runs = results[kind]
        base = runs[0]["cpu_s_per_s"] if runs else 0
        for r in runs:
            b = r["bytes_per_s"]
            ratio = f"{r['cpu_s_per_s'] / base:.2f}x" if base else ""
            lines.append(f"| {kind} | {r['listeners']} | {r['cpu_s_per_s']:.4f} | {ratio} | "
                         f"{r['rate_min']:.0f} / {b['p50']:.0f} / {b['max']:.0f} | "
                         f"{r['encoders']} |")
    lines.append("")
    lines.append(f"Idle (no listener): Daphne {results['daphne_idle_cpu_s_per_s']:.4f} s/s, "
                 f"floor {results['floor_idle_cpu_s_per_s']:.4f} s/s.")
    return "\n".join(lines)


def setup() -> tuple[str, list[int], list[str]]:
    h.django_setup()
    from rooms import radio

    def floor_command(path: str) -> list[str]:
        """One ffmpeg that decodes the track and encodes it as the station does, paced by -re."""
        encoder = radio.encoder_command()
        return [*encoder[: encoder.index("-f")], "-re", "-i", path, *encoder[encoder.index("-c:a"):]]

    people = h.create_users(1, prefix="radio")
    tracks = [h.import_track(h.make_audio(h.SCRATCH / "audio" / f"tone-60s-{hz}.mp3", seconds=60, frequency_hz=hz))
              for hz in (440, 660)]
    from django.db import connections

    connections.close_all()
    return people[0][1], [t.pk for t in tracks], floor_command(tracks[0].file_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listeners", type=lambda s: [int(x) for x in s.split(",")], default=[1, 50])
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--profile", action="store_true", help="then py-spy Daphne with the most listeners")
    parser.add_argument("--py-spy", default="/tmp/benchtools/bin/py-spy")
    parser.add_argument("--coalesce-experiment", action="store_true",
                        help="experiment: Daphne's station fans out 4 KiB at a time instead of each 418-byte read")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--json", default=str(h.SCRATCH / "radio_cpu.json"))
    args = parser.parse_args()
    h.raise_open_files()
    started = time.monotonic()
    experiments = {"BENCH_RADIO_COALESCE": "1"} if args.coalesce_experiment else {}
    bench_env = h.BenchEnv("radio", db=args.db, redis_db=args.redis_db, extra=experiments)
    with bench_env.created():
        token, track_ids, floor_command = setup()
        results = asyncio.run(run_all(args, bench_env, token, track_ids, floor_command))
    h.report(results, table=table(results), json_path=args.json, started=started)


if __name__ == "__main__":
    main()
