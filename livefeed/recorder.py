"""The recorder: records the video of live channels with `record` on, in segments, in the same
kind of host as the fetcher (livefeed/fetcher.py) inside a `livefeed` Celery worker.

A `RecorderHost` scans every `scan_s` for channels with `record` on whose recorder lease is
free or expired (services.lease_take(kind="record"), the database's clock), takes each, and
runs one `ChannelRecorder` per channel; a heartbeat renews the leases, a lease it fails to
renew was taken over and that recorder stops at once. A worker killed with -9 takes its
ffmpegs with it (they read from it and write to it: a closed pipe ends them); the next holder
finds the segment left `recording`, fixes it up (a codec copy that drops a torn last tag),
finishes it, and records on in a new segment of the same recording: within a lease
(LIVEFEED_LEASE_S) plus a scan plus ffmpeg's start, well inside 30 s.

A channel's recorder, each state stored and pushed (record_services.recorder_transition):
    checking   free space (LIVEFEED_MIN_FREE_MB), the room (live? its pull URLs)
    recording  one ffmpeg copies the codecs of the FLV pull URL to its stdout (-c copy -f flv;
               a drop or a stall of LIVEFEED_RECORD_STALL_S (-rw_timeout) ends it)
    processing a segment closes: it is cut at the next keyframe once it is `segment_s` long or
               `segment_mb` big, whichever first, the next begins with that very keyframe (no
               gap, no overlap); then back to recording while the closed one is post-processed
               (livefeed/postprocess.py) in a thread
    idle       the room is offline (looked at again after check_interval_s) or record is off
    error      with the reason; tried again with backoff (no FLV URL, the platform refused,
               ffmpeg missing or failing, too little disk space)
ffmpeg ending (the stream ended, dropped for good, the URL expired) closes the segment; the
recorder looks at the room again at once: still live means a new pull URL and a new segment
(the stretch between is under 2 s: ffmpeg's start and the next keyframe), offline ends the
recording.

Segments are cut here rather than by ffmpeg's segment muxer because that muxer splits by time
only; reading the FLV tags ffmpeg writes costs little (a few hundred tags a second) and gives
exact cuts by size too. Each segment's wall-clock start is measured against the stream's own
timestamps: a tag with timestamp t that arrived at wall time a says the stream's time 0 was at
most a - t; the smallest such value over the tags received is the estimate (it approaches the
true time from above as soon as one tag comes without delay), and a segment starting at t0
started at that estimate + t0. Messages of the live feed carry the platform's timestamps, so
a message at ts_ms is (ts_ms - started_at_ms) / 1000 s into the segment.

ffmpeg's progress (time, size, bitrate, speed) and its log lines go to the channel's watchers
as `live.record_log` about once a second, the last RECENT_LOG_LINES are kept in Redis for a page
that opens later, and every line goes to the segment's own log file beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from livefeed import flv, postprocess, record_services, selectors, services
from livefeed.clients import GiveUp, NotAllowed, RetryLater, registry
from livefeed.fetcher import _in_db_thread, backoff_s, owner_name
from livefeed.models import RecordingState, Segment
from project import metrics, realtime

logger = logging.getLogger(__name__)

State = RecordingState
RECENT_LOG_LINES = 200
TURNED_OFF = "Recording turned off."
PUSH_EVERY_S = 1.0
DISK_CHECK_EVERY_S = 5.0
QUALITY_ORDER = ("ORIGIN", "origin", "FULL_HD1", "HD1", "SD1", "SD2", "LD")
LOG_LEVEL = re.compile(r"^\[(?:[^\]]+ @ [^\]]+\] \[)?(trace|debug|verbose|info|warning|error|fatal|panic)\]")


def log_key(channel_id: int) -> str:
    return f"{realtime.channel_prefix()}live.{channel_id}.record_log"


def record_log_recent(*, channel_id: int) -> list[dict]:
    """The last RECENT_LOG_LINES lines of the channel's ffmpeg log, oldest first (for a page opening)."""
    return [json.loads(line) for line in realtime.sync_redis().lrange(log_key(channel_id), 0, -1)]


