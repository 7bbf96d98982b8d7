"""The one shape every live-feed message has, whatever platform it came from.

A platform client (livefeed/clients/) turns each frame it receives into `Message`s; storage,
statistics, the websocket push, the API and the export all speak this shape and nothing else
(its JSON form is `Message.as_json()`, see docs/protocol.md). A frame the client cannot read
is never an exception out of the client: it becomes a `Malformed` report (counted and logged
by the fetcher) or, for a well-formed message of a kind Chorus does not know, a message of
type `unknown` that keeps the platform's method name and the raw size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

CHAT = "chat"
EMOJI_CHAT = "emoji_chat"
GIFT = "gift"
LIKE = "like"
MEMBER = "member"
FOLLOW = "follow"
SHARE = "share"
FANSCLUB = "fansclub"
VIEWERS = "viewers"
ROOM_STATS = "room_stats"
RANK = "rank"
SUPER_CHAT = "super_chat"
GUARD = "guard"
CONTROL = "control"
UNKNOWN = "unknown"

TYPES = (CHAT, EMOJI_CHAT, GIFT, LIKE, MEMBER, FOLLOW, SHARE, FANSCLUB, VIEWERS, ROOM_STATS, RANK,
         SUPER_CHAT, GUARD, CONTROL, UNKNOWN)

# `control` messages: extra["status"] is one of these. ENDED ends the session.
PAUSED = "paused"
RESUMED = "resumed"
ENDED = "ended"

# Gift value units (extra["value_unit"]).
DOUYIN_DIAMOND = "diamond"
BILIBILI_GOLD = "gold"  # 1,000 gold coins = 1 CNY


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class LiveUser:
    id: str  # the platform's user id, as a string
    name: str = ""
    display_id: str = ""  # the handle shown on the platform (Douyin's display id), when known
    gender: int | None = None
    level: int | None = None

    def details(self) -> dict[str, Any]:
        """The fields besides id and name that the platform gave (stored as the row's `user`)."""
        out: dict[str, Any] = {}
        if self.display_id:
            out["display_id"] = self.display_id
        if self.gender is not None:
            out["gender"] = self.gender
        if self.level is not None:
            out["level"] = self.level
        return out

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, **self.details()}


@dataclass(slots=True)
class Message:
    """One normalised message.

    `platform_msg_id` is unique per channel on the platform (Douyin's msgId, Bilibili's
    message id or a digest of the packet where the platform gives none). Gifts: one stored row
    per combo; every step of a streak carries the same extra["combo_id"] and its running
    extra["count"] (storage keeps the highest), extra["combo_end"] is true on the step that ends
    it. Extra keys per type are listed in docs/protocol.md.
    """

    type: str
    platform_msg_id: str
    ts_ms: int  # the platform's time of the message (ms since the epoch); received_ms when it gave none
    user: LiveUser | None = None
    content: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    received_ms: int = field(default_factory=now_ms)

    def as_json(self, *, id: int | None = None, session_id: int | None = None) -> dict[str, Any]:
        return {"id": id, "session_id": session_id, "type": self.type, "platform_msg_id": self.platform_msg_id,
                "ts_ms": self.ts_ms, "received_ms": self.received_ms,
                "user": self.user.as_json() if self.user else None, "content": self.content, "extra": self.extra}


@dataclass(slots=True)
class Malformed:
    """A frame or message the client could not read: counted per channel and kind, logged once
    per kind with a sample, never an error of the fetcher."""

    kind: str  # "gzip", "protobuf", "json", "zlib", "brotli", "oversized", "header", ...
    detail: str
    sample: bytes = b""  # the first bytes, for the log
