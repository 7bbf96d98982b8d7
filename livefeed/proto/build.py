"""Regenerate the Python code of the `.proto` files in this folder with the protoc bundled in
grpcio-tools (a development requirement; the runtime needs only `protobuf`).

    .venv/bin/python -m livefeed.proto.build

tests/livefeed/test_douyin_proto.py runs `generate()` into a temporary folder and fails when
the committed `*_pb2.py` differs, so a `.proto` and its code never drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
PROTOS = ("douyin.proto",)


def generate(out_dir: Path = PROTO_DIR) -> list[Path]:
    """Write `<name>_pb2.py` for every proto into `out_dir`; the paths written."""
    try:
        from grpc_tools import protoc
    except ImportError:
        raise SystemExit("Regenerating protobuf code needs grpcio-tools: pip install -r requirements/dev.txt") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for proto in PROTOS:
        code = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out_dir}", str(PROTO_DIR / proto)])
        if code != 0:
            raise SystemExit(f"protoc failed on {proto} (exit {code})")
        written.append(out_dir / proto.replace(".proto", "_pb2.py"))
    return written


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PROTO_DIR):
        print(path)
