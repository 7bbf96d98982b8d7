"""Fixtures for the Douyin tests: the local simulator (livefeed/simulator/) on an ephemeral
port and a client pointed at it. Import them into a test module:
`from tests.livefeed.douyin_fixtures import simulator_fixture, sim_client_fixture  # noqa: F401`.
Code that runs its own event loop (the fetcher in a worker thread) uses `simulator_thread`."""

from __future__ import annotations

import asyncio
import time

import pytest

from livefeed.clients import Malformed, RoomInfo
from livefeed.clients.simulator import SimulatorClient
from livefeed.messages import Message
from livefeed.simulator import Simulator, SimulatorThread

LIVE_ID = "7001"


@pytest.fixture(name="simulator")
async def simulator_fixture():
    """A simulator that sends nothing by itself (rate 0): tests send what they need."""
    simulator = await Simulator(rate=0, seed=7).start()
    yield simulator
    await simulator.stop()


@pytest.fixture(name="simulator_thread")
def simulator_thread_fixture():
    with SimulatorThread(rate=50, seed=7, resend_count=20, record_ids=True) as simulator:
        yield simulator


def client_for(simulator: Simulator, **kwargs) -> SimulatorClient:
    return SimulatorClient(root=simulator.root, webcast_url=simulator.webcast_url, **kwargs)


@pytest.fixture(name="sim_client")
async def sim_client_fixture(simulator):
    client = client_for(simulator)
    yield client
    await client.aclose()


async def room(client: SimulatorClient, live_id: str = LIVE_ID) -> RoomInfo:
    return await client.room_info(live_id)


async def collect(connection, *, until, timeout_s: float = 5.0) -> list[Message | Malformed]:
    """Everything the connection yields until `until(items)` is true (or the timeout fails the test)."""
    items: list[Message | Malformed] = []
    deadline = time.monotonic() + timeout_s
    iterator = aiter(connection)
    while not until(items):
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"gave up after {timeout_s}s with {len(items)} items: {items[-5:]}")
        try:
            batch = await asyncio.wait_for(anext(iterator), left)
        except StopAsyncIteration:
            break
        items.extend(batch)
    return items


async def eventually(check, *, timeout_s: float = 5.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not hold within {timeout_s}s")
        await asyncio.sleep(0.02)
