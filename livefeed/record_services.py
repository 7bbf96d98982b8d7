"""Every write of the recorder (livefeed/recorder.py): its state, recordings and segments,
and the checks a channel's recording settings must pass (file name template, output folder,
free space).

- State: `recorder_transition` stores the channel's `record_state` (and the open recording's
  state) with its reason and pushes `live.recording` after commit (docs/protocol.md, "Live
  recording"). `error` keeps the reason in `record_error` and sets when to try again.
- A recording per broadcast: `recording_open` returns the channel's open recording if there is
  one (a recorder taking a channel over continues it), `recording_close` ends it once and then
  calls livefeed.recordings.recording_finish after commit.
- Segments: `segment_open` numbers them (`index`, unique per recording) and claims the file
  path (unique: two recorders never write one file); `segment_close` stores what ffprobe
  measured and adds it to the recording's totals; `segment_steps` stores each post-processing
  step's result and where the file is now.
- The lease is services.lease_take(kind="record"): the same rules as the fetcher's.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import string
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from livefeed.models import LiveChannel, LiveSession, Recording, RecordingState, Segment
from livefeed.services import LiveError, live_group
from project.realtime import broadcast_on_commit

logger = logging.getLogger(__name__)

MAX_REASON_LENGTH = 500
TEMPLATE_FIELDS = {"channel", "title", "date", "index", "platform", "ref"}
UNSAFE_CHARACTERS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')
RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{n}" for n in range(1, 10)), *(f"lpt{n}" for n in range(1, 10))}
FIELD_MAX_CHARS = 80


# --- settings checks (the API refuses what fails them; the recorder checks them again) ----


def template_check(template: str) -> str:
    """The template if it makes relative paths inside the output folder; else LiveError naming
    `filename_template` (absolute, `..`, an unknown field, a format that fails)."""
    if not isinstance(template, str) or not template.strip():
        raise LiveError("invalid", "filename_template: give a file name template.", field="filename_template")
    if len(template) > 300:
        raise LiveError("invalid", "filename_template: at most 300 characters.", field="filename_template")
    if template.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", template) or template.startswith("~"):
        raise LiveError("invalid", "filename_template: must be relative to the output folder, not absolute.",
                        field="filename_template")
    if any(part in ("..", ".") for part in re.split(r"[/\\]", template)):
        raise LiveError("invalid", "filename_template: '..' and '.' are not allowed in it.", field="filename_template")
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise LiveError("invalid", f"filename_template: {exc}.", field="filename_template") from None
    unknown = sorted({name for name in fields if name not in TEMPLATE_FIELDS})
    if unknown:
        raise LiveError("invalid", f"filename_template: unknown field {{{unknown[0]}}} (use "
                        f"{', '.join('{' + name + '}' for name in sorted(TEMPLATE_FIELDS))}).", field="filename_template")
    try:
        render_name(template, channel="c", title="t", platform="p", ref="r", index=1, at=timezone.now())
    except (ValueError, KeyError, IndexError) as exc:
        raise LiveError("invalid", f"filename_template: {exc}.", field="filename_template") from None
    return template


def safe_part(value: str) -> str:
    """A path component any file system takes: no separators, control or reserved characters,
    no leading/trailing dots or spaces, not a reserved DOS name, at most FIELD_MAX_CHARS."""
    value = UNSAFE_CHARACTERS.sub("_", str(value)).strip(" .")[:FIELD_MAX_CHARS].strip(" .")
    if not value or value.lower().split(".")[0] in RESERVED_NAMES:
        value = f"_{value}"
    return value


def render_name(template: str, *, channel: str, title: str, platform: str, ref: str, index: int,
                at: datetime) -> str:
    """The template filled in, every field made safe; a relative path ("/" between folders)."""
    values = {"channel": safe_part(channel), "title": safe_part(title or "untitled"), "platform": safe_part(platform),
              "ref": safe_part(ref), "index": index, "date": timezone.localtime(at)}
    rendered = template.format(**values)
    parts = [safe_part(part) for part in re.split(r"[/\\]", rendered) if part.strip()]
    return "/".join(parts) or "recording"


def output_dir_for(channel: LiveChannel) -> Path:
    return Path(channel.output_dir) if channel.output_dir else Path(settings.LIVEFEED_RECORDINGS_DIR)


def output_dir_check(path: str) -> str:
    """The folder if the recorder can write there (made if missing); else LiveError naming
    `output_dir`."""
    if not isinstance(path, str):
        raise LiveError("invalid", "output_dir: a folder path.", field="output_dir")
    if not path:
        return ""
    folder = Path(path)
    if not folder.is_absolute():
        raise LiveError("invalid", "output_dir: give an absolute folder path.", field="output_dir")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".chorus-write-test-"):
            pass
    except OSError as exc:
        raise LiveError("invalid", f"output_dir: cannot write in {path}: {exc.strerror or exc}.",
                        field="output_dir") from None
    return path


def free_space_problem(folder: Path) -> str:
    """Why recording into `folder` must not go on (too little free space), or ""."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free_mb = shutil.disk_usage(probe).free // (1024 * 1024)
    except OSError as exc:
        return f"Cannot read the free space under {folder}: {exc.strerror or exc}."
    if free_mb < settings.LIVEFEED_MIN_FREE_MB:
        return (f"Only {free_mb} MB free under {folder}; recording needs LIVEFEED_MIN_FREE_MB = "
                f"{settings.LIVEFEED_MIN_FREE_MB} MB.")
    return ""


