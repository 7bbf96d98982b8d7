"""Parse time of a Douban subject page (catalog/clients/douban_pages.py parse_subject), per
page, median over many runs, against the floor: the same HTML parser (selectolax's lexbor)
only parsing the document, no field read.

    .venv/bin/python bench/catalog_parse.py                       # the saved pages in tests/catalog/pages
    .venv/bin/python bench/catalog_parse.py --pages DIR --runs 2000

Every `subject_*.html` in the folder is one page. Pure CPU, one process, no network, no
database, no settings needed (the parser reads none): run it on a quiet machine (it prints the load average it started with).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selectolax.lexbor import LexborHTMLParser  # noqa: E402

from catalog.clients.douban_pages import parse_subject  # noqa: E402


def median_us(work, html: str, runs: int) -> float:
    for _ in range(min(50, runs)):  # warm up
        work(html)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work(html)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def floor(html: str) -> None:
    LexborHTMLParser(html).root  # noqa: B018 - the parse is the work


def full(html: str) -> None:
    parse_subject(html, source_id="1", kind="movie")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=Path, default=ROOT / "tests" / "catalog" / "pages")
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    pages = sorted(args.pages.glob("subject_*.html"))
    if not pages:
        sys.exit(f"no subject_*.html in {args.pages}")
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {args.runs} runs per page; python {sys.version.split()[0]}")
    print("| page | size (KB) | parse only, floor (µs) | parse_subject (µs) | extraction (µs) | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    ratios = []
    for path in pages:
        html = path.read_text(encoding="utf-8")
        floor_us = median_us(floor, html, args.runs)
        full_us = median_us(full, html, args.runs)
        ratios.append(full_us / floor_us)
        print(f"| {path.name} | {len(html.encode()) / 1024:.1f} | {floor_us:.0f} | {full_us:.0f} | "
              f"{full_us - floor_us:.0f} | {full_us / floor_us:.2f} |")
    print(f"median ratio parse_subject / floor: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
