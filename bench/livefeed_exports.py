"""Comment files of a recording: how fast livefeed/exports.py writes a long broadcast's chat
as ASS and Bilibili XML, how much memory that takes (it streams), and how long ffmpeg
(libass's reader) takes to read the ASS back.

Run by hand from the repository root (pytest does not collect it; no database needed: the
rows are made here, as exports reads them from LiveMessage):

    .venv/bin/python bench/livefeed_exports.py --messages 1000000

The messages: a busy room, --rate a second (default 50) for messages / rate seconds; 90 %
chat (Chinese phrases with emoji, 2-60 characters, a few hostile ones with braces and
backslashes), 8 % gifts, 2 % super chats, at random times within each second. Reported per
format: seconds, messages per second, MB written, and the peak Python memory while writing
(tracemalloc) to a file; for ASS also ffmpeg reading it back (`ffmpeg -i file.ass -f srt /dev/null`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from livefeed import exports  # noqa: E402

PHRASES = ["主播好美", "哈哈哈哈", "666", "来了来了", "这首歌好听", "晚上好", "前方高能", "点赞", "😀👍🏽",
           "{\\an8}not a tag", "back\\slash", "请问这是什么游戏", "好家伙", "冲冲冲", "今天几点下播"]
START_MS = 1_764_590_400_000


@dataclass
class Row:
    type: str
    ts_ms: int
    content: str = ""
    user_name: str = ""
    user_id: str = ""
    extra: dict = field(default_factory=dict)
    gift_count: int | None = None
    pk: int = 0


def rows(count: int, rate: int, seed: int = 7):
    rng = random.Random(seed)
    for n in range(count):
        at = START_MS + (n // rate) * 1000 + rng.randrange(1000)
        kind = rng.random()
        name = f"观众{rng.randrange(5000)}"
        if kind < 0.90:
            text = "".join(rng.choice(PHRASES) for _ in range(rng.randrange(1, 5)))
            yield Row("chat", at, text, name, str(n % 5000), pk=n)
        elif kind < 0.98:
            yield Row("gift", at, "", name, str(n % 5000), {"gift_name": "小心心", "count": rng.randrange(1, 99)}, pk=n)
        else:
            yield Row("super_chat", at, "谢谢主播" * rng.randrange(1, 6), name, str(n % 5000), {"price_cny": 30}, pk=n)


def write(fmt: str, ordered: list[Row], path: Path) -> float:
    started = time.perf_counter()
    with path.open("w", encoding="utf-8") as out:
        for chunk in exports.FORMATS[fmt](exports.comments(iter(ordered), start_ms=START_MS)):
            out.write(chunk)
    return time.perf_counter() - started


def run(fmt: str, count: int, rate: int, folder: Path) -> dict:
    path = folder / f"comments.{fmt}"
    ordered = sorted(rows(count, rate), key=lambda r: (r.ts_ms, r.pk))  # exports reads rows in time order
    seconds = write(fmt, ordered, path)
    tracemalloc.start()  # a second pass for the memory: tracing slows every allocation
    write(fmt, ordered, path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result = {"format": fmt, "messages": count, "seconds": round(seconds, 2),
              "messages_per_s": round(count / seconds), "mb": round(path.stat().st_size / 1e6, 1),
              "peak_python_kb": round(peak / 1024)}
    if fmt == "ass":
        started = time.perf_counter()
        subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "srt",
                        "-y", "/dev/null"], check=True, timeout=3600)
        result["ffmpeg_read_s"] = round(time.perf_counter() - started, 2)
    path.unlink()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--rate", type=int, default=50, help="messages a second of broadcast")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chorus-exports-") as tmp:
        for fmt in ("ass", "xml"):
            print(json.dumps(run(fmt, args.messages, args.rate, Path(tmp)), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
