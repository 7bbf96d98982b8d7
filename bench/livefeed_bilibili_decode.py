"""Decode rate of the Bilibili live socket: `livefeed.clients.bilibili.decode_frame` over frames
of K commands each (a realistic mix: chat, entries, gifts, likes, viewer counts, unknown
commands), as plain packets (version 0), one zlib body (2) and one brotli body (3), for
K = 1, 10, 50. Reported: messages per second of one core and microseconds per message.

Floor (same frames, same run): the least any decoder must do, decompress the body, walk the
16-byte headers and `json.loads` each command, without building messages.

    .venv/bin/python bench/livefeed_bilibili_decode.py                 # about 40 s
    .venv/bin/python bench/livefeed_bilibili_decode.py --seconds 0.5   # smoke

Pure CPU in this process: no database, Redis or network.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import brotli

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import _harness as h  # noqa: E402

from livefeed.clients.bilibili import decode_frame  # noqa: E402
from livefeed.messages import Malformed  # noqa: E402
from tests.livefeed import bilibili_fake as cmds  # noqa: E402

HEADER = struct.Struct(">IHHII")


def mix(n: int) -> list[dict]:
    """The n-th command of a busy room's mix: 60 % chat, 15 % entries, 10 % gifts, 5 % likes,
    5 % viewer counts, 5 % commands Chorus does not map."""
    slot = n % 20
    if slot < 12:
        return cmds.danmu(f"弹幕内容第{n}条，主播好厉害[比心]", uid=1000 + n % 500, id_str=f"{n:032x}")
    if slot < 15:
        return cmds.interact(1, uid=2000 + n)
    if slot < 17:
        return cmds.send_gift(tid=str(1673622464121900000 + n), uid=3000 + n % 50)
    if slot == 17:
        return cmds.like_click()
    if slot == 18:
        return cmds.online_count(n)
    return {"cmd": "STOP_LIVE_ROOM_LIST", "data": {"room_id_list": list(range(n % 40))}}


def frames(k: int, version: int, count: int) -> list[bytes]:
    return [cmds.frame([mix(f * k + i) for i in range(k)], version=version) for f in range(count)]


def floor(data: bytes) -> int:
    """Decompress, walk the headers, json.loads every command: the work any decoder does."""
    _length, _header, version, _op, _seq = HEADER.unpack_from(data)
    inner = zlib.decompress(data[16:]) if version == 2 else brotli.decompress(data[16:]) if version == 3 else data
    offset, n = 0, 0
    while offset < len(inner):
        length, header_len, _v, _o, _s = HEADER.unpack_from(inner, offset)
        json.loads(inner[offset + header_len:offset + length])
        offset += length
        n += 1
    return n


def rate(function, corpus: list[bytes], seconds: float) -> tuple[float, int]:
    """(messages per second, messages) decoding the corpus repeatedly for about `seconds`."""
    done, started = 0, time.process_time()
    while True:
        for data in corpus:
            done += function(data)
        elapsed = time.process_time() - started
        if elapsed >= seconds:
            return done / elapsed, done


def decode_count(data: bytes) -> int:
    items = decode_frame(data)
    bad = [item for item in items if isinstance(item, Malformed)]
    if bad:
        raise SystemExit(f"malformed in the corpus: {bad[0]}")
    return len(items)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="CPU seconds per measurement")
    parser.add_argument("--out", default="/tmp/chorus-bench/livefeed_bilibili_decode.json")
    args = parser.parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results, rows = [], []
    for k in (1, 10, 50):
        for version in (0, 2, 3):
            corpus = frames(k, version, max(20, 2000 // k))
            decoded, _ = rate(decode_count, corpus, args.seconds)
            floor_rate, _ = rate(floor, corpus, args.seconds)
            frame_bytes = sum(map(len, corpus)) / len(corpus)
            results.append({"k": k, "version": version, "frame_bytes": frame_bytes, "decode_per_s": decoded,
                            "floor_per_s": floor_rate})
            rows.append(f"| {k} | {version} | {frame_bytes:,.0f} | {decoded:,.0f} | {1e6 / decoded:.1f} | "
                        f"{floor_rate:,.0f} | {decoded / floor_rate:.2f} |")
    table = "\n".join([
        "| commands per frame | version | frame bytes | decode_frame msg/s | µs/msg | floor msg/s | decode / floor |",
        "| --- | --- | --- | --- | --- | --- | --- |", *rows])
    h.report(results, table=table, json_path=args.out, started=started)


if __name__ == "__main__":
    main(sys.argv[1:])
