"""The `simulator` platform: the Douyin client pointed at Chorus's own local simulator
(livefeed/simulator/, `manage.py live_simulator`), at LIVEFEED_SIMULATOR_ROOT. It speaks the
same protocol, so everything that follows a Douyin room can be seen working with no internet.

Room URLs: `<LIVEFEED_SIMULATOR_ROOT>/<live_id>` (e.g. http://127.0.0.1:8765/7001) or
`simulator:<live_id>`.
"""

from __future__ import annotations

import re
from typing import ClassVar
from urllib.parse import urlsplit

from django.conf import settings

from livefeed.clients import registry
from livefeed.clients.douyin import LIVE_ID, DouyinClient

WEBCAST_PATH = "/webcast/im/push/v2/"


@registry.register
class SimulatorClient(DouyinClient):
    name: ClassVar[str] = "simulator"
    label: ClassVar[str] = "Simulator"
    SHORT = re.compile(r"^simulator:([^/?#\s]+)$", re.IGNORECASE)

    def __init__(self, *, root: str | None = None, webcast_url: str | None = None, signer: str | None = "",
                 **kwargs):
        # The simulator needs no signature: unsigned unless a test asks for a signer.
        super().__init__(root=root, webcast_url=webcast_url, signer=signer, **kwargs)

    @classmethod
    def default_root(cls) -> str:
        return settings.LIVEFEED_SIMULATOR_ROOT

    @classmethod
    def default_webcast_url(cls) -> str:
        parts = urlsplit(settings.LIVEFEED_SIMULATOR_ROOT)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{WEBCAST_PATH}"

    @classmethod
    def parse_url(cls, url: str) -> str | None:
        text = (url or "").strip()
        short = cls.SHORT.match(text)
        if short:
            return short.group(1) if LIVE_ID.match(short.group(1)) else None
        root = urlsplit(settings.LIVEFEED_SIMULATOR_ROOT)
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != root.netloc.lower():
            return None
        prefix = root.path.rstrip("/")
        path = parts.path
        if not path.startswith(prefix + "/"):
            return None
        ref = path[len(prefix) + 1:].rstrip("/")
        return ref if LIVE_ID.match(ref) else None

    @classmethod
    def room_url(cls, ref: str) -> str:
        return f"{settings.LIVEFEED_SIMULATOR_ROOT.rstrip('/')}/{ref}"