def pick_stream_url(stream_urls: dict[str, str], quality: str = "") -> tuple[str, str] | None:
    """(key, URL) of the FLV pull URL to record: the quality asked for if the platform has it,
    else the best. HLS is a playlist of its own files: not what this recorder copies."""
    flvs = {key: url for key, url in stream_urls.items() if "flv" in key.lower() and url}
    if not flvs:
        return None
    if quality:
        for key, url in flvs.items():
            if key.split(":")[-1] == quality or quality in key:
                return key, url
    for name in QUALITY_ORDER:
        for key, url in flvs.items():
            if key.split(":")[-1] == name:
                return key, url
    key = next(iter(flvs))
    return key, flvs[key]


def ffmpeg_args(url: str, *, stall_s: float) -> list[str]:
    """One ffmpeg: the pull URL in, its codecs copied out to stdout as FLV, a tag at a time,
    progress and log lines on stderr. ffmpeg reconnects while it opens the URL (`reconnect`),
    not in the middle of the stream: a live FLV cannot be resumed at a byte offset (the CDN
    answers a new FLV with a header of its own, which ffmpeg's demuxer does not get past), so a
    stream that drops or stalls (-rw_timeout) ends this ffmpeg and the recorder starts the
    next one on a fresh pull URL at once. `analyzeduration` 1 s: it starts writing within
    a second instead of probing 5 s."""
    import ffmpeg  # here, not at the top: a worker that records nothing never loads it (docs/benchmarks.md)

    input_options: dict[str, Any] = {"rw_timeout": int(stall_s * 1_000_000), "fflags": "+discardcorrupt",
                                     "analyzeduration": 1_000_000}
    if url.startswith(("http://", "https://")):
        input_options.update(reconnect=1, reconnect_streamed=0, reconnect_on_network_error=0, reconnect_delay_max=2,
                             user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/124.0 Safari/537.36")
    stream = ffmpeg.input(url, **input_options)
    out = stream.output("pipe:1", c="copy", f="flv", flush_packets=1, flvflags="no_duration_filesize")
    return out.global_args("-hide_banner", "-nostdin", "-loglevel", "level+info", "-stats_period", "1",
                           "-progress", "pipe:2").compile(cmd=settings.FFMPEG_BINARY)


@dataclass
class OpenSegment:
    segment_id: int
    path: str
    handle: Any
    log: Any
    first_ts_ms: int
    last_ts_ms: int
    size_bytes: int = 0


@dataclass
class Capture:
    """One ffmpeg run: the FLV it writes cut into segment files."""

    recorder: ChannelRecorder
    recording_id: int
    segment_bytes: int
    segment_ms: int
    reader: flv.Reader = field(default_factory=flv.Reader)
    headers: flv.Headers = field(default_factory=flv.Headers)
    current: OpenSegment | None = None
    epoch_ms: int | None = None
    bytes_total: int = 0
    lines: deque = field(default_factory=lambda: deque(maxlen=50))
    pending_lines: list = field(default_factory=list)
    progress: dict = field(default_factory=dict)
    early_log: list = field(default_factory=list)
    head_log: list = field(default_factory=list)  # what ffmpeg said before the first segment: its input
    first_byte_at: float | None = None

    async def feed(self, chunk: bytes) -> None:
        arrived = time.time_ns() // 1_000_000
        for tag in self.reader.feed(chunk):
            if self.reader.header is not None:
                self.headers.header = self.reader.header
            if self.headers.see(tag):
                if self.current is not None and tag.type != flv.SCRIPT:
                    self._write(tag)  # the codec changed mid-stream: the file needs it too
                continue
            if tag.type == flv.SCRIPT:
                continue
            estimate = arrived - tag.ts_ms
            self.epoch_ms = estimate if self.epoch_ms is None else min(self.epoch_ms, estimate)
            if self.current is None:
                if self.headers.video is not None and not tag.keyframe:
                    continue  # a file starts with a keyframe
                await self._open(tag)
            elif tag.keyframe and (tag.ts_ms - self.current.first_ts_ms >= self.segment_ms
                                   or self.current.size_bytes >= self.segment_bytes):
                await self.recorder.close_segment(self)
                await self._open(tag)
            self._write(tag)

    async def _open(self, tag: flv.Tag) -> None:
        started_at_ms = (self.epoch_ms or 0) + tag.ts_ms
        segment = await self.recorder.open_segment(self, started_at_ms=started_at_ms)
        handle, log = _open_files(segment.file_path, segment.log_path)
        if self.early_log:  # every segment's log starts with ffmpeg's description of its input
            self.head_log, self.early_log = self.early_log, []
        for line in self.head_log:
            log.write(line + "\n")
        self.current = OpenSegment(segment_id=segment.pk, path=segment.file_path, handle=handle, log=log,
                                   first_ts_ms=tag.ts_ms, last_ts_ms=tag.ts_ms)
        prologue = self.headers.prologue(0)
        handle.write(prologue)
        self.current.size_bytes += len(prologue)

    def _write(self, tag: flv.Tag) -> None:
        current = self.current
        data = tag.encode(max(0, tag.ts_ms - current.first_ts_ms))
        current.handle.write(data)
        current.size_bytes += len(data)
        current.last_ts_ms = max(current.last_ts_ms, tag.ts_ms)
        self.bytes_total += len(data)
        if self.first_byte_at is None:
            current.handle.flush()
            self.first_byte_at = time.monotonic()

    def close_file(self) -> OpenSegment | None:
        current, self.current = self.current, None
        if current is not None:
            current.handle.close()
            current.log.close()
        return current

    def log_line(self, line: str) -> None:
        stamp = timezone.now().strftime("%H:%M:%S")
        text = f"{stamp} {line}"
        if self.current is not None:
            self.current.log.write(text + "\n")
            self.current.log.flush()
        elif len(self.early_log) < 500:
            self.early_log.append(text)
        found = LOG_LEVEL.match(line)
        level = found.group(1) if found else "info"
        entry = {"at": stamp, "level": level, "text": line[:500]}
        self.lines.append(entry)
        self.pending_lines.append(entry)


def _open_files(path: str, log_path: str):
    """The segment's file and its log, opened here and closed by Capture.close_file (local
    files: opening them does not hold the loop up)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return open(path, "wb"), open(log_path, "a", encoding="utf-8")


class ChannelRecorder:
    """One channel recorded by this process."""

    def __init__(self, host: RecorderHost, channel_id: int, lease_token: str):
        self.host = host
        self.channel_id = channel_id
        self.lease_token = lease_token
        self.task: asyncio.Task | None = None
        self.stop_requested = asyncio.Event()
        self.lost_lease = False
        self.process: asyncio.subprocess.Process | None = None
        self.finishing: set[asyncio.Task] = set()
        self.platform = ""
        self.stop_reason = ""

    def request_stop(self) -> None:
        self.stop_requested.set()

    async def run(self) -> None:
        db = self.host.db
        try:
            await self._record()
        except asyncio.CancelledError:
            await self._kill_ffmpeg()
            raise
        except Exception:
            logger.exception("live recorder crashed", extra={"channel_id": self.channel_id})
            with contextlib.suppress(Exception):
                await db(record_services.recorder_transition)(
                    channel_id=self.channel_id, to=State.ERROR, retry_in_s=30,
                    reason="An internal error stopped the recorder; see the logs.")
        finally:
            await self._kill_ffmpeg()
            if self.finishing:
                await asyncio.wait(self.finishing, timeout=60)
            if not self.lost_lease:
                with contextlib.suppress(Exception):
                    await db(services.lease_release)(channel_id=self.channel_id, token=self.lease_token, kind="record")

    async def _record(self) -> None:
        db = self.host.db
        await self._finish_left_over()
        channel = await db(selectors.channel_get)(channel_id=self.channel_id)
        self.platform = channel.platform
        client = registry.get(channel.platform)()
        failures = 0
        try:
            while not self.stop_requested.is_set():
                channel = await db(selectors.channel_get)(channel_id=self.channel_id)
                if not channel.record:
                    break
                outcome = await self._one_attempt(client, channel)
                if outcome == "offline":
                    failures = 0
                    await self._close_recording()
                    await db(record_services.recorder_transition)(channel_id=self.channel_id, to=State.IDLE,
                                                                  reason="The room is offline.")
                    wait_s = max(1, channel.check_interval_s)
                    await db(record_services.recorder_wait)(channel_id=self.channel_id,
                                                            until=timezone.now() + timedelta(seconds=wait_s))
                    await self._sleep(wait_s)
                elif outcome == "recorded":
                    failures = 0  # it ran: look at the room again at once (a new URL if still live)
                elif outcome != "stopped":
                    failures += 1
                    wait_s = backoff_s(failures, max_s=settings.LIVEFEED_RECONNECT_MAX_S)
                    await db(record_services.recorder_transition)(channel_id=self.channel_id, to=State.ERROR,
                                                                  reason=outcome, retry_in_s=wait_s)
                    await self._sleep(wait_s)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()
        if not self.lost_lease and not self.host.shutting_down:
            # record was turned off (or the channel removed): end cleanly
            await self._close_recording()
            with contextlib.suppress(Exception):
                await db(record_services.recorder_transition)(channel_id=self.channel_id, to=State.IDLE,
                                                              reason=TURNED_OFF)

    async def _one_attempt(self, client, channel) -> str:
        """Check, then record until ffmpeg ends: "offline", "recorded", "stopped" or the error."""
        db = self.host.db
        await db(record_services.recorder_transition)(channel_id=self.channel_id, to=State.CHECKING,
                                                      reason="looking at the room")
        folder = record_services.output_dir_for(channel)
        problem = record_services.free_space_problem(folder)
        if problem:
            return problem
        try:
            record_services.template_check(channel.filename_template)
            folder.mkdir(parents=True, exist_ok=True)
        except services.LiveError as exc:
            return exc.message
        except OSError as exc:
            return f"Cannot write in {folder}: {exc.strerror or exc}."
        try:
            info = await client.room_info(channel.ref)
        except (RetryLater, GiveUp, NotAllowed) as exc:
            return f"The platform: {str(exc)[:400]}"
        except (TimeoutError, OSError) as exc:
            return f"The platform: {type(exc).__name__}: {exc}"
        if not info.live:
            return "offline"
        picked = pick_stream_url(info.stream_urls, channel.quality)
        if picked is None:
            return "The platform lists no FLV pull URL for this room."
        recording, _ = await db(record_services.recording_open)(channel_id=self.channel_id, title=info.title,
                                                                stream_url=picked[1])
        return await self._capture(channel, recording.pk, picked[1])

    async def _capture(self, channel, recording_id: int, url: str) -> str:
        try:
            args = ffmpeg_args(url, stall_s=settings.LIVEFEED_RECORD_STALL_S)
            self.process = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, limit=1024 * 1024)
        except (OSError, ValueError) as exc:
            return f"ffmpeg could not start ({settings.FFMPEG_BINARY}): {exc}"
        capture = Capture(recorder=self, recording_id=recording_id, segment_ms=channel.segment_s * 1000,
                          segment_bytes=channel.segment_mb * 1024 * 1024)
        self.capture = capture
        started = time.monotonic()  # `recording` once the first segment opens: a URL that fails stays `checking`
        log_task = asyncio.ensure_future(self._read_log(capture))
        watch_task = asyncio.ensure_future(self._watch(capture, folder=record_services.output_dir_for(channel)))
        outcome = "recorded"
        try:
            while chunk := await self.process.stdout.read(256 * 1024):
                await capture.feed(chunk)
                metrics.live_record_bytes.labels(self.platform).inc(len(chunk))
        except flv.FlvError as exc:
            outcome = f"ffmpeg wrote something that is not FLV: {exc}"
        finally:
            watch_task.cancel()
            await self._kill_ffmpeg()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(log_task, 5)
            with contextlib.suppress(asyncio.CancelledError):
                await watch_task
            if not self.lost_lease:
                await self.close_segment(capture, last=True)
                await self._push_log(capture)
            else:
                capture.close_file()
        reason, self.stop_reason = self.stop_reason, ""
        if reason == TURNED_OFF:
            return "stopped"
        if reason:
            return reason
        if self.stop_requested.is_set():
            return "stopped"
        code = self.process.returncode if self.process else None
        if outcome == "recorded" and capture.bytes_total == 0:
            errors = [line["text"] for line in capture.lines if line["level"] in ("error", "fatal")]
            outcome = f"ffmpeg exited {code} after {time.monotonic() - started:.1f}s without a frame" + (
                f": {errors[-1][:300]}" if errors else "")
        return outcome

    async def _read_log(self, capture: Capture) -> None:
        block: dict[str, str] = {}
        last_push = 0.0
        async for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            key, sep, value = line.partition("=")
            if sep and re.fullmatch(r"[a-z_0-9]+", key):
                block[key] = value.strip()
                if key == "progress":
                    capture.progress = _progress(block)
                    block = {}
                    if time.monotonic() - last_push >= PUSH_EVERY_S:
                        last_push = time.monotonic()
                        await self._push_log(capture)
                continue
            capture.log_line(line)

    async def _push_log(self, capture: Capture) -> None:
        """live.record_log: progress and the new lines; the lines kept in Redis too."""
        lines, capture.pending_lines = capture.pending_lines, []
        current = capture.current
        event = {"type": "live.record_log", "channel_id": self.channel_id, "recording_id": capture.recording_id,
                 "segment_id": current.segment_id if current else None,
                 "progress": {**capture.progress,
                              "segment_size_bytes": current.size_bytes if current else None,
                              "segment_duration_s": round((current.last_ts_ms - current.first_ts_ms) / 1000, 1)
                              if current else None},
                 "lines": lines}

        def push() -> None:
            realtime.publish(services.live_group(self.channel_id), event)
            if lines:
                client = realtime.sync_redis()
                key = log_key(self.channel_id)
                pipe = client.pipeline()
                pipe.rpush(key, *[json.dumps(line, ensure_ascii=False) for line in lines])
                pipe.ltrim(key, -RECENT_LOG_LINES, -1)
                pipe.expire(key, 7 * 24 * 3600)
                pipe.execute()

        try:
            await asyncio.to_thread(push)
        except Exception:
            logger.warning("live recorder log not pushed", exc_info=True, extra={"channel_id": self.channel_id})

    async def _watch(self, capture: Capture, *, folder: Path) -> None:
        """Stop ffmpeg cleanly when record is turned off, a stop is asked, or the disk fills."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), timeout=DISK_CHECK_EVERY_S)
            if self.stop_requested.is_set():
                break
            problem = record_services.free_space_problem(folder)
            if problem:
                self.stop_reason = problem
                break
            channel = await self.host.db(selectors.channel_get)(channel_id=self.channel_id)
            if not channel.record:
                self.stop_reason = TURNED_OFF
                break
        await self._kill_ffmpeg(graceful=True)

    async def _kill_ffmpeg(self, *, graceful: bool = False) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate() if graceful else process.kill()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    # --- segments ---------------------------------------------------------------------

    async def open_segment(self, capture: Capture, *, started_at_ms: int) -> Segment:
        db = self.host.db

        def make() -> Segment:
            channel = selectors.channel_get(channel_id=self.channel_id)
            recording = channel.recordings.get(pk=capture.recording_id)
            index = record_services.next_segment_index(recording_id=recording.pk)
            path = record_services.segment_path(channel=channel, recording=recording, index=index,
                                                at=timezone.now(), extension="flv")
            return record_services.segment_open(recording_id=recording.pk, path=str(path),
                                                started_at_ms=started_at_ms, log_path=f"{path}.log")

        segment = await db(make)()
        await db(record_services.recorder_transition)(channel_id=self.channel_id, to=State.RECORDING,
                                                      reason=f"segment {segment.index}")
        return segment

    async def close_segment(self, capture: Capture, *, last: bool = False) -> None:
        closed = capture.close_file()
        if closed is None:
            return
        await self.host.db(record_services.recorder_transition)(channel_id=self.channel_id, to=State.PROCESSING,
                                                                reason="segment closed")
        started_at_ms = (capture.epoch_ms or 0) + closed.first_ts_ms if capture.epoch_ms else None
        ended_at_ms = (capture.epoch_ms + closed.last_ts_ms) if capture.epoch_ms else None
        metrics.live_record_segments.labels(self.platform).inc()
        self._finish_later(closed.segment_id, ended_at_ms=ended_at_ms, started_at_ms=started_at_ms)

    def _finish_later(self, segment_id: int, *, ended_at_ms: int | None, started_at_ms: int | None = None,
                      repair: bool = False) -> None:
        task = asyncio.ensure_future(asyncio.to_thread(
            postprocess.finish_segment, segment_id=segment_id, ended_at_ms=ended_at_ms, started_at_ms=started_at_ms,
            repair=repair))
        self.finishing.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self.finishing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("live segment not finished", exc_info=task.exception(), extra={"channel_id": self.channel_id})

    async def _finish_left_over(self) -> None:
        """Segments a recorder that died was writing (fixed up) or post-processing (resumed)."""
        for segment in await self.host.db(record_services.segments_left_recording)(channel_id=self.channel_id):
            logger.info("live segment left by another recorder", extra={"channel_id": self.channel_id,
                                                                         "segment_id": segment.pk})
            self._finish_later(segment.pk, ended_at_ms=None, repair=True)
        for segment_id in await self.host.db(_segments_left_processing)(channel_id=self.channel_id):
            self._finish_later(segment_id, ended_at_ms=None)

    async def _close_recording(self) -> None:
        db = self.host.db
        recording_id = await db(_open_recording_id)(channel_id=self.channel_id)
        if recording_id is None:
            return
        if self.finishing:
            await asyncio.wait(self.finishing, timeout=120)
        await db(record_services.recording_close)(recording_id=recording_id)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_requested.wait(), timeout=seconds)


