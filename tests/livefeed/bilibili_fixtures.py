"""Fixtures for the Bilibili tests: a fake Bilibili on two loopback hosts and a client pointed
at it. Import them into a test module: `from tests.livefeed.bilibili_fixtures import bilibili_fixture, bilibili_client_fixture`."""

from __future__ import annotations

import pytest

from livefeed.clients.bilibili import BilibiliClient
from tests.livefeed.bilibili_fake import FakeBilibili


@pytest.fixture(name="bilibili")
async def bilibili_fixture():
    fake = await FakeBilibili(hosts=("127.0.0.1", "127.0.0.2")).start()
    yield fake
    await fake.stop()


def client_for(fake: FakeBilibili, **kwargs) -> BilibiliClient:
    options = {"api_root": fake.api_root, "nav_url": fake.nav_url, "ws_url": fake.ws_url, "cookie": "",
               "heartbeat_s": 30.0, "timeout_s": 5.0, **kwargs}
    return BilibiliClient(**options)


@pytest.fixture(name="bilibili_client")
async def bilibili_client_fixture(bilibili):
    bilibili_client = client_for(bilibili)
    yield bilibili_client
    await bilibili_client.aclose()
