"""The committed protobuf code is what protoc makes of the committed .proto, and decoding
runs on the fast (upb) runtime."""

from __future__ import annotations

from google.protobuf.internal import api_implementation

from livefeed.proto import build


def test_committed_code_is_what_protoc_makes_of_the_proto(tmp_path):
    for generated in build.generate(tmp_path):
        committed = build.PROTO_DIR / generated.name
        assert committed.read_bytes() == generated.read_bytes(), (
            f"{committed} is out of date with its .proto: run .venv/bin/python -m livefeed.proto.build")


def test_decoding_uses_the_upb_backend():
    from livefeed.proto import douyin_pb2

    assert api_implementation.Type() == "upb"
    frame = douyin_pb2.PushFrame(logId=5, payloadType="ack", payload=b"x")
    assert douyin_pb2.PushFrame.FromString(frame.SerializeToString()).logId == 5
