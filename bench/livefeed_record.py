"""Recording live streams: CPU and memory of one livefeed worker recording 1, 5 and 20
simulated streams at once, against bare `ffmpeg -c copy` of the same streams in the same run,
and the time from a broadcast going live to the first byte of its recording on disk.

Run by hand from the repository root (pytest does not collect it):

    .venv/bin/python bench/livefeed_record.py                    # 1, 5 and 20 streams, 20 s each
    .venv/bin/python bench/livefeed_record.py --streams 1 --window 8   # smoke

What it does, on loopback, with its own PostgreSQL database and Redis db:
  1. the simulator (`manage.py live_simulator --shared-stream`): one ffmpeg makes the video
     (about 280 kbit/s, H.264 + AAC) that every room serves, so its cost does not grow with N;
  2. for each N: N simulator channels with `record` on, their rooms ended; a real worker
     (`python -m project.worker -Q livefeed`, as in the Procfile) starts and looks at them
     every second (check_interval_s 1); then every room goes live at once, and the time until
     each one's first segment file has its first bytes is measured (polling every 10 ms);
  3. once every stream is on disk: CPU (utime + stime of the worker and its ffmpeg children,
     from /proc) and RSS (the worker process; the sum of its ffmpegs) over WINDOW seconds;
  4. the same N streams recorded by N bare `ffmpeg -i URL -c copy -f flv file` for the same
     window: their CPU and RSS. The difference is what Chorus adds (segment cutting in Python,
     the database, the progress pushes).
The machine may be shared: other processes' load is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _harness as h

PYTHON = str(h.BIN / "python")  # the Procfile's livefeed line: python -m project.worker
FIRST_REF = 8001


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    found = []
    for child in h._children(pid):
        found += [child, *descendants(child)]
    return found


def sim_command(root: str, ref: int, command: str) -> None:
    request = urllib.request.Request(f"{root}/_sim/{ref}/{command}", method="POST")
    urllib.request.urlopen(request, timeout=5).read()


def pull_url(root: str, ref: int) -> str:
    with urllib.request.urlopen(urllib.request.Request(f"{root}/", method="GET"), timeout=5) as answer:
        cookie = answer.headers.get("Set-Cookie", "").split(";")[0]
    request = urllib.request.Request(f"{root}/webcast/room/web/enter/?web_rid={ref}", headers={"Cookie": cookie})
    with urllib.request.urlopen(request, timeout=5) as answer:
        body = json.loads(answer.read())
    return body["data"]["data"][0]["stream_url"]["flv_pull_url"]["FULL_HD1"]


def measure(pids_of, window_s: float) -> dict:
    """CPU cores and RSS of the processes `pids_of()` names (a tree), over window_s."""
    roots = pids_of()
    before = sum(h.tree_cpu_s(pid) for pid in roots)
    busy_before = h.system_busy_s()
    peak_main, peak_children = 0, 0
    started = time.monotonic()
    while time.monotonic() - started < window_s:
        time.sleep(0.5)
        main = sum(rss_kb(pid) for pid in roots)
        children = sum(rss_kb(child) for pid in roots for child in descendants(pid))
        peak_main, peak_children = max(peak_main, main), max(peak_children, children)
    elapsed = time.monotonic() - started
    cpu = sum(h.tree_cpu_s(pid) for pid in roots) - before
    machine = (h.system_busy_s() - busy_before) / elapsed
    return {"cores": cpu / elapsed, "rss_main_mb": peak_main / 1024, "rss_children_mb": peak_children / 1024,
            "others_cores": max(0.0, machine - cpu / elapsed)}


def run_recorder(env, root: str, streams: int, window_s: float, folder: Path) -> dict:
    from livefeed.models import LiveChannel, Segment

    refs = list(range(FIRST_REF, FIRST_REF + streams))
    for ref in refs:
        sim_command(root, ref, "end")
    LiveChannel.objects.all().delete()
    channels = [LiveChannel.objects.create(platform="simulator", ref=str(ref), record=True, segment_s=3600,
                                           check_interval_s=1) for ref in refs]
    log = (folder / f"worker-{streams}.log").open("wb")
    worker = subprocess.Popen(
        [PYTHON, "-m", "project.worker", "-Q", "livefeed", "-P", "solo", "--loglevel=WARNING",
         "--without-gossip", "--without-mingle", "-n", f"bench-record-{streams}@%h"],
        cwd=h.ROOT, env=env.environ(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while LiveChannel.objects.filter(pk__in=[c.pk for c in channels], record_state="idle",
                                         record_lease_owner__gt="").count() < streams:
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not take the channels within 60 s; see " + log.name)
            time.sleep(0.2)
        live_at = time.monotonic()
        for ref in refs:
            sim_command(root, ref, "start")
        first_byte: dict[int, float] = {}
        deadline = time.monotonic() + 60
        while len(first_byte) < streams and time.monotonic() < deadline:
            for segment in Segment.objects.filter(recording__channel__in=channels, index=1).select_related(
                    "recording"):
                channel_id = segment.recording.channel_id
                if channel_id not in first_byte and os.path.exists(segment.file_path) \
                        and os.path.getsize(segment.file_path) > 0:
                    first_byte[channel_id] = time.monotonic() - live_at
            time.sleep(0.01)
        if len(first_byte) < streams:
            raise SystemExit(f"only {len(first_byte)} of {streams} streams reached the disk; see {log.name}")
        time.sleep(2)
        result = measure(lambda: [worker.pid], window_s)
        result["ffmpegs"] = len(descendants(worker.pid))
        result["first_byte_s"] = h.summary(list(first_byte.values()))
        result["bytes"] = sum(os.path.getsize(s.file_path) for s in Segment.objects.filter(
            recording__channel__in=channels) if os.path.exists(s.file_path))
        return result
    finally:
        LiveChannel.objects.filter(pk__in=[c.pk for c in channels]).update(record=False)
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, 9)
            worker.wait()


def run_bare(root: str, streams: int, window_s: float, folder: Path) -> dict:
    refs = list(range(FIRST_REF, FIRST_REF + streams))
    processes = [subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", pull_url(root, ref), "-c", "copy",
         "-f", "flv", str(folder / f"bare-{streams}-{ref}.flv")], stdin=subprocess.DEVNULL) for ref in refs]
    try:
        time.sleep(2)
        result = measure(lambda: [p.pid for p in processes], window_s)
        result["rss_children_mb"], result["ffmpegs"] = result["rss_main_mb"], len(processes)
        result["rss_main_mb"] = 0.0
        return result
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 5, 20])
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per case (default 20)")
    args = parser.parse_args()
    started = time.monotonic()
    folder = h.SCRATCH / "record"
    folder.mkdir(parents=True, exist_ok=True)
    port = h.free_port()
    env = h.BenchEnv("record", redis_db=6, extra={
        "LIVEFEED_SIMULATOR_ROOT": f"http://127.0.0.1:{port}", "LIVEFEED_RECORDINGS_DIR": str(folder / "recordings"),
        "LIVEFEED_MIN_FREE_MB": "0"})
    with env.created():
        h.django_setup()
        simulator = subprocess.Popen(
            [h.PYTHON, str(h.ROOT / "manage.py"), "live_simulator", "--port", str(port), "--rate", "5",
             "--shared-stream"], env=env.environ(), cwd=h.ROOT, stdout=subprocess.DEVNULL)
        root = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"{root}/_sim/", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
            results = []
            for streams in args.streams:
                recorder = run_recorder(env, root, streams, args.window, folder)
                bare = run_bare(root, streams, args.window, folder)
                results.append({"streams": streams, "chorus": recorder, "bare_ffmpeg": bare})
                print(f"{streams} streams: chorus {recorder['cores']:.3f} cores, bare {bare['cores']:.3f}", flush=True)
        finally:
            simulator.terminate()
            simulator.wait(10)
    lines = ["| streams | Chorus worker CPU (cores) | its RSS: worker + ffmpegs (MB) | bare ffmpeg CPU (cores) | "
             "bare ffmpegs RSS (MB) | live -> first byte on disk p50 / max (s) | others' load (cores) |",
             "|---|---|---|---|---|---|---|"]
    for row in results:
        c, b = row["chorus"], row["bare_ffmpeg"]
        lines.append(f"| {row['streams']} | {c['cores']:.3f} | {c['rss_main_mb']:.0f} + {c['rss_children_mb']:.0f} | "
                     f"{b['cores']:.3f} | {b['rss_children_mb']:.0f} | {c['first_byte_s']['p50']:.2f} / "
                     f"{c['first_byte_s']['max']:.2f} | {c['others_cores']:.2f} / {b['others_cores']:.2f} |")
    h.report(results, table="\n".join(lines), json_path=str(folder / "results.json"), started=started)


if __name__ == "__main__":
    main()