def _segments_left_processing(*, channel_id: int) -> list[int]:
    return list(Segment.objects.filter(recording__channel_id=channel_id, state=Segment.State.PROCESSING)
                .values_list("pk", flat=True))


def _open_recording_id(*, channel_id: int) -> int | None:
    from livefeed.models import Recording

    return Recording.objects.filter(channel_id=channel_id, ended_at__isnull=True).values_list("pk", flat=True).first()


def _progress(block: dict[str, str]) -> dict:
    """ffmpeg's -progress block as numbers: time_s, size_bytes, bitrate_kbps, speed."""
    def number(value: str | None) -> float | None:
        try:
            return float(re.sub(r"[^0-9.]", "", value or "")) if value and value != "N/A" else None
        except ValueError:
            return None

    time_us = number(block.get("out_time_us") or block.get("out_time_ms"))
    return {"time_s": round(time_us / 1_000_000, 1) if time_us is not None else None,
            "size_bytes": int(number(block.get("total_size")) or 0),
            "bitrate_kbps": number(block.get("bitrate")), "speed": number(block.get("speed")),
            "dropped_frames": int(number(block.get("drop_frames")) or 0)}


def _channels_turned_off(*, held: list[int]) -> list[int]:
    """Of the channels this host records, those whose record was turned off (or that are gone)."""
    from livefeed.models import LiveChannel

    if not held:
        return []
    still = set(LiveChannel.objects.filter(pk__in=held, record=True).values_list("pk", flat=True))
    return [channel_id for channel_id in held if channel_id not in still]


