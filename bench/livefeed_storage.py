"""Live-feed storage on PostgreSQL: the insert rate of messages_store and the session page
queries, on an empty table and at 10 million stored messages.

Run by hand from the repository root (pytest does not collect it):

    .venv/bin/python bench/livefeed_storage.py --rows 10000000

What it does, with its own PostgreSQL database (chorus_bench_livefeed_storage by default,
--db-name; created and dropped):
  1. insert rate on an empty table: realistic messages (Chinese chat of varied words and
     emoji, gift combos in steps, likes, entries, viewer counts; 30 % of each batch sent
     again, as a platform does after a reconnect) through livefeed.storage.messages_store,
     in batches of 100 and of 500: messages per second, and per batch p50/p99 ms. Floors, the
     same run and the same rows: a plain multi-row INSERT of the message rows (no conflict
     handling, no counters), and COPY;
  2. ROWS messages generated on the server (INSERT ... SELECT generate_series, a million a
     statement) across 20 channels and 200 sessions, then ANALYZE;
  3. at that size: the session page queries through the ORM as the selectors run them
     (newest 50 of a session; newest 50 of one type; a user's newest 50 in a channel and in
     a session; the newest 50 containing a word, as the page's search does; a page of 1000
     oldest first after an id, as the API's polling/export does), REPEAT times each over
     random sessions and users: p50/p99 ms, each answer turned into its JSON; then the
     insert rate again.
Generation stops at --budget-s (default 900 s) and reports the size reached.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import BenchEnv, django_setup, percentile

CHANNELS = 20
SESSIONS = 200
WORDS = ["主播", "好听", "漂亮", "加油", "唱歌", "周杰伦", "晚上好", "哈哈哈", "666", "来了", "大哥", "谢谢",
         "礼物", "今天", "衣服", "好看", "厉害", "牛逼", "关注", "点赞", "直播间", "老铁", "支持", "下播",
         "[比心]", "[赞]", "[捂脸]", "[玫瑰]", "[爱心]", "nice", "love", "stream", "再来一首", "太好听了"]
GIFTS = [("玫瑰", 1), ("小心心", 1), ("抖音", 1), ("棒棒糖", 9), ("跑车", 1200), ("嘉年华", 3000)]


def realistic(n: int, *, start_ms: int, rng: random.Random, prefix: str, users: int = 50_000):
    """n messages of a busy room, plus the ids of what gets sent twice."""
    from livefeed import messages as kinds
    from livefeed.messages import LiveUser, Message

    out = []
    combos: dict[str, int] = {}
    for i in range(n):
        at = start_ms + i * 5
        number = rng.randrange(users)
        user = LiveUser(id=f"u{number}", name=f"观众{number}", level=number % 60)
        roll = rng.random()
        if roll < 0.70:
            text = "".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5)))
            out.append(Message(type=kinds.CHAT, platform_msg_id=f"{prefix}c{i}", ts_ms=at, user=user, content=text,
                               received_ms=at + 120))
        elif roll < 0.78:
            combo = rng.choice(list(combos)) if combos and rng.random() < 0.7 else f"{prefix}k{i}"
            combos[combo] = combos.get(combo, 0) + 1
            name, value = rng.choice(GIFTS)
            count = combos[combo]
            out.append(Message(type=kinds.GIFT, platform_msg_id=f"{prefix}g{i}", ts_ms=at, user=user,
                               content=f"送出 {name} x{count}",
                               extra={"gift_id": 1, "gift_name": name, "count": count, "unit_value": value,
                                      "total_value": value * count, "value_unit": "diamond", "combo_id": combo},
                               received_ms=at + 120))
        elif roll < 0.88:
            out.append(Message(type=kinds.LIKE, platform_msg_id=f"{prefix}l{i}", ts_ms=at, user=user,
                               extra={"count": rng.randint(1, 15), "total": i}, received_ms=at + 120))
        elif roll < 0.98:
            out.append(Message(type=kinds.MEMBER, platform_msg_id=f"{prefix}m{i}", ts_ms=at, user=user,
                               content="来了", received_ms=at + 120))
        else:
            out.append(Message(type=kinds.VIEWERS, platform_msg_id=f"{prefix}v{i}", ts_ms=at,
                               extra={"current": rng.randint(1000, 5000), "total": 100_000 + i}, received_ms=at + 120))
    return out


def _backend_pid() -> int:
    """The PostgreSQL backend serving this process's connection (on this machine)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _cpu_s(pid: int) -> float:
    """utime + stime of a process, from /proc (0 if it cannot be read: another machine's server)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def insert_rate(*, channel_id: int, session_id: int, batch: int, total: int, rng: random.Random, prefix: str,
                users: int, profiler=None) -> dict:
    """messages_store over `total` messages in batches, each batch also carrying 30 % of the
    previous one again (a re-send after a reconnect). client_cpu_us_per_message is this
    process's CPU (Python and the driver) per message sent, server_cpu_us_per_message that of
    the PostgreSQL backend serving it: on a shared machine they move far less than the
    wall-clock rate does. `profiler`: a cProfile.Profile
    enabled around the messages_store calls only."""
    from livefeed.storage import messages_store

    messages = realistic(total, start_ms=1_764_590_400_000, rng=rng, prefix=prefix, users=users)
    times, stored, duplicates, previous = [], 0, 0, []
    backend = _backend_pid()
    started, cpu_started, server_started = time.perf_counter(), time.process_time(), _cpu_s(backend)
    for start in range(0, total, batch):
        chunk = messages[start:start + batch]
        resent = rng.sample(previous, k=min(len(previous), int(batch * 0.3)))
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        result = messages_store(channel_id=channel_id, session_id=session_id, messages=resent + chunk)
        if profiler is not None:
            profiler.disable()
        times.append((time.perf_counter() - t0) * 1000)
        stored += len(result.stored)
        duplicates += result.duplicates
        previous = chunk
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    server = _cpu_s(backend) - server_started
    return {"batch": batch, "messages": total, "stored_rows": stored,
            "duplicates": duplicates, "seconds": round(wall, 2), "messages_per_s": round(total / wall),
            "client_cpu_us_per_message": round(cpu / total * 1e6, 1),
            "server_cpu_us_per_message": round(server / total * 1e6, 1),
            "batch_ms_p50": round(statistics.median(times), 1), "batch_ms_p99": round(percentile(times, 99), 1),
            "messages_list": messages}


def floors(*, channel_id: int, session_id: int, messages, batch: int, prefix: str) -> dict:
    """The same message rows without conflict handling or counters: multi-row INSERT, and COPY."""
    from django.db import connection, transaction

    from livefeed import storage

    rows = [storage._row(channel_id, session_id, m, combo_id=None) for m in messages]
    for index, row in enumerate(rows):
        row["platform_msg_id"] = f"floor-{prefix}{index}"
    out = {}
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        with transaction.atomic():
            storage._insert(storage.MESSAGE_TABLE, storage.COLUMNS, rows[start:start + batch], "")
    out["insert_messages_per_s"] = round(len(rows) / (time.perf_counter() - started))
    for index, row in enumerate(rows):
        row["platform_msg_id"] = f"copy-{prefix}{index}"
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        copy_sql = f"COPY {storage.MESSAGE_TABLE} ({storage._column_list(storage.COLUMNS)}) FROM STDIN"
        with transaction.atomic(), connection.cursor() as cursor, cursor.cursor.copy(copy_sql) as copy:
            for row in chunk:
                copy.write_row([storage._json(row[c]) if c in storage.JSON_COLUMNS else row[c]
                                for c in storage.COLUMNS])
    out["copy_messages_per_s"] = round(len(rows) / (time.perf_counter() - started))
    return out


GENERATE_SQL = """
INSERT INTO livefeed_livemessage (channel_id, session_id, type, platform_msg_id, ts_ms, received_ms, user_id,
                                  user_name, "user", content, extra, combo_id, gift_count, gift_value)
