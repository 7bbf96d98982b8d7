"""Protocol definitions of the live platforms that speak protobuf (Douyin), as `.proto` files
with the Python code protoc generates from them (`python -m livefeed.proto.build`)."""
