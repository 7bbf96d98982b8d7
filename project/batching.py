"""Many concurrent requests of one kind, served by one call for all of them.

After a server restart every socket reconnects at once, and each handshake needs the
database (its token, its room). A server process runs its database work on one thread
(Channels' `database_sync_to_async`), so a thousand lookups of a few milliseconds each
queue there for seconds. A `Coalescer` gathers the requests made while its previous call
runs and serves them with the next call, in one round trip: alone, a request costs one
call as before; in a storm, the thousand cost a handful.

Nothing is kept between calls: every request is answered from what its call read, so a
revoked token is refused by the first call that starts after the revocation.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

BatchCall = Callable[[list[Item]], Awaitable[Sequence[Result | Exception]]]


class _Queue:
    def __init__(self) -> None:
        self.pending: list[tuple[object, asyncio.Future]] = []
        self.runner: asyncio.Task | None = None


class Coalescer(Generic[Item, Result]):
    """`await coalescer.ask(item)` -> the result for that item, from
    `await call(items)`, which returns one result per item in order: a value, or an
    exception instance that is raised to that item's caller alone. An exception raised by
    `call` itself reaches every caller of that batch. One queue per event loop."""

    def __init__(self, call: BatchCall, *, max_batch: int = 1000, name: str = "coalescer"):
        self._call = call
        self._max_batch = max_batch
        self._name = name
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()

    async def ask(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        future = loop.create_future()
        queue.pending.append((item, future))
        if queue.runner is None or queue.runner.done():
            queue.runner = loop.create_task(self._run(queue), name=self._name)
        return await future

    async def _run(self, queue: _Queue) -> None:
        while queue.pending:
            batch = queue.pending[: self._max_batch]
            del queue.pending[: self._max_batch]
            batch = [(item, future) for item, future in batch if not future.done()]  # callers gone
            if not batch:
                continue
            try:
                results = await self._call([item for item, _ in batch])
            except Exception as exc:  # the call failed as a whole: every caller hears it
                results = [exc] * len(batch)
            except BaseException:  # cancelled (the loop is closing): nobody waits for good
                for _, future in batch:
                    future.cancel()
                raise
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
