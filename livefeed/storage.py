"""Storing live messages: each exactly once, with the session's statistics in step.

`messages_store` takes the messages a fetcher received (one frame or many). Before the
transaction it turns them into rows (one dict per row, the columns as keys) and encodes the
INSERT's one JSON document; a value JSON cannot hold (NaN, bytes, an object) makes it check
and correct every message of the batch instead (`_sane`), so a client bug costs one odd row,
never a batch refused at every flush. Then, in one transaction, it:

1. locks the session row (so two writers of one session, e.g. a fetcher and the one that
   takes it over while the first is still flushing, take turns and every counter below is
   read and written by one of them at a time);
2. inserts the messages that are not gift combos in one statement per chunk,
   `INSERT ... ON CONFLICT DO NOTHING RETURNING id, platform_msg_id`: the unique key
   (channel, platform_msg_id) decides what is new, so a message the platform sends again
   after a reconnect, or a batch stored twice, adds nothing;
3. merges gift combos: every step of a streak carries the same combo id; the batch's steps
   are folded into one (the highest count, the first message's platform_msg_id), the rows
   the channel has for those combos are read, and one upsert on (channel, combo_id) writes
   the new combos and raises the count of known ones (GREATEST: a count never goes down),
   answering each row as it now is (for the push); the gift value added to the totals is the
   difference to what was stored, so a combo is counted once with its final count;
4. adds what is new to the counters: the session's totals per type, likes, gift value,
   peak viewers and distinct users, `LiveUserStat` per user, `LiveMinute` per minute and
   the hot-word tables (livefeed/stats.py), each an upsert that adds to the stored value.

A crash at any point rolls all of it back; storing the same list again then stores it once.
The SQL is the same on PostgreSQL and SQLite (3.35+: ON CONFLICT ... DO UPDATE and
RETURNING) except for GREATEST/LEAST (max/min in SQLite) and the jsonb casts. The write path
is plain SQL through the connection, not the ORM: at thousands of messages a second the
ORM's query building per statement was a fifth of the CPU (docs/benchmarks.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from livefeed import messages as kinds
from livefeed import stats
from livefeed.messages import LiveUser, Message, now_ms
from livefeed.models import GIFT_TYPES, LiveChannel, LiveMessage, LiveSession

logger = logging.getLogger(__name__)

# Rows per INSERT statement: SQLite allows 32,766 parameters (14 a row); PostgreSQL gets one
# JSON document, bounded only to keep one statement's memory modest.
CHUNK = {"postgresql": 5000, "sqlite": 1000}
CHAT_TYPES = (kinds.CHAT, kinds.EMOJI_CHAT)
MESSAGE_TABLE = LiveMessage._meta.db_table
SESSION_TABLE = LiveSession._meta.db_table
CHANNEL_TABLE = LiveChannel._meta.db_table
COLUMNS = ("channel_id", "session_id", "type", "platform_msg_id", "ts_ms", "received_ms", "user_id", "user_name",
           "user", "content", "extra", "combo_id", "gift_count", "gift_value")
JSON_COLUMNS = {"user", "extra"}
# What the combo upsert answers: each combo row as it now is, the columns of its JSON.
ROW_JSON_COLUMNS = ("id", "session_id", "type", "platform_msg_id", "ts_ms", "received_ms", "user_id", "user_name",
                    "user", "content", "extra", "combo_id")
# One encoder for every statement: json.dumps with options builds a new one at each call.
# No NaN or Infinity: jsonb refuses them, and so does a browser's JSON.parse.
ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


@dataclass
class StoreResult:
    """What a messages_store call changed. `stored`: the new rows as their JSON (the shape of
    Message.as_json, with id and session_id), in the order received; `updated`: gift combos
    already stored whose count went up, as their JSON now (push them as well: the browser
    replaces the row with the same id); `duplicates`: messages that added nothing."""

    stored: list[dict] = field(default_factory=list)
    updated: list[dict] = field(default_factory=list)
    duplicates: int = 0


# --- rows -------------------------------------------------------------------------------


def _bounded(value: str, limit: int) -> str:
    """An id that fits its column: a longer one becomes a digest (still unique in practice)."""
    if len(value) <= limit:
        return value
    return "h:" + hashlib.sha256(value.encode()).hexdigest()[: limit - 2]


def _whole(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return max(int(value), 0) if value == value and abs(value) < 2**62 else None


def _json_safe(value: Any) -> Any:
    """`value` with what JSON cannot hold replaced: NaN and infinities become null, bytes
    their hex, other objects their text (jsonb refuses NaN, json refuses bytes)."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    return str(value)


