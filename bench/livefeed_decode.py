"""Decode rate of the Douyin push socket: `livefeed.clients.douyin.decode_frame` over frames the
simulator makes (livefeed/simulator/room.py: gzip'd Responses in its busy-room mix: 55 % chat,
12 % likes, 10 % entries, 10 % gift streak steps, the rest emoji chat, follows, viewer counts,
shares, fan-club news, unknown methods, stats and ranks), for K = 1, 10, 50, 200 messages a
frame. Reported: frames and messages per second of one core, and microseconds per message.

Floor (same frames, same run): the least any decoder must do with the official runtime,
parse the PushFrame, gunzip, parse the Response and parse each payload with its message
class, without building the normalised messages (and without the ack frame).

    .venv/bin/python bench/livefeed_decode.py                 # about 40 s
    .venv/bin/python bench/livefeed_decode.py --seconds 0.5   # smoke

Pure CPU in this process: no database, Redis or network.
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import _harness as h  # noqa: E402
from google.protobuf.internal import api_implementation  # noqa: E402

from livefeed.clients.douyin import decode_frame  # noqa: E402
from livefeed.clients.douyin_frames import HANDLERS  # noqa: E402
from livefeed.messages import Malformed  # noqa: E402
from livefeed.proto import douyin_pb2 as pb  # noqa: E402
from livefeed.simulator.room import SimRoom  # noqa: E402

PARSERS = {method: parser for method, (parser, _build) in HANDLERS.items()}


def frames(k: int, count: int) -> list[bytes]:
    room = SimRoom("7001", rate=0, seed=1)
    return [room.frame(room.next_messages(k))[0] for _ in range(count)]


def floor(data: bytes) -> int:
    """PushFrame, gunzip, Response, each payload parsed: what any protobuf decoder does."""
    frame = pb.PushFrame.FromString(data)
    response = pb.Response.FromString(gzip.decompress(frame.payload))
    for item in response.messagesList:
        parser = PARSERS.get(item.method)
        if parser is not None:
            parser(item.payload)
    return len(response.messagesList)


def decode_count(data: bytes) -> int:
    items, ack = decode_frame(data)
    bad = [item for item in items if isinstance(item, Malformed)]
    if bad or ack is None:
        raise SystemExit(f"the corpus did not decode cleanly: {bad[:1]}, ack {ack is not None}")
    return len(items)


def rate(function, corpus: list[bytes], seconds: float) -> tuple[float, float]:
    """(frames per second, messages per second) decoding the corpus repeatedly for about `seconds` of CPU."""
    done_frames, done, started = 0, 0, time.process_time()
    while True:
        for data in corpus:
            done += function(data)
        done_frames += len(corpus)
        elapsed = time.process_time() - started
        if elapsed >= seconds:
            return done_frames / elapsed, done / elapsed


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="CPU seconds per measurement")
    parser.add_argument("--out", default="/tmp/chorus-bench/livefeed_decode.json")
    args = parser.parse_args(argv)
    if api_implementation.Type() != "upb":
        raise SystemExit(f"protobuf runs on {api_implementation.Type()!r}, not upb: the figures would not be comparable")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results, rows = [], []
    for k in (1, 10, 50, 200):
        corpus = frames(k, max(20, 4000 // k))
        frames_s, messages_s = rate(decode_count, corpus, args.seconds)
        floor_frames_s, floor_s = rate(floor, corpus, args.seconds)
        frame_bytes = sum(map(len, corpus)) / len(corpus)
        results.append({"k": k, "frame_bytes": frame_bytes, "decode_frames_per_s": frames_s,
                        "decode_messages_per_s": messages_s, "floor_frames_per_s": floor_frames_s,
                        "floor_messages_per_s": floor_s})
        rows.append(f"| {k} | {frame_bytes:,.0f} | {frames_s:,.0f} | {messages_s:,.0f} | {1e6 / messages_s:.1f} | "
                    f"{floor_s:,.0f} | {messages_s / floor_s:.2f} |")
    table = "\n".join([
        "| messages per frame | frame bytes (gzip) | decode_frame frames/s | msg/s | µs/msg | floor msg/s | decode / floor |",
        "| --- | --- | --- | --- | --- | --- | --- |", *rows])
    h.report(results, table=table, json_path=args.out, started=started)


if __name__ == "__main__":
    main(sys.argv[1:])