SELECT (%(channels)s::bigint[])[1 + ((g - 1) / %(per_session)s)], (%(sessions)s::bigint[])[1 + ((g - 1) / %(per_session)s)],
       CASE WHEN g %% 50 = 0 THEN 'gift' WHEN g %% 10 = 1 THEN 'like' WHEN g %% 10 = 2 THEN 'member'
            WHEN g %% 100 = 3 THEN 'viewers' ELSE 'chat' END,
       'gen-' || g, %(base)s + g * 5, %(base)s + g * 5 + 120, 'u' || ((g * 7919) %% 200000),
       '观众' || ((g * 7919) %% 200000), NULL,
       (ARRAY['主播好漂亮', '这首歌好听', '[比心][比心]', '来了来了', '主播唱周杰伦', '谢谢大哥的礼物', '哈哈哈笑死'])[1 + g %% 7],
       CASE WHEN g %% 50 = 0 THEN '{"gift_name": "玫瑰", "count": 1, "total_value": 1, "value_unit": "diamond"}'::jsonb
            ELSE '{}'::jsonb END,
       NULL, CASE WHEN g %% 50 = 0 THEN 1 END, CASE WHEN g %% 50 = 0 THEN 1 END
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
"""


def _secondary_structures(cursor) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(constraints, indexes) of the message table besides its primary key, as (name, definition)."""
    cursor.execute("""SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
                      WHERE conrelid = 'livefeed_livemessage'::regclass AND contype IN ('u', 'f')""")
    constraints = cursor.fetchall()
    cursor.execute("""SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'livefeed_livemessage'
                      AND indexname NOT IN (SELECT conname FROM pg_constraint
                                            WHERE conrelid = 'livefeed_livemessage'::regclass)""")
    return constraints, cursor.fetchall()