def _sane(message: Message, *, strict: bool = True) -> Message:
    """The message itself when every field has its type (and, if `strict`, its extra is JSON),
    else a corrected copy: a client bug must cost one odd row, never a batch that fails again
    at every flush (the fetcher keeps a batch that did not store and tries it again). Not
    strict, the JSON is checked once for the whole batch, when its statement is encoded."""
    extra = message.extra
    ok = (isinstance(message.type, str) and message.type and isinstance(message.platform_msg_id, str)
          and message.platform_msg_id and type(message.ts_ms) is int and type(message.received_ms) is int
          and isinstance(message.content, str) and isinstance(extra, dict)
          and (message.user is None or (isinstance(message.user, LiveUser) and isinstance(message.user.id, str))))
    if ok:
        if not strict:
            return message
        try:
            ENCODER.encode(extra)
            return message
        except (TypeError, ValueError):
            pass
    received_ms = message.received_ms if type(message.received_ms) is int else now_ms()
    ts_ms = _whole(message.ts_ms)
    user = message.user if isinstance(message.user, LiveUser) else None
    if user is not None and not isinstance(user.id, str):
        user = LiveUser(id=str(user.id), name=str(user.name or ""), display_id=str(user.display_id or ""))
    clean = Message(
        type=message.type if isinstance(message.type, str) and message.type else kinds.UNKNOWN,
        platform_msg_id=message.platform_msg_id if isinstance(message.platform_msg_id, str) else "",
        ts_ms=ts_ms if ts_ms is not None else received_ms, user=user,
        content=message.content if isinstance(message.content, str) else str(message.content or ""),
        extra=_json_safe(extra) if isinstance(extra, dict) else {"value": _json_safe(extra)},
        received_ms=received_ms)
    if not clean.platform_msg_id:  # the same content gives the same id, so a re-send is still one row
        seen = {key: value for key, value in clean.as_json().items() if key not in ("id", "session_id", "received_ms")}
        digest = hashlib.sha256(json.dumps(seen, sort_keys=True, default=str).encode()).hexdigest()
        clean.platform_msg_id = "d:" + digest[:40]
    return clean


def _gift_value(extra: dict) -> int | None:
    total = _whole(extra.get("total_value"))
    if total is None:
        unit, count = _whole(extra.get("unit_value")), _whole(extra.get("count"))
        if unit is not None:
            total = unit * (count if count is not None else 1)
    return total


def _combo_id(message: Message) -> str | None:
    combo = message.extra.get("combo_id") if message.type == kinds.GIFT else None
    if combo is None or combo == "" or combo == 0:
        return None
    return _bounded(str(combo), 100)


def _row(channel_id: int, session_id: int, message: Message, *, combo_id: str | None,
         strict: bool = True) -> dict[str, Any]:
    """The message's row, its columns as keys (the JSON document's objects as they are). The
    message has passed _sane; `strict`: the user's other fields made JSON-safe here too."""
    user = message.user
    user_id = user_name = ""
    rest = None
    if user is not None:
        user_id = user.id if len(user.id) <= 64 else _bounded(user.id, 64)
        user_name = user.name if isinstance(user.name, str) else str(user.name or "")
        if len(user_name) > 200 or "\x00" in user_name:
            user_name = user_name.replace("\x00", "")[:200]
        rest = user.details() or None
        if rest is not None and strict:
            rest = _json_safe(rest)
    kind, extra, content, platform_msg_id = message.type, message.extra, message.content, message.platform_msg_id
    is_gift = kind in GIFT_TYPES
    return {
        "channel_id": channel_id, "session_id": session_id, "type": kind[:16],
        "platform_msg_id": platform_msg_id if len(platform_msg_id) <= 100 else _bounded(platform_msg_id, 100),
        "ts_ms": message.ts_ms, "received_ms": message.received_ms,
        "user_id": user_id, "user_name": user_name, "user": rest,
        "content": content.replace("\x00", "") if "\x00" in content else content, "extra": extra,
        "combo_id": combo_id,
        "gift_count": _whole(extra.get("count")) if is_gift else None,
        "gift_value": _gift_value(extra) if is_gift else None,
    }