def _channels_to_record(*, held: list[int]) -> list[int]:
    from django.db.models import Q
    from django.db.models.functions import Now

    from livefeed.models import LiveChannel

    return list(LiveChannel.objects.filter(record=True).exclude(pk__in=held).filter(
        Q(record_lease_expires_at__isnull=True) | Q(record_lease_expires_at__lte=Now())).filter(
        Q(record_next_try_at__isnull=True) | Q(record_next_try_at__lte=Now())).values_list("pk", flat=True)[:500])


class RecorderHost:
    """Every channel this worker process records, on one event loop."""

    def __init__(self, *, owner: str | None = None, scan_s: float | None = None, lease_s: float | None = None):
        self.owner = owner or f"{owner_name()}:recorder"
        self.scan_s = scan_s if scan_s is not None else settings.LIVEFEED_SCAN_S
        self.lease_s = lease_s if lease_s is not None else settings.LIVEFEED_LEASE_S
        self.recorders: dict[int, ChannelRecorder] = {}
        self.db = _in_db_thread
        self.shutting_down = False

    async def run(self, stop: asyncio.Event | None = None) -> None:
        stop = stop or asyncio.Event()
        heartbeat = asyncio.ensure_future(self._heartbeat())
        try:
            while not stop.is_set():
                try:
                    await self.scan()
                except Exception:
                    logger.exception("live recorder scan failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.scan_s)
        finally:
            heartbeat.cancel()
            await self.shutdown()

    async def scan(self) -> None:
        for channel_id, recorder in list(self.recorders.items()):
            if recorder.task is not None and recorder.task.done():
                self.recorders.pop(channel_id, None)
        for channel_id in await self.db(_channels_turned_off)(held=list(self.recorders)):
            self.recorders[channel_id].request_stop()  # it closes its segment and recording, then goes idle
        for channel_id in await self.db(_channels_to_record)(held=list(self.recorders)):
            token = await self.db(services.lease_take)(channel_id=channel_id, owner=self.owner, ttl_s=self.lease_s,
                                                       kind="record")
            if token:
                recorder = ChannelRecorder(self, channel_id, token)
                recorder.task = asyncio.ensure_future(recorder.run())
                recorder.task.add_done_callback(lambda _task: metrics.live_recorders.dec())
                metrics.live_recorders.inc()
                self.recorders[channel_id] = recorder
                logger.info("live channel taken for recording", extra={"channel_id": channel_id,
                                                                        "owner": self.owner})

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            for channel_id, recorder in list(self.recorders.items()):
                try:
                    kept = await self.db(services.lease_renew)(channel_id=channel_id, token=recorder.lease_token,
                                                               ttl_s=self.lease_s, kind="record")
                except Exception:
                    logger.exception("live recorder lease renewal failed", extra={"channel_id": channel_id})
                    continue
                if not kept:
                    logger.warning("live recorder lease lost", extra={"channel_id": channel_id})
                    recorder.lost_lease = True
                    if recorder.task:
                        recorder.task.cancel()
                    self.recorders.pop(channel_id, None)

    async def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop every recorder: ffmpeg stopped, the open segment closed and finished, the lease
        released (the recording stays open: the next holder records on in a new segment)."""
        self.shutting_down = True
        recorders = list(self.recorders.values())
        for recorder in recorders:
            recorder.request_stop()
        tasks = [recorder.task for recorder in recorders if recorder.task]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        self.recorders.clear()
