"""A film sync of 80 new titles from a fake Douban, then a second run at once ("within 8
hours"): detail requests made each time and wall time, against the politeness floor (80 x the
interval: one subject page per title, one request per interval to Douban's host).

    .venv/bin/python bench/catalog_sync.py                      # Douban's default interval, 2 s
    .venv/bin/python bench/catalog_sync.py --interval 0.2       # quicker, same shape

The fake Douban (tests/catalog/douban_fake.py, real HTTP on loopback) lists 60 films and 20
series with every field; their covers are on another loopback server, as Douban's are on
img*.doubanio.com (another host, so another limiter key). The sync runs in this process the
way a worker runs it (catalog.sync.sync_execute), on a scratch PostgreSQL database and Redis
db (bench/_harness.py), with TMDB off.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _harness as h  # noqa: E402

FILMS, SERIES = 60, 20


def run_once(sync, SyncRun) -> dict:
    started = time.monotonic()
    run, _ = sync.sync_start(source="douban", trigger="manual", enqueue=False)
    run = sync.sync_execute(run_id=run.pk)
    wall_s = time.monotonic() - started
    return {"state": run.state, "listed": run.listed, "new": run.new, "updated": run.updated,
            "unchanged": run.unchanged, "skipped": run.skipped, "failed": run.failed,
            "detail_requests": run.detail_requests, "wall_s": round(wall_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=2.0, help="CATALOG_DOUBAN_MIN_INTERVAL_S (default 2 s)")
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--redis-db", type=int, default=11)
    parser.add_argument("--json", default="/tmp/bench-catalog-sync.json")
    args = parser.parse_args()
    begun = time.monotonic()

    from tests.catalog.douban_fake import FakeDouban
    from tests.catalog.sync_support import FakeImages, full_subject

    douban, images = FakeDouban().start(), FakeImages().start()
    for number in range(1, FILMS + SERIES + 1):
        subject = full_subject(number, images.origin, kind="movie" if number <= FILMS else "tv")
        douban.add(subject)
    env = h.BenchEnv("catalogsync", db=args.db, redis_db=args.redis_db, extra={
        "CATALOG_DOUBAN_ROOT": douban.url, "CATALOG_DOUBAN_MIN_INTERVAL_S": str(args.interval),
        "CATALOG_TMDB_API_KEY": "", "MEDIA_ROOT": str(h.SCRATCH / "catalogsync" / "media"),
        "CELERY_TASK_ALWAYS_EAGER": "0",
    })
    try:
        with env.created():
            h.django_setup()
            from catalog import sync
            from catalog.models import SyncRun, Title

            print(f"load average at the start: {h.loadavg()}", flush=True)
            first = run_once(sync, SyncRun)
            pages_first = sum(r.path.startswith("/subject/") for r in douban.requests)
            rows = Title.objects.count()
            second = run_once(sync, SyncRun)
            pages_second = sum(r.path.startswith("/subject/") for r in douban.requests) - pages_first
            rows_after = Title.objects.count()
    finally:
        douban.stop()
        images.stop()

    titles = FILMS + SERIES
    floor_s = titles * args.interval
    results = {"interval_s": args.interval, "titles": titles, "floor_s": floor_s, "first": first, "second": second,
               "subject_pages": [pages_first, pages_second], "titles_after": [rows, rows_after],
               "covers": len(images.requests)}
    table = "\n".join([
        f"Sync of {titles} new titles from the fake Douban, interval {args.interval} s; floor {titles} x "
        f"{args.interval} s = {floor_s:.1f} s",
        "",
        "| run | listed | new | skipped | detail requests | subject pages | wall (s) | floor (s) | wall / floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| first | {first['listed']} | {first['new']} | {first['skipped']} | {first['detail_requests']} | "
        f"{pages_first} | {first['wall_s']:.1f} | {floor_s:.1f} | {first['wall_s'] / floor_s:.2f} |",
        f"| second, at once | {second['listed']} | {second['new']} | {second['skipped']} | "
        f"{second['detail_requests']} | {pages_second} | {second['wall_s']:.1f} | 0 | - |",
        "",
        f"titles after the first run: {rows}, after the second: {rows_after}; covers downloaded: {len(images.requests)}",
    ])
    h.report(results, table=table, json_path=args.json, started=begun)


if __name__ == "__main__":
    main()