def _row_json(row: dict[str, Any], row_id: int) -> dict:
    """The JSON of a stored row (the shape of Message.as_json, as LiveMessage.as_json makes
    it from the database), built from the row without the objects in between."""
    rest = row["user"]
    user = None
    if row["user_id"] or row["user_name"] or rest:
        user = {"id": row["user_id"], "name": row["user_name"]}
        if rest:
            if rest.get("display_id"):
                user["display_id"] = rest["display_id"]
            if rest.get("gender") is not None:
                user["gender"] = rest["gender"]
            if rest.get("level") is not None:
                user["level"] = rest["level"]
    return {"id": row_id, "session_id": row["session_id"], "type": row["type"],
            "platform_msg_id": row["platform_msg_id"], "ts_ms": row["ts_ms"], "received_ms": row["received_ms"],
            "user": user, "content": row["content"], "extra": row["extra"] or {}}


def _fold_combos(steps: list[Message]) -> Message:
    """The steps of one combo in a batch as one message: the first step's id, time and user,
    the highest step's count and value, ended if any step ended it."""
    first = steps[0]
    if len(steps) == 1:
        return Message(type=first.type, platform_msg_id=first.platform_msg_id, ts_ms=first.ts_ms, user=first.user,
                       content=first.content, extra=dict(first.extra), received_ms=first.received_ms)
    top = max(steps, key=lambda m: _whole(m.extra.get("count")) or 0)
    extra = dict(top.extra)
    if any(m.extra.get("combo_end") for m in steps):
        extra["combo_end"] = True
    return Message(type=first.type, platform_msg_id=first.platform_msg_id, ts_ms=first.ts_ms, user=first.user or top.user,
                   content=top.content, extra=extra, received_ms=first.received_ms)


@dataclass
class _Batch:
    """A batch made into rows, before the transaction: the plain rows by platform_msg_id (the
    first of each), the index of the message each came from, the encoded INSERT of them, the
    gift combos folded into one row each (combo_id -> (row, index))."""

    plain: dict[str, dict[str, Any]]
    order: list[int]
    statements: list[tuple[str, list[Any]]]
    combos: dict[str, tuple[dict[str, Any], int]]
    duplicates: int


def _prepare(channel_id: int, session_id: int, messages: list[Message], *, strict: bool) -> _Batch:
    """The batch as rows and its INSERT encoded; TypeError or ValueError when not `strict` and
    some value is not JSON (then call again, strict)."""
    plain: dict[str, dict[str, Any]] = {}
    order: list[int] = []
    steps: dict[str, list[Message]] = {}
    first: dict[str, int] = {}
    duplicates = 0
    for index, message in enumerate(messages):
        message = _sane(message, strict=strict)
        combo_id = _combo_id(message) if message.type == kinds.GIFT else None
        if combo_id is not None:
            if combo_id in steps:
                steps[combo_id].append(message)
                duplicates += 1
            else:
                steps[combo_id] = [message]
                first[combo_id] = index
            continue
        row = _row(channel_id, session_id, message, combo_id=None, strict=strict)
        if row["platform_msg_id"] in plain:
            duplicates += 1
        else:
            plain[row["platform_msg_id"]] = row
            order.append(index)
    combos = {combo_id: (_row(channel_id, session_id, _fold_combos(batch), combo_id=combo_id, strict=strict),
                         first[combo_id]) for combo_id, batch in steps.items()}
    if combos:
        ENCODER.encode([row["extra"] for row, _ in combos.values()])  # the combos' JSON is checked here too
        ENCODER.encode([row["user"] for row, _ in combos.values()])
    statements = _statements(MESSAGE_TABLE, COLUMNS, list(plain.values()), NEW_TAIL) if plain else []
    return _Batch(plain=plain, order=order, statements=statements, combos=combos, duplicates=duplicates)


# --- SQL --------------------------------------------------------------------------------


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _greatest() -> str:
    return "GREATEST" if _postgres() else "max"


def _least() -> str:
    return "LEAST" if _postgres() else "min"


# PostgreSQL gets a batch as one JSON document (INSERT ... SELECT * FROM jsonb_to_recordset(%s)):
# one parameter whatever the batch size, encoded by the json module in C, where a VALUES list
# of 14 placeholders a row (or 14 arrays) costs the driver more than the insert costs the
# server. SQLite gets VALUES (...), (...).
PG_TYPES = {"type": "text", "platform_msg_id": "text", "user_id": "text", "user_name": "text", "content": "text",
            "combo_id": "text", "word": "text", "user": "jsonb", "extra": "jsonb"}  # the rest: bigint