# --- state ------------------------------------------------------------------------------


def recording_event(channel_id: int, *, reason: str = "") -> dict:
    """live.recording: the channel's recorder state and its open recording's current segment."""
    channel = LiveChannel.objects.only("record", "record_state", "record_error", "record_state_changed_at",
                                       "record_next_try_at").get(pk=channel_id)
    recording = Recording.objects.filter(channel_id=channel_id).order_by("-started_at", "-id").first()
    segment = recording.segments.order_by("-index").first() if recording else None
    return {
        "type": "live.recording", "channel_id": channel_id, "record": channel.record, "state": channel.record_state,
        "error": channel.record_error or None, "reason": reason or None,
        "state_changed_at": channel.record_state_changed_at.isoformat() if channel.record_state_changed_at else None,
        "next_try_at": channel.record_next_try_at.isoformat() if channel.record_next_try_at else None,
        "recording": None if recording is None else {
            "id": recording.pk, "state": recording.state, "started_at": recording.started_at.isoformat(),
            "ended_at": recording.ended_at.isoformat() if recording.ended_at else None,
            "size_bytes": recording.size_bytes, "duration_s": recording.duration_s,
            "segments_total": recording.segments_total, "last_error": recording.last_error or None},
        "segment": None if segment is None else {
            "id": segment.pk, "index": segment.index, "state": segment.state, "size_bytes": segment.size_bytes,
            "duration_s": segment.duration_s, "started_at_ms": segment.started_at_ms},
    }


def _broadcast(channel_id: int, *, reason: str = "") -> None:
    broadcast_on_commit(live_group(channel_id), lambda: recording_event(channel_id, reason=reason))


def recorder_transition(*, channel_id: int, to: str, reason: str = "", retry_in_s: float | None = None) -> bool:
    """Move the channel's recorder (and its open recording) to `to`; True if it moved. `error`
    stores `reason` as record_error and, with `retry_in_s`, when to try again."""
    if to not in RecordingState.values:
        raise LiveError("invalid", f"to: one of {', '.join(RecordingState.values)}.", field="to")
    reason = (reason or "")[:MAX_REASON_LENGTH]
    changes: dict = {"record_state": to, "record_state_changed_at": timezone.now()}
    if to == RecordingState.ERROR:
        changes.update(record_error=reason, record_failures=F("record_failures") + 1,
                       record_next_try_at=timezone.now() + timedelta(seconds=retry_in_s or 0))
    elif to == RecordingState.RECORDING:
        changes.update(record_error="", record_failures=0, record_next_try_at=None)
    with transaction.atomic():
        moved = LiveChannel.objects.filter(pk=channel_id).exclude(record_state=to).update(**changes)
        open_changes = {"state": to, **({"last_error": reason} if to == RecordingState.ERROR else {})}
        Recording.objects.filter(channel_id=channel_id, ended_at__isnull=True).update(**open_changes)
        if moved:
            _broadcast(channel_id, reason=reason)
    if moved:
        logger.info("live recorder %s", to, extra={"channel_id": channel_id, "reason": reason})
    return bool(moved)


