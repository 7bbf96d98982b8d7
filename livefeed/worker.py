"""The live-feed fetcher inside a Celery worker: a worker that consumes the `livefeed`
queue (its own line in the Procfile and compose.yaml) also runs a fetcher Host on an event
loop in a thread of its own, started and stopped with the worker (a Celery bootstep), so
one worker process follows many rooms at once. A worker stopped normally flushes what it
received and releases its leases (another worker takes over within a scan); one killed with
-9 loses its leases when they expire (LIVEFEED_LEASE_S). The same loop runs the recorder's
host (livefeed/recorder.py), which records the channels with `record` on under leases of its
own."""

from __future__ import annotations

import asyncio
import logging
import threading

from celery import bootsteps

logger = logging.getLogger(__name__)

QUEUE = "livefeed"


class HostThread:
    """A fetcher Host and a RecorderHost on their own event loop, in their own thread."""

    def __init__(self, **host_options):
        self._options = host_options
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="livefeed-host", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        from livefeed.fetcher import Host
        from livefeed.recorder import RecorderHost

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await asyncio.gather(Host(**self._options).run(self._stop), RecorderHost().run(self._stop))

        try:
            asyncio.run(main())
        except Exception:
            logger.exception("live fetcher host stopped on an error")

    def stop(self, timeout_s: float = 15.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)


class FetcherStep(bootsteps.StartStopStep):
    """Runs the fetcher in workers that consume the livefeed queue."""

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.host: HostThread | None = None

    def include_if(self, worker) -> bool:
        return QUEUE in worker.app.amqp.queues.consume_from

    def start(self, worker) -> None:
        self.host = HostThread()
        self.host.start()
        logger.info("live fetcher started")

    def stop(self, worker) -> None:
        if self.host is not None:
            self.host.stop()
            self.host = None
            logger.info("live fetcher stopped")
