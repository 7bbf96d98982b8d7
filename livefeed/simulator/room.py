"""One simulated Douyin room: its state (live or ended, rate, knobs), the messages it makes
(as the platform's protobuf), the frames that carry them, and the counters a test reads
(acks and heartbeats received, messages delivered, ...). No I/O: livefeed/simulator/server.py
puts frames on sockets."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import random
import secrets
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from livefeed.proto import douyin_pb2 as pb
from livefeed.simulator.content import EMOJI, FANSCLUB_JOIN, FANSCLUB_UP, GIFTS, nickname, phrase

HISTORY = 500  # recent messages kept for re-sending after a reconnect
MALFORMED_KINDS = ("gzip", "protobuf", "response", "payload", "oversized", "text")
OVERSIZED_BYTES = 5 * 1024 * 1024

# Share of each kind in the generated stream (the rest is chat).
WEIGHTS = (("chat", 0.55), ("like", 0.12), ("member", 0.10), ("gift", 0.10), ("emoji_chat", 0.04),
           ("follow", 0.03), ("viewers", 0.02), ("share", 0.015), ("fansclub", 0.01), ("unknown", 0.01),
           ("room_stats", 0.0025), ("rank", 0.0025))
UNKNOWN_METHODS = ("WebcastInRoomBannerMessage", "WebcastRanklistHourEntranceMessage", "WebcastLinkMicMethod")

_ids = itertools.count(7_000_000_000_000_000_000 + time.time_ns() // 100)  # unique across restarts too


ROOM_ID_BASE = 7_100_000_000_000_000_000


def room_id_for(live_id: str) -> str:
    """The numeric room id of a live id (digits), and back with live_id_for: a restarted
    simulator still knows the rooms its clients were connected to."""
    return str(ROOM_ID_BASE + int(live_id) % 10**17)


def live_id_for(room_id: str) -> str | None:
    if not room_id.isdigit() or int(room_id) < ROOM_ID_BASE:
        return None
    return str(int(room_id) - ROOM_ID_BASE)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Counters:
    connections: int = 0
    frames_sent: int = 0
    messages_sent: int = 0
    acks_expected: int = 0
    acks_ok: int = 0
    acks_bad: int = 0  # an ack for no frame that asked for one, or with the wrong payload
    heartbeats: int = 0
    client_garbage: int = 0  # client frames that are not a PushFrame
    malformed_sent: dict[str, int] = field(default_factory=dict)
    resent: int = 0
    refused: int = 0  # socket handshakes refused (unknown room, no cookie, no signature)
    last_query: dict[str, str] = field(default_factory=dict)  # of the last push socket
    last_enter_query: dict[str, str] = field(default_factory=dict)  # of the last room API call


@dataclass
class Streak:
    user: pb.User
    gift: tuple[int, str, int, bool]
    group_id: int
    target: int
    count: int = 0


class SimRoom:
    def __init__(self, live_id: str, *, rate: float, seed: int | None = None, resend_count: int = 0,
                 record_ids: bool = False):
        self.live_id = live_id
        digest = int(hashlib.sha1(live_id.encode(), usedforsecurity=False).hexdigest()[:15], 16)
        self.room_id = room_id_for(live_id)
        self.rng = random.Random(seed if seed is not None else digest)  # noqa: S311 - made-up chat, not secrets
        self.rate = rate
        self.live = True
        self.page = "ok"  # "ok", "antibot" (the anti-bot page), "missing" (a page with no roomId)
        self.stalled = False  # sends nothing at all, not even heartbeat answers
        self.require_signature = False
        self.require_a_bogus = False  # the enter API answers an empty 200 without a_bogus
        self.resend_count = resend_count  # every connection after the first starts with this many recent messages
        self.title = f"模拟直播间 {live_id}"
        self.streamer = pb.User(id=int(self.room_id[-12:]), nickName=f"主播{live_id}", displayId=f"sim{live_id}")
        self.viewers = self.rng.randint(200, 3000)
        self.viewers_total = self.viewers * 3
        self.likes_total = 0
        self.counters = Counters()
        self.history: deque[pb.Message] = deque(maxlen=HISTORY)
        self.sent_ids: list[int] | None = [] if record_ids else None
        self.streaks: list[Streak] = []
        self.sockets: set[Any] = set()
        self.stream_sign = secrets.token_hex(8)  # in the pull URLs; changed by the `expire` command
        self.stream_viewers: list[Any] = []  # every connection to the room's stream (stream.Viewer)
        self.stream_refuse = ""  # an HTTP status line the stream answers instead (the `stream_refuse` command)
        self._users = [self._new_user(index) for index in range(400)]
        self._log_ids = itertools.count(self.rng.randint(10**17, 10**18))
        self._kinds = [kind for kind, _ in WEIGHTS]
        self._weights = [weight for _, weight in WEIGHTS]
        self._makers = {"chat": self._chat, "like": self._like, "member": self._member, "gift": self._gift,
                        "emoji_chat": self._emoji_chat, "follow": self._follow, "viewers": self._viewers,
                        "share": self._share, "fansclub": self._fansclub, "unknown": self._unknown,
                        "room_stats": self._room_stats, "rank": self._rank}

    # ---- what the HTTP side shows ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {"live_id": self.live_id, "room_id": self.room_id, "live": self.live, "rate": self.rate,
                "page": self.page, "stalled": self.stalled, "require_signature": self.require_signature,
                "require_a_bogus": self.require_a_bogus,
                "resend_count": self.resend_count, "sockets": len(self.sockets), "counters": asdict(self.counters),
                "stream_viewers": [viewer.as_json() for viewer in self.stream_viewers[-20:]]}

    def enter_json(self, host: str, stream_host: str | None = None) -> dict[str, Any]:
        base = f"http://{stream_host or host}/stream/{self.room_id}"
        sign = f"?expire={int(time.time()) + 3600}&sign={self.stream_sign}"
        stream = {"flv_pull_url": {"FULL_HD1": f"{base}_or4.flv{sign}", "HD1": f"{base}_hd.flv{sign}",
                                   "SD1": f"{base}_ld.flv{sign}"},
                  "hls_pull_url_map": {"FULL_HD1": f"{base}_or4.m3u8{sign}", "HD1": f"{base}_hd.m3u8{sign}"},
                  "hls_pull_url": f"{base}_hd.m3u8{sign}"}
        room = {"id_str": self.room_id, "status": 2 if self.live else 4, "title": self.title,
                "user_count_str": str(self.viewers), "room_view_stats": {"display_value": self.viewers},
                "stream_url": stream if self.live else {},
                "owner": {"id_str": str(self.streamer.id), "nickname": self.streamer.nickName}}
        user = {"id_str": str(self.streamer.id), "nickname": self.streamer.nickName,
                "avatar_thumb": {"url_list": [f"http://{host}/avatar/{self.live_id}.jpg"]}}
        return {"status_code": 0, "data": {"data": [room], "room_status": 0 if self.live else 2, "user": user,
                                           "enter_room_id": self.room_id}}

    # ---- messages -------------------------------------------------------------------------

    def _new_user(self, index: int) -> pb.User:
        uid = 90_000_000_000 + self.rng.randint(0, 10**10)
        return pb.User(id=uid, shortId=uid % 10**9, nickName=nickname(self.rng), gender=self.rng.choice((0, 1, 2)),
                       displayId=f"dy{uid % 10**8}", payGrade=pb.PayGrade(level=self.rng.choice((0, 1, 3, 8, 12, 20, 35))))

    def _user(self) -> pb.User:
        return self.rng.choice(self._users)

    def _common(self, method: str, msg_id: int, ts: int) -> pb.Common:
        return pb.Common(method=method, msgId=msg_id, roomId=int(self.room_id), createTime=ts)

    def _wrap(self, method: str, payload: Any, msg_id: int) -> pb.Message:
        return pb.Message(method=method, payload=payload.SerializeToString(), msgId=msg_id)

    def _chat(self, msg_id, ts):
        return self._wrap("WebcastChatMessage", pb.ChatMessage(common=self._common("WebcastChatMessage", msg_id, ts),
                                                               user=self._user(), content=phrase(self.rng)), msg_id)

    def _emoji_chat(self, msg_id, ts):
        token = self.rng.choice(EMOJI)
        body = pb.EmojiChatMessage(common=self._common("WebcastEmojiChatMessage", msg_id, ts), user=self._user(),
                                   emojiId=EMOJI.index(token) + 1, defaultContent=token,
                                   emojiContent=pb.Text(defaultPattern=token))
        return self._wrap("WebcastEmojiChatMessage", body, msg_id)

    def _like(self, msg_id, ts):
        count = self.rng.randint(1, 15)
        self.likes_total += count
        body = pb.LikeMessage(common=self._common("WebcastLikeMessage", msg_id, ts), count=count,
                              total=self.likes_total, user=self._user())
        return self._wrap("WebcastLikeMessage", body, msg_id)

    def _member(self, msg_id, ts):
        self.viewers += 1
        self.viewers_total += 1
        body = pb.MemberMessage(common=self._common("WebcastMemberMessage", msg_id, ts), user=self._user(),
                                memberCount=self.viewers, action=1)
        return self._wrap("WebcastMemberMessage", body, msg_id)

    def _social(self, msg_id, ts, action: int):
        body = pb.SocialMessage(common=self._common("WebcastSocialMessage", msg_id, ts), user=self._user(),
                                action=action, shareType=3 if action == 3 else 0, followCount=self.viewers_total // 7)
        return self._wrap("WebcastSocialMessage", body, msg_id)

    def _follow(self, msg_id, ts):
        return self._social(msg_id, ts, 1)

    def _share(self, msg_id, ts):
        return self._social(msg_id, ts, 3)

    def _fansclub(self, msg_id, ts):
        user = self._user()
        kind = self.rng.choice((1, 2))
        text = (FANSCLUB_UP.format(level=self.rng.randint(2, 20)) if kind == 1 else FANSCLUB_JOIN)
        body = pb.FansclubMessage(commonInfo=self._common("WebcastFansclubMessage", msg_id, ts), type=kind,
                                  content=f"{user.nickName}{text}", user=user)
        return self._wrap("WebcastFansclubMessage", body, msg_id)

    def _viewers(self, msg_id, ts):
        self.viewers = max(10, self.viewers + self.rng.randint(-30, 30))
        body = pb.RoomUserSeqMessage(common=self._common("WebcastRoomUserSeqMessage", msg_id, ts), total=self.viewers,
                                     totalUser=self.viewers_total, onlineUserForAnchor=str(self.viewers),
                                     totalPvForAnchor=str(self.viewers_total * 2))
        return self._wrap("WebcastRoomUserSeqMessage", body, msg_id)

    def _room_stats(self, msg_id, ts):
        body = pb.RoomStatsMessage(common=self._common("WebcastRoomStatsMessage", msg_id, ts),
                                   displayShort=str(self.viewers_total), displayLong=f"{self.viewers_total}人看过",
                                   displayValue=self.viewers_total, total=self.viewers_total)
        return self._wrap("WebcastRoomStatsMessage", body, msg_id)

    def _rank(self, msg_id, ts):
        ranks = [pb.RoomRankMessage.RoomRank(user=user, scoreStr=str(1000 - 100 * index))
                 for index, user in enumerate(self.rng.sample(self._users, 3))]
        body = pb.RoomRankMessage(common=self._common("WebcastRoomRankMessage", msg_id, ts), ranksList=ranks)
        return self._wrap("WebcastRoomRankMessage", body, msg_id)

    def _unknown(self, msg_id, ts):
        method = self.rng.choice(UNKNOWN_METHODS)
        return pb.Message(method=method, payload=self._common(method, msg_id, ts).SerializeToString(), msgId=msg_id)

    def _gift(self, msg_id, ts):
        if self.streaks and self.rng.random() < 0.75:
            streak = self.rng.choice(self.streaks)
        else:
            gift = self.rng.choice(GIFTS)
            target = self.rng.choice((1, 1, 2, 3, 5, 10, 10, 30, 66, 99)) if gift[3] else 1
            streak = Streak(user=self._user(), gift=gift, group_id=ts * 1000 + self.rng.randint(0, 999), target=target)
            self.streaks.append(streak)
        return self.gift_step(streak, msg_id, ts)

    def gift_step(self, streak: Streak, msg_id: int, ts: int) -> pb.Message:
        """The next message of a streak: the count grows by a click or a few; the step that
        reaches the target ends it (repeatEnd = 1) and the streak is forgotten."""
        if streak.count < streak.target:
            streak.count = min(streak.target, streak.count + self.rng.choice((1, 1, 1, 2, 3)))
        end = streak.count >= streak.target
        if end and streak in self.streaks:
            self.streaks.remove(streak)
        gift_id, name, diamonds, combo = streak.gift
        body = pb.GiftMessage(common=self._common("WebcastGiftMessage", msg_id, ts), giftId=gift_id, groupCount=1,
                              repeatCount=streak.count, comboCount=streak.count, user=streak.user,
                              toUser=self.streamer, repeatEnd=1 if end else 0, groupId=streak.group_id,
                              gift=pb.GiftStruct(id=gift_id, name=name, diamondCount=diamonds, combo=combo),
                              sendTime=ts)
        return self._wrap("WebcastGiftMessage", body, msg_id)

    def next_messages(self, count: int) -> list[pb.Message]:
        ts = now_ms()
        kinds = self.rng.choices(self._kinds, self._weights, k=count)
        out = [self._makers[kind](next(_ids), ts) for kind in kinds]
        self.history.extend(out)
        return out

    def one(self, kind: str) -> pb.Message:
        """One message of a given kind (tests and the control endpoint use it)."""
        out = self._makers[kind](next(_ids), now_ms())
        self.history.append(out)
        return out

    def end_message(self) -> pb.Message:
        msg_id = next(_ids)
        body = pb.ControlMessage(common=self._common("WebcastControlMessage", msg_id, now_ms()), status=3)
        return self._wrap("WebcastControlMessage", body, msg_id)

    # ---- frames ---------------------------------------------------------------------------

    def frame(self, messages: list[pb.Message], *, need_ack: bool = True) -> tuple[bytes, int, str]:
        """(PushFrame bytes, its logId, the internalExt its ack must carry)."""
        log_id = next(self._log_ids)
        ts = now_ms()
        internal_ext = (f"internal_src:dim|wss_push_room_id:{self.room_id}|wss_push_did:0|fetch_time:{ts}"
                        f"|seq:{log_id}|wss_info:0-{ts}-0-0")
        response = pb.Response(messagesList=messages, cursor=f"t-{ts}_r-1_d-1_u-1_h-1", fetchInterval=1000, now=ts,
                               internalExt=internal_ext, fetchType=1, heartbeatDuration=0, needAck=need_ack)
        frame = pb.PushFrame(seqId=log_id % 10**6, logId=log_id, service=88, method=8, payloadEncoding="pb",
                             payloadType="msg", headersList=[pb.HeadersList(key="compress_type", value="gzip"),
                                                             pb.HeadersList(key="im-cursor", value=response.cursor)],
                             payload=gzip.compress(response.SerializeToString(), compresslevel=1))
        return frame.SerializeToString(), log_id, internal_ext

    def malformed(self, kind: str) -> bytes | str:
        """A frame that is broken in one way (MALFORMED_KINDS)."""
        self.counters.malformed_sent[kind] = self.counters.malformed_sent.get(kind, 0) + 1
        gz = [pb.HeadersList(key="compress_type", value="gzip")]
        if kind == "gzip":
            return pb.PushFrame(logId=1, payloadType="msg", headersList=gz, payload=b"this is not gzip").SerializeToString()
        if kind == "protobuf":
            return b"\xff" * 12  # a varint that never ends: no PushFrame
        if kind == "response":
            return pb.PushFrame(logId=2, payloadType="msg", headersList=gz,
                                payload=gzip.compress(b"\x0a\xff\xff\xff\xff\x0f")).SerializeToString()
        if kind == "payload":
            broken = pb.Message(method="WebcastChatMessage", payload=b"\x0a\x05\x0a\x03", msgId=next(_ids))
            return self.frame([broken], need_ack=False)[0]
        if kind == "oversized":
            return pb.PushFrame(logId=3, payloadType="msg", payload=b"\0" * OVERSIZED_BYTES).SerializeToString()
        if kind == "text":
            return "not a binary frame"
        raise ValueError(f"unknown malformed kind {kind!r}; one of {', '.join(MALFORMED_KINDS)}")