def recorder_failures(*, channel_id: int) -> int:
    return LiveChannel.objects.filter(pk=channel_id).values_list("record_failures", flat=True).first() or 0


def recorder_wait(*, channel_id: int, until) -> None:
    """The room is offline: look again at `until` (the scan skips the channel before that)."""
    LiveChannel.objects.filter(pk=channel_id).update(record_next_try_at=until)


# --- recordings and segments ----------------------------------------------------------------


def recording_open(*, channel_id: int, title: str = "", stream_url: str = "") -> tuple[Recording, bool]:
    """(recording, created): the channel's open recording, or a new one tied to the channel's
    open live session (if the fetcher follows it)."""
    with transaction.atomic():
        channel = LiveChannel.objects.select_for_update().filter(pk=channel_id).first()
        if channel is None:
            raise LiveError("not_found", f"No live channel {channel_id}.")
        recording = Recording.objects.filter(channel_id=channel_id, ended_at__isnull=True).first()
        session_id = LiveSession.objects.filter(channel_id=channel_id, ended_at__isnull=True).values_list(
            "pk", flat=True).first()
        if recording is not None:
            changes = {"stream_url": stream_url[:2000]} if stream_url else {}
            if recording.session_id is None and session_id:
                changes["session_id"] = session_id
            if changes:
                Recording.objects.filter(pk=recording.pk).update(**changes)
                recording.refresh_from_db()
            return recording, False
        recording = Recording.objects.create(channel_id=channel_id, session_id=session_id, started_at=timezone.now(),
                                             title=(title or channel.title)[:300], stream_url=stream_url[:2000],
                                             state=RecordingState.CHECKING)
    logger.info("live recording opened", extra={"channel_id": channel_id, "recording_id": recording.pk})
    _broadcast(channel_id, reason="recording started")
    return recording, True


def recording_close(*, recording_id: int, error: str = "") -> bool:
    """End the recording (idempotent: False if it had ended); its state becomes idle, or error
    with `error`. recording_finish runs after commit."""
    from livefeed import recordings

    with transaction.atomic():
        recording = Recording.objects.select_for_update().filter(pk=recording_id).first()
        if recording is None or recording.ended_at is not None:
            return False
        recording.ended_at = timezone.now()
        recording.state = RecordingState.ERROR if error else RecordingState.IDLE
        recording.last_error = error[:MAX_REASON_LENGTH]
        recording.save(update_fields=["ended_at", "state", "last_error", "updated_at"])
        _broadcast(recording.channel_id, reason="recording ended")
        transaction.on_commit(lambda: recordings.recording_finish(recording_id=recording_id), robust=True)
    logger.info("live recording closed", extra={"recording_id": recording_id, "error": error})
    return True


def segment_path(*, channel: LiveChannel, recording: Recording, index: int, at: datetime, extension: str) -> Path:
    """Where segment `index` goes: the template under the output folder, with the index added when
    the template has none, and a number added if the file exists already."""
    template = template_check(channel.filename_template)
    name = render_name(template, channel=channel.streamer_name or channel.title or channel.ref,
                       title=recording.title, platform=channel.platform, ref=channel.ref, index=index, at=at)
    if "{index" not in template:
        name = f"{name}_{index:03d}"
    folder = output_dir_for(channel)
    path = folder / f"{name}.{extension}"
    bump = 1
    while path.exists() or Segment.objects.filter(file_path=str(path)).exists():
        bump += 1
        path = folder / f"{name}-{bump}.{extension}"
    return path


def _offset_s(recording: Recording, started_at_ms: int) -> float:
    """Where a segment starting at started_at_ms is in the broadcast: from the live session's
    start when the fetcher follows the room, else from the recording's."""
    origin = recording.session.started_at if recording.session else recording.started_at
    return max(0.0, (started_at_ms - origin.timestamp() * 1000) / 1000)