def generate(*, rows: int, sessions: list[int], session_channels: list[int], budget_s: float,
             chunk: int = 1_000_000) -> dict:
    """ROWS messages on the server, as a table that grew for months ends up: the secondary
    indexes, unique keys and foreign keys are dropped first and built again at the end (a
    bulk load; each index is then a sorted build, several times faster than 10 million
    random insertions), then ANALYZE."""
    from django.db import connection

    per_session = -(-rows // len(sessions))
    started = time.perf_counter()
    done = 0
    with connection.cursor() as cursor:
        constraints, indexes = _secondary_structures(cursor)
        for name, _ in constraints:
            cursor.execute(f'ALTER TABLE livefeed_livemessage DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
    while done < rows:
        if time.perf_counter() - started > budget_s:
            break
        hi = min(done + chunk, rows)
        t0 = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(GENERATE_SQL, {"base": 1_700_000_000_000, "lo": done + 1, "hi": hi, "sessions": sessions,
                                          "channels": session_channels, "per_session": per_session})
        done = hi
        print(f"  generated {done:,} rows ({time.perf_counter() - t0:.0f} s for the last {chunk:,})", flush=True)
    loaded = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '256MB'")
        for _, definition in indexes:
            cursor.execute(definition)
        for name, definition in constraints:
            cursor.execute(f'ALTER TABLE livefeed_livemessage ADD CONSTRAINT "{name}" {definition}')
        cursor.execute("ANALYZE livefeed_livemessage")
        cursor.execute("SELECT pg_total_relation_size('livefeed_livemessage'), pg_relation_size('livefeed_livemessage')")
        total_bytes, heap_bytes = cursor.fetchone()
    return {"rows": done, "seconds": round(time.perf_counter() - started),
            "index_build_seconds": round(time.perf_counter() - loaded),
            "table_mb": round(heap_bytes / 2**20), "with_indexes_mb": round(total_bytes / 2**20)}


def page_queries(*, sessions: list[int], channels: list[int], repeat: int, rng: random.Random) -> dict:
    from livefeed import selectors
    from livefeed.models import LiveMessage, LiveSession

    def timed(fn) -> dict:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
        return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(percentile(times, 99), 2),
                "max_ms": round(max(times), 2)}

    session_rows = {s.pk: s for s in LiveSession.objects.filter(pk__in=sessions)}

    def newest():
        rows = selectors.session_search(session=session_rows[rng.choice(sessions)], limit=50)
        assert len(rows) == 50
        [row.as_json() for row in rows]

    def newest_gifts():
        rows = selectors.session_search(session=session_rows[rng.choice(sessions)], type="gift", limit=50)
        assert rows
        [row.as_json() for row in rows]

    def users_messages():
        user = f"u{(rng.randrange(1, 10_000_000) * 7919) % 200000}"
        [row.as_json() for row in
         LiveMessage.objects.filter(channel_id=rng.choice(channels), user_id=user).order_by("-id")[:50]]

    def users_messages_in_session():
        session = session_rows[rng.choice(sessions)]
        first = LiveMessage.objects.filter(session=session).order_by("id").values_list("user_id", flat=True).first()
        [row.as_json() for row in selectors.session_search(session=session, user=first, limit=50)]

    def text_search():
        rows = selectors.session_search(session=session_rows[rng.choice(sessions)], query="周杰伦", limit=50)
        [row.as_json() for row in rows]

    def api_page():
        session = session_rows[rng.choice(sessions)]
        first = LiveMessage.objects.filter(session=session).order_by("id").values_list("id", flat=True).first()
        page, _ = selectors.session_messages(session=session, after_id=first + rng.randrange(40_000), limit=1000)
        [row.as_json() for row in page]

    return {"newest_50_of_a_session": timed(newest), "newest_50_gifts_of_a_session": timed(newest_gifts),
            "a_users_newest_50_in_a_channel": timed(users_messages),
            "a_users_newest_50_in_a_session": timed(users_messages_in_session),
            "search_text_newest_50": timed(text_search),
            "api_page_1000_after_id": timed(api_page)}


def run(args) -> dict:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from livefeed.models import LiveChannel, LiveSession

    rng = random.Random(5)
    owner = get_user_model().objects.create(username="bench")
    channels = [LiveChannel.objects.create(platform="douyin", ref=str(100000 + i), added_by=owner).pk
                for i in range(CHANNELS)]
    sessions = []
    for i in range(SESSIONS):
        session = LiveSession.objects.create(channel_id=channels[i % CHANNELS], started_at=timezone.now(),
                                             ended_at=timezone.now())
        sessions.append(session.pk)
    bench_channel = LiveChannel.objects.create(platform="douyin", ref="999999", added_by=owner)
    results: dict = {"rows_target": args.rows}
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU, not the wait for PostgreSQL

    def rates(label: str) -> None:
        for batch in (100, 500):
            session = LiveSession.objects.create(channel=bench_channel, started_at=timezone.now())
            rate = insert_rate(channel_id=bench_channel.pk, session_id=session.pk, batch=batch, total=args.messages,
                               rng=rng, prefix=f"{label}{batch}-", users=args.users, profiler=profiler)
            messages = rate.pop("messages_list")
            rate["floor"] = floors(channel_id=bench_channel.pk, session_id=session.pk, messages=messages, batch=batch,
                                   prefix=f"{label}{batch}-")
            LiveSession.objects.filter(pk=session.pk).update(ended_at=timezone.now())
            results[f"{label}_batch_{batch}"] = rate
            print(f"  {label} batch {batch}: {rate}", flush=True)

    print("insert rate, empty table", flush=True)
    rates("empty")
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"  profile of the messages_store calls in {args.profile}", flush=True)
    if not args.rows:
        return results
    print(f"generating {args.rows:,} rows", flush=True)
    results["generated"] = generate(rows=args.rows, sessions=sessions,
                                    session_channels=[channels[i % CHANNELS] for i in range(SESSIONS)],
                                    budget_s=args.budget_s)
    print(f"  {results['generated']}", flush=True)
    print("page queries", flush=True)
    results["queries"] = page_queries(sessions=sessions, channels=channels, repeat=args.repeat, rng=rng)
    print(f"  {results['queries']}", flush=True)
    print("insert rate, full table", flush=True)
    rates("full")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000,
                        help="messages to generate before the queries (0: the insert rates on an empty table only)")
    parser.add_argument("--users", type=int, default=50_000, help="distinct users the messages come from")
    parser.add_argument("--messages", type=int, default=50_000, help="messages per insert-rate run")
    parser.add_argument("--repeat", type=int, default=300, help="runs of each page query")
    parser.add_argument("--budget-s", type=float, default=900, help="stop generating after this long")
    parser.add_argument("--redis-db", type=int, default=5)
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--profile", metavar="PATH",
                        help="cProfile the messages_store calls of the empty-table runs into PATH (pstats format)")
    parser.add_argument("--db-name", default="livefeed_storage",
                        help="scratch database chorus_bench_<this> (created and dropped)")
    args = parser.parse_args()
    env = BenchEnv(args.db_name, redis_db=args.redis_db)
    with env.created():
        django_setup()
        results = run(args)
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