NEW_TAIL = " ON CONFLICT DO NOTHING RETURNING id, platform_msg_id"


def _column_list(columns: tuple[str, ...]) -> str:
    return ", ".join(connection.ops.quote_name(column) for column in columns)


def _json(value: Any) -> str | None:
    return None if value is None else ENCODER.encode(value)


@functools.lru_cache(maxsize=256)
def _insert_sql(vendor: str, table: str, columns: tuple[str, ...], tail: str, rows: int) -> str:
    """The text of an INSERT (made once per shape: building it costs more than a row)."""
    head = f"INSERT INTO {table} ({_column_list(columns)}) "
    if vendor == "postgresql":
        record = ", ".join(f"{connection.ops.quote_name(c)} {PG_TYPES.get(c, 'bigint')}" for c in columns)
        return head + f"SELECT * FROM jsonb_to_recordset(%s::jsonb) AS r({record})" + tail  # noqa: S608 - constants
    return head + "VALUES " + ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * rows) + tail


def _statements(table: str, columns: tuple[str, ...], rows: list[dict[str, Any]], tail: str) -> list[tuple[str, list]]:
    """INSERT statements (SQL, parameters) of the rows into `table` followed by `tail` (ON
    CONFLICT ..., RETURNING ...), a chunk each. Every row has `columns` as keys (more are
    ignored). Table and column names are constants, never input. TypeError or ValueError if
    a value is not JSON."""
    statements = []
    vendor = connection.vendor
    size = CHUNK.get(vendor, 1000)
    if vendor == "postgresql":
        sql = _insert_sql(vendor, table, columns, tail, 0)
        for start in range(0, len(rows), size):
            document = ENCODER.encode(rows[start:start + size])
            if "\\u0000" in document:
                document = document.replace("\\u0000", "")  # jsonb (like text) holds no NUL
            statements.append((sql, [document]))
        return statements
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        params = [_json(row[c]) if c in JSON_COLUMNS else row[c] for row in chunk for c in columns]
        statements.append((_insert_sql(vendor, table, columns, tail, len(chunk)), params))
    return statements


def _execute(statements: list[tuple[str, list]]) -> list[tuple]:
    """Run INSERT statements; what their RETURNING answered, if anything."""
    answer: list[tuple] = []
    with connection.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)
            if "RETURNING" in sql:
                answer.extend(cursor.fetchall())
    return answer


def _insert(table: str, columns: tuple[str, ...], rows: list[dict[str, Any]], tail: str) -> list[tuple]:
    """INSERT the rows into `table` followed by `tail`; what RETURNING answered, if anything."""
    return _execute(_statements(table, columns, rows, tail))


COMBO_TAIL_SQL = (
    " ON CONFLICT (channel_id, combo_id) WHERE combo_id IS NOT NULL DO UPDATE SET"
    " gift_count = {greatest}({t}.gift_count, excluded.gift_count),"
    " gift_value = CASE WHEN {higher} THEN excluded.gift_value ELSE {t}.gift_value END,"
    " extra = CASE WHEN {higher} THEN excluded.extra ELSE {t}.extra END,"
    " content = CASE WHEN {higher} THEN excluded.content ELSE {t}.content END"
    " RETURNING {returning}")


def _upsert_combos(rows: list[dict[str, Any]]) -> dict[str, tuple]:
    """combo_id -> the row as it now is (ROW_JSON_COLUMNS), for new combos and combos whose
    count went up."""
    return {returned[-1]: returned for returned in _insert(MESSAGE_TABLE, COLUMNS, rows, _combo_tail(connection.vendor))}


@functools.lru_cache(maxsize=4)
def _combo_tail(vendor: str) -> str:
    t = MESSAGE_TABLE
    return COMBO_TAIL_SQL.format(greatest=_greatest(), t=t, higher=f"excluded.gift_count >= {t}.gift_count",
                                 returning=_column_list(ROW_JSON_COLUMNS))


def _upsert(table: str, columns: tuple[str, ...], conflict: tuple[str, ...], updates: dict[str, str],
            rows: list[dict[str, Any]], returning: str = "") -> list[tuple]:
    """INSERT ... ON CONFLICT (conflict) DO UPDATE SET column = expression (`{t}`: the table)."""
    if not rows:
        return []
    assignments = ", ".join(f"{column} = {expression.format(t=table)}" for column, expression in updates.items())
    return _insert(table, columns, rows, f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET {assignments}"
                                         + (f" RETURNING {returning}" if returning else ""))