def segment_open(*, recording_id: int, path: str, started_at_ms: int, log_path: str = "") -> Segment:
    """The recording's next segment, being written at `path`."""
    with transaction.atomic():
        recording = Recording.objects.select_for_update(of=("self",)).select_related("session").get(pk=recording_id)
        index = (recording.segments.order_by("-index").values_list("index", flat=True).first() or 0) + 1
        segment = Segment.objects.create(recording=recording, index=index, file_path=path, original_path=path,
                                         started_at_ms=started_at_ms, log_path=log_path,
                                         offset_s=_offset_s(recording, started_at_ms))
        _broadcast(recording.channel_id, reason=f"segment {index} started")
    return segment


def segment_retime(*, segment_id: int, started_at_ms: int) -> None:
    """The segment's start as measured once it closed (the estimate only gets better as tags
    come: a CDN's first burst is older than it looks), and so its offset."""
    segment = Segment.objects.select_related("recording__session").get(pk=segment_id)
    Segment.objects.filter(pk=segment_id).update(started_at_ms=started_at_ms,
                                                 offset_s=_offset_s(segment.recording, started_at_ms))


def next_segment_index(*, recording_id: int) -> int:
    return (Segment.objects.filter(recording_id=recording_id).order_by("-index").values_list(
        "index", flat=True).first() or 0) + 1


def segment_close(*, segment_id: int, ended_at_ms: int | None, duration_s: float, size_bytes: int,
                  probe: dict | None = None, discarded: bool = False, error: str = "") -> Segment:
    """The segment's file is complete: what ffprobe measured, and state processing (or
    discarded: too short, its file removed). The recording's totals grow by it."""
    probe = probe or {}
    with transaction.atomic():
        segment = Segment.objects.select_for_update().get(pk=segment_id)
        if segment.state != Segment.State.RECORDING:
            return segment
        segment.ended_at_ms = ended_at_ms
        segment.duration_s = round(float(duration_s), 3)
        segment.size_bytes = int(size_bytes)
        for name in ("video_codec", "audio_codec", "width", "height"):
            if probe.get(name) is not None:
                setattr(segment, name, probe[name])
        segment.state = Segment.State.DISCARDED if discarded else Segment.State.PROCESSING
        segment.error = error[:MAX_REASON_LENGTH]
        segment.save()
        if not discarded:
            Recording.objects.filter(pk=segment.recording_id).update(
                size_bytes=F("size_bytes") + segment.size_bytes, duration_s=F("duration_s") + segment.duration_s,
                segments_total=F("segments_total") + 1)
        channel_id = Recording.objects.values_list("channel_id", flat=True).get(pk=segment.recording_id)
        _broadcast(channel_id, reason=f"segment {segment.index} {'discarded' if discarded else 'closed'}")
    return segment


def segment_steps(*, segment_id: int, steps: list[dict], file_path: str, failed: bool, checksum: str = "",
                  size_bytes: int | None = None, done: bool = False) -> None:
    """Post-processing so far: each step's result, where the file is now; with `done`, the
    segment's final state (done, or failed with the file kept at file_path)."""
    from livefeed import recordings

    changes: dict = {"steps": steps, "file_path": file_path}
    if checksum:
        changes["checksum"] = checksum
    if size_bytes is not None:
        changes["size_bytes"] = size_bytes
    if done:
        changes["state"] = Segment.State.FAILED if failed else Segment.State.DONE
        failures = [step for step in steps if not step.get("ok")]
        changes["error"] = (f"{failures[0]['step']}: {failures[0].get('error', '')}" if failures else "")[:500]
    with transaction.atomic():
        Segment.objects.filter(pk=segment_id).update(**changes)
        if done:
            channel_id = Segment.objects.values_list("recording__channel_id", flat=True).get(pk=segment_id)
            _broadcast(channel_id, reason="segment processed")
            transaction.on_commit(lambda: recordings.recording_segment_ready(segment_id=segment_id), robust=True)


def segments_left_recording(*, channel_id: int) -> list[Segment]:
    """Segments a recorder that is gone was still writing (called by the lease's new holder)."""
    return list(Segment.objects.filter(recording__channel_id=channel_id, state=Segment.State.RECORDING)
                .order_by("recording_id", "index"))


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
