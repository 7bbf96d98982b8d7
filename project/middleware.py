"""Middleware of the project itself (request ids and access logs are in project/logs.py)."""


class SyncChain:
    """The innermost middleware, synchronous only. Under ASGI, Django runs a chain of
    sync-capable middleware in one worker thread, but a chain it sees as async calls every
    MiddlewareMixin hook through its own sync_to_async hop, and WhiteNoise (sync only) in
    the middle added two more switches: about 5 ms per request on a small machine
    (docs/benchmarks.md). With this at the bottom, the whole chain is synchronous: one hop
    into the thread for the request, one back."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)