def _load_json(value: Any) -> Any:
    """A json/jsonb column as a raw query answers it: text on both backends here (Django
    registers its own loader for jsonb on psycopg)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


# --- the counters -----------------------------------------------------------------------


@dataclass
class _Counted:
    """What the new rows and the combo increases add to the statistics. The user and minute
    entries are the rows of their upserts (their columns as keys)."""

    session_id: int
    channel_id: int
    by_type: Counter = field(default_factory=Counter)
    likes: int = 0
    gift_value: int = 0
    gift_value_unit: str = ""
    peak_viewers: int = 0
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    minutes: dict[int, dict[str, Any]] = field(default_factory=dict)
    words: Counter = field(default_factory=Counter)  # (minute, word) -> count

    def add(self, row: dict[str, Any], *, new: bool, gift_delta: int) -> None:
        kind, extra, ts_ms = row["type"], row["extra"], row["ts_ms"]
        minute_of = ts_ms // 60_000
        minute = self.minutes.get(minute_of)
        if minute is None:
            minute = self.minutes[minute_of] = {
                "session_id": self.session_id, "minute": minute_of, "messages": 0, "chats": 0, "gifts": 0, "likes": 0,
                "members": 0, "gift_value": 0, "viewers": None}
        is_chat = kind in CHAT_TYPES
        likes = 0
        if new:
            self.by_type[kind] += 1
            minute["messages"] += 1
            if is_chat:
                minute["chats"] += 1
                words = self.words
                for word in stats.tokens(row["content"]):
                    words[(minute_of, word)] += 1
            elif kind in GIFT_TYPES:
                minute["gifts"] += 1
            elif kind == kinds.MEMBER:
                minute["members"] += 1
            elif kind == kinds.LIKE:
                likes = _whole(extra.get("count")) or 0
                minute["likes"] += likes
                self.likes += likes
            elif kind == kinds.VIEWERS:
                current = _whole(extra.get("current"))
                if current is not None:
                    self.peak_viewers = max(self.peak_viewers, current)
                    minute["viewers"] = max(minute["viewers"] or 0, current)
        if gift_delta:
            self.gift_value += gift_delta
            minute["gift_value"] += gift_delta
            self.gift_value_unit = self.gift_value_unit or str(extra.get("value_unit") or "")[:20]
        user_id = row["user_id"]
        if user_id:
            user = self.users.get(user_id)
            if user is None:
                user = self.users[user_id] = {
                    "session_id": self.session_id, "channel_id": self.channel_id, "user_id": user_id,
                    "user_name": "", "messages": 0, "chats": 0, "gift_value": 0, "likes": 0,
                    "first_seen_ms": ts_ms, "last_seen_ms": ts_ms}
            elif ts_ms < user["first_seen_ms"]:
                user["first_seen_ms"] = ts_ms
            elif ts_ms > user["last_seen_ms"]:
                user["last_seen_ms"] = ts_ms
            if row["user_name"]:
                user["user_name"] = row["user_name"]
            if new:
                user["messages"] += 1
                if is_chat:
                    user["chats"] += 1
            user["gift_value"] += gift_delta
            user["likes"] += likes


USER_COLUMNS = ("session_id", "channel_id", "user_id", "user_name", "messages", "chats", "gift_value", "likes",
                "first_seen_ms", "last_seen_ms")
MINUTE_COLUMNS = ("session_id", "minute", "messages", "chats", "gifts", "likes", "members", "gift_value", "viewers")


def _write_counters(*, session_id: int, channel_id: int, totals: dict, gift_value_unit: str, counted: _Counted,
                    new_rows: int) -> None:
    from livefeed.models import LiveMinute, LiveSessionWord, LiveUserStat, LiveWordMinute

    if not (new_rows or counted.users or counted.minutes):
        return  # every message was a duplicate: nothing to count
    greatest, least = _greatest(), _least()
    # Distinct users: PostgreSQL says which rows the upsert inserted (xmax = 0: no earlier
    # version); SQLite cannot, so the session's known users among these are read first.
    existing_users: set[str] = set()
    if counted.users and not _postgres():
        existing_users = set(LiveUserStat.objects.filter(session_id=session_id, user_id__in=list(counted.users))
                             .values_list("user_id", flat=True))
    upserted = _upsert(
        LiveUserStat._meta.db_table, USER_COLUMNS, ("session_id", "user_id"),
        {"user_name": "CASE WHEN excluded.user_name <> '' THEN excluded.user_name ELSE {t}.user_name END",
         "messages": "{t}.messages + excluded.messages", "chats": "{t}.chats + excluded.chats",
         "gift_value": "{t}.gift_value + excluded.gift_value", "likes": "{t}.likes + excluded.likes",
         "first_seen_ms": least + "({t}.first_seen_ms, excluded.first_seen_ms)",
         "last_seen_ms": greatest + "({t}.last_seen_ms, excluded.last_seen_ms)"},
        list(counted.users.values()), returning="(xmax = 0)" if _postgres() else "",
    )
    new_users = sum(1 for (inserted,) in upserted if inserted) if _postgres() else len(
        set(counted.users) - existing_users)
    _upsert(
        LiveMinute._meta.db_table, MINUTE_COLUMNS, ("session_id", "minute"),
        {**{column: f"{{t}}.{column} + excluded.{column}"
            for column in ("messages", "chats", "gifts", "likes", "members", "gift_value")},
         "viewers": "CASE WHEN excluded.viewers IS NULL THEN {t}.viewers WHEN {t}.viewers IS NULL THEN excluded.viewers"
                    f" ELSE {greatest}({{t}}.viewers, excluded.viewers) END"},
        list(counted.minutes.values()),
    )
    if counted.words:
        _upsert(LiveWordMinute._meta.db_table, ("session_id", "minute", "word", "count"), ("session_id", "minute", "word"),
                {"count": "{t}.count + excluded.count"},
                [{"session_id": session_id, "minute": minute, "word": word, "count": count}
                 for (minute, word), count in counted.words.items()])
        per_word: Counter = Counter()
        for (_, word), count in counted.words.items():
            per_word[word] += count
        _upsert(LiveSessionWord._meta.db_table, ("session_id", "word", "count"), ("session_id", "word"),
                {"count": "{t}.count + excluded.count"},
                [{"session_id": session_id, "word": word, "count": count} for word, count in per_word.items()])

    totals = dict(totals)
    for kind, count in counted.by_type.items():
        totals[kind] = totals.get(kind, 0) + count
    cast = "::jsonb" if _postgres() else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {SESSION_TABLE} SET totals = %s{cast}, messages_total = messages_total + %s,"  # noqa: S608 - constants
            " likes_total = likes_total + %s, gift_value = gift_value + %s, gift_value_unit = %s,"
            f" peak_viewers = {greatest}(peak_viewers, %s), distinct_users = distinct_users + %s WHERE id = %s",
            [ENCODER.encode(totals), new_rows, counted.likes, counted.gift_value,
             gift_value_unit or counted.gift_value_unit, counted.peak_viewers, new_users, session_id])
        if new_rows:
            cursor.execute(f"UPDATE {CHANNEL_TABLE} SET messages_total = messages_total + %s,"  # noqa: S608 - constants
                           " last_message_at = %s WHERE id = %s",
                           [new_rows, connection.ops.adapt_datetimefield_value(timezone.now()), channel_id])


# --- the entry point --------------------------------------------------------------------


def _lock_session(*, session_id: int, channel_id: int) -> tuple[dict, str]:
    """Lock the session row (PostgreSQL; SQLite has one writer at a time anyway): its totals
    and gift value unit. LiveSession.DoesNotExist if it is not the channel's."""
    lock = " FOR UPDATE" if _postgres() else ""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT totals, gift_value_unit FROM {SESSION_TABLE} WHERE id = %s AND channel_id = %s{lock}",  # noqa: S608
                       [session_id, channel_id])
        found = cursor.fetchone()
    if found is None:
        raise LiveSession.DoesNotExist(f"live session {session_id} of channel {channel_id} does not exist")
    return _load_json(found[0]) or {}, found[1] or ""


def messages_store(*, channel_id: int, session_id: int, messages: list[Message]) -> StoreResult:
    """Store what is new in `messages` (see the module docstring); safe to call again with
    the same messages. LiveSession.DoesNotExist if the session is not the channel's (or the
    channel was removed meanwhile: the fetcher then stops)."""
    result = StoreResult()
    if not messages:
        return result
    try:
        batch = _prepare(channel_id, session_id, messages, strict=False)
    except (TypeError, ValueError):  # some value JSON cannot hold: every message checked and corrected
        batch = _prepare(channel_id, session_id, messages, strict=True)
    result.duplicates = batch.duplicates

    with transaction.atomic():
        totals, gift_value_unit = _lock_session(session_id=session_id, channel_id=channel_id)
        counted = _Counted(session_id=session_id, channel_id=channel_id)
        stored: list[dict] = []
        if batch.plain:
            inserted = {platform_msg_id: row_id for row_id, platform_msg_id in _execute(batch.statements)}
            result.duplicates += len(batch.plain) - len(inserted)
            add = counted.add
            for row in batch.plain.values():
                row_id = inserted.get(row["platform_msg_id"])
                if row_id is not None:
                    add(row, new=True, gift_delta=row["gift_value"] or 0)
                    stored.append(_row_json(row, row_id))
                else:
                    stored.append(None)  # type: ignore[arg-type]  # keeps the positions of batch.order
        if batch.combos:
            combos = _store_combos(channel_id, batch.combos, counted, result)
            order = [(index, item) for index, item in zip(batch.order, stored, strict=True) if item is not None]
            result.stored = [item for _, item in sorted(order + combos, key=lambda pair: pair[0])]
        else:
            result.stored = [item for item in stored if item is not None]
        _write_counters(session_id=session_id, channel_id=channel_id, totals=totals, gift_value_unit=gift_value_unit,
                        counted=counted, new_rows=len(result.stored))
    return result


def _known_combos(channel_id: int, combo_ids: list[str]) -> dict[str, tuple[int, int, dict]]:
    """combo_id -> (count, value, extra) of the channel's stored combos among `combo_ids`."""
    known: dict[str, tuple[int, int, dict]] = {}
    with connection.cursor() as cursor:
        for start in range(0, len(combo_ids), 500):
            chunk = combo_ids[start:start + 500]
            cursor.execute(f"SELECT combo_id, gift_count, gift_value, extra FROM {MESSAGE_TABLE}"  # noqa: S608 - constants
                           f" WHERE channel_id = %s AND combo_id IN ({', '.join(['%s'] * len(chunk))})",
                           [channel_id, *chunk])
            for combo_id, count, value, extra in cursor.fetchall():
                known[combo_id] = (count or 0, value or 0, _load_json(extra) or {})
    return known


def _returned_json(returned: tuple) -> dict:
    """The JSON of a row the combo upsert answered (ROW_JSON_COLUMNS)."""
    row = dict(zip(ROW_JSON_COLUMNS, returned, strict=True))
    row["user"], row["extra"] = _load_json(row["user"]), _load_json(row["extra"])
    return _row_json(row, row["id"])


def _store_combos(channel_id: int, combos: dict[str, tuple[dict[str, Any], int]], counted: _Counted,
                  result: StoreResult) -> list[tuple[int, dict]]:
    """Merge the batch's gift combos with the stored ones (the session row is locked): the new
    combos' JSON with the index of their first message in the batch; result.updated gets the
    grown ones."""
    known = _known_combos(channel_id, list(combos))
    writes: list[tuple[dict[str, Any], bool, int]] = []
    for combo_id, (row, _) in combos.items():
        count, value = row["gift_count"] or 0, row["gift_value"] or 0
        if combo_id not in known:
            writes.append((row, True, value))
            continue
        old_count, old_value, old_extra = known[combo_id]
        ends = bool(row["extra"].get("combo_end")) and not old_extra.get("combo_end")
        if count > old_count or (count == old_count and ends):
            if old_extra.get("combo_end"):
                row["extra"]["combo_end"] = True
            writes.append((row, False, max(value - old_value, 0) if count > old_count else 0))
        else:
            result.duplicates += 1
    if not writes:
        return []
    answered = _upsert_combos_safely([row for row, _, _ in writes])
    new: list[tuple[int, dict]] = []
    grown: list[dict] = []
    for row, is_new, delta in writes:
        counted.add(row, new=is_new, gift_delta=delta)
        returned = answered[row["combo_id"]]
        if is_new:
            new.append((combos[row["combo_id"]][1], _row_json(row, returned[0])))
        else:
            result.duplicates += 1  # the message itself was stored before; only its count grew
            grown.append(_returned_json(returned))
    if grown:
        result.updated = sorted(grown, key=lambda item: item["id"])
    return new


def _upsert_combos_safely(rows: list[dict[str, Any]]) -> dict[str, tuple]:
    """_upsert_combos in a savepoint. A new combo whose first message's id is already a row's
    that is not this combo (a platform reusing an id) conflicts on the other unique key,
    which the upsert does not handle: those combos are stored one by one, under an id made
    of both, so the combo is kept and the batch is not refused again at every flush."""
    try:
        with transaction.atomic():
            return _upsert_combos(rows)
    except IntegrityError:
        pass
    answered: dict[str, tuple] = {}
    for row in rows:
        try:
            with transaction.atomic():
                answered.update(_upsert_combos([row]))
                continue
        except IntegrityError:
            logger.warning("live gift combo with a message id already stored",
                           extra={"channel_id": row["channel_id"], "platform_msg_id": row["platform_msg_id"]})
        row["platform_msg_id"] = _bounded(f"{row['platform_msg_id']}#{row['combo_id']}", 100)
        answered.update(_upsert_combos([row]))
    return answered


# --- deleting ---------------------------------------------------------------------------

DELETE_BATCH = 5000  # rows per DELETE: each statement is short, so it holds its locks briefly


def _first_id_at_or_after(cutoff_ms: int, lo: int, hi: int) -> int:
    """The smallest id whose message was received at or after cutoff_ms (hi + 1 if none),
    by a binary search on the primary key: ids grow in the order messages are stored, so
    received_ms grows with them (to within the few seconds two fetchers may differ by; each
    DELETE also checks received_ms, so nothing newer is ever deleted). About 25 index
    lookups at 10 million rows, instead of an index on received_ms every insert would pay."""
    rows = LiveMessage.objects.order_by("id").values_list("id", "received_ms")
    answer = hi + 1
    while lo <= hi:
        mid = (lo + hi) // 2
        probe = rows.filter(id__gte=mid).first()
        if probe is None:
            hi = mid - 1
            continue
        probe_id, received_ms = probe
        if received_ms >= cutoff_ms:
            answer = min(answer, probe_id)
            hi = mid - 1
        else:
            lo = probe_id + 1
    return answer


def messages_delete_older_than(*, cutoff_ms: int, batch: int | None = None,
                               max_batches: int | None = None) -> tuple[int, bool]:
    """Delete messages received before cutoff_ms, `batch` ids at a time (DELETE_BATCH), each
    DELETE its own short transaction. (deleted, done): done is False when max_batches stopped
    it first. Sessions, their totals and statistics stay."""
    batch = batch or DELETE_BATCH
    bounds = LiveMessage.objects.order_by("id").values_list("id", flat=True)
    first = bounds.first()
    if first is None:
        return 0, True
    last = bounds.last()
    stop = _first_id_at_or_after(cutoff_ms, first, last)
    deleted, batches, start = 0, 0, first
    while start < stop:
        if max_batches is not None and batches >= max_batches:
            return deleted, False
        end = min(start + batch, stop)
        count, _ = LiveMessage.objects.filter(id__gte=start, id__lt=end, received_ms__lt=cutoff_ms).delete()
        deleted += count
        batches += 1
        start = end
    return deleted, True


def messages_delete(*, channel_id: int, batch: int = DELETE_BATCH) -> int:
    """Delete every message of a channel, session by session, `batch` ids at a time."""
    deleted = 0
    for session_id in LiveSession.objects.filter(channel_id=channel_id).values_list("id", flat=True):
        ids = LiveMessage.objects.filter(session_id=session_id).order_by("id").values_list("id", flat=True)
        first, last = ids.first(), ids.last()
        if first is None:
            continue
        for start in range(first, last + 1, batch):
            count, _ = LiveMessage.objects.filter(session_id=session_id, id__gte=start, id__lt=start + batch).delete()
            deleted += count
    return deleted


def word_minutes_delete(*, ended_before, batch: int = DELETE_BATCH) -> int:
    """Delete the per-minute word counts of sessions that ended before `ended_before` (the
    session's own hot words, LiveSessionWord, stay)."""
    from livefeed.models import LiveWordMinute

    deleted = 0
    for session_id in LiveSession.objects.filter(ended_at__lt=ended_before).values_list("id", flat=True):
        while True:
            ids = list(LiveWordMinute.objects.filter(session_id=session_id).values_list("id", flat=True)[:batch])
            if not ids:
                break
            count, _ = LiveWordMinute.objects.filter(id__in=ids).delete()
            deleted += count
    return deleted
