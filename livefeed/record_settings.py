"""A channel's recording settings as users set them (pages and API), and deleting a
recording. The recorder checks the template and folder again when it uses them
(livefeed/record_services.py holds those checks)."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from django.conf import settings
from django.db import transaction

from livefeed import postprocess, record_services
from livefeed.models import LiveChannel, RecordContainer, Recording
from livefeed.services import LiveError, can_manage
from project import inputs

logger = logging.getLogger(__name__)

MAX_SEGMENT_S = 24 * 3600
MAX_SEGMENT_MB = 1024 * 1024
SETTINGS = ("record", "segment_s", "segment_mb", "quality", "container", "output_dir", "filename_template",
            "postprocess")


# --- settings -----------------------------------------------------------------------------------


def _whole(value, *, field: str, minimum: int, maximum: int) -> int:
    try:
        return inputs.whole_number(value, field=field, minimum=minimum, maximum=maximum)
    except inputs.InputError as exc:
        raise LiveError("invalid", f"{field}: {exc.message.removeprefix(field).strip()}", field=field) from None


def _text(value, *, field: str, limit: int) -> str:
    if not isinstance(value, str):
        raise LiveError("invalid", f"{field}: a string.", field=field)
    if len(value) > limit:
        raise LiveError("invalid", f"{field}: at most {limit} characters.", field=field)
    if any(not ch.isprintable() for ch in value):
        raise LiveError("invalid", f"{field}: control characters are not allowed.", field=field)
    return value.strip()


def _inside_recordings_dir(path: str) -> bool:
    root = Path(settings.LIVEFEED_RECORDINGS_DIR).resolve()
    with contextlib.suppress(OSError, ValueError):
        target = Path(path).resolve()
        return target == root or root in target.parents
    return False


def _postprocess(steps, *, actor) -> list[dict]:
    """The post-processing list, checked (postprocess.steps_check, and each move/copy folder
    writable). Steps run commands and write files where the server can: only staff set them."""
    if not actor.is_staff:
        raise LiveError("forbidden", "postprocess: only staff can set post-processing steps (they run on the server).",
                        field="postprocess")
    steps = postprocess.steps_check(steps)
    for number, step in enumerate(steps, 1):
        if step["step"] in ("move", "copy"):
            try:
                record_services.output_dir_check(step["to"])
            except LiveError as exc:
                raise LiveError("invalid", f"postprocess: step {number}: {exc.message.removeprefix('output_dir: ')}",
                                field="postprocess") from None
        if step["step"] == "command" and any("\x00" in arg for arg in step["run"]):
            raise LiveError("invalid", f"postprocess: step {number}: no NUL in the command.", field="postprocess")
    return steps


def channel_record_settings(*, channel_id: int, actor, changes: dict) -> LiveChannel:
    """Change a channel's recording settings (only the keys given): `record`, `segment_s`,
    `segment_mb`, `quality`, `container`, `output_dir`, `filename_template`, `postprocess`.
    Who added the channel or staff; an output folder outside LIVEFEED_RECORDINGS_DIR and
    post-processing steps only staff (they write and run where the server can). Every refusal
    is a LiveError naming the field; nothing is stored unless everything passes."""
    channel = LiveChannel.objects.filter(pk=channel_id).first()
    if channel is None:
        raise LiveError("not_found", f"No live channel {channel_id}.")
    if not can_manage(channel, actor):
        raise LiveError("forbidden", "Only the user who added this channel, or staff, can change its recording.")
    unknown = sorted(set(changes) - set(SETTINGS))
    if unknown:
        raise LiveError("invalid", f"{unknown[0]}: not a recording setting.", field=unknown[0])
    values: dict = {}
    if "record" in changes:
        if not isinstance(changes["record"], bool):
            raise LiveError("invalid", "record: true or false.", field="record")
        values["record"] = changes["record"]
    if "segment_s" in changes:
        minimum = max(1, round(settings.LIVEFEED_MIN_SEGMENT_S))
        values["segment_s"] = _whole(changes["segment_s"], field="segment_s", minimum=minimum, maximum=MAX_SEGMENT_S)
    if "segment_mb" in changes:
        values["segment_mb"] = _whole(changes["segment_mb"], field="segment_mb", minimum=1, maximum=MAX_SEGMENT_MB)
    if "quality" in changes:
        values["quality"] = _text(changes["quality"], field="quality", limit=30)
    if "container" in changes:
        if changes["container"] not in RecordContainer.values:
            raise LiveError("invalid", f"container: one of {', '.join(RecordContainer.values)}.", field="container")
        values["container"] = changes["container"]
    if "filename_template" in changes:
        template = _text(changes["filename_template"], field="filename_template", limit=300)
        values["filename_template"] = record_services.template_check(template)
    if "output_dir" in changes:
        folder = _text(changes["output_dir"], field="output_dir", limit=500)
        if folder and not Path(folder).is_absolute():
            raise LiveError("invalid", "output_dir: give an absolute folder path.", field="output_dir")
        if folder and not actor.is_staff and not _inside_recordings_dir(folder):
            raise LiveError("forbidden", f"output_dir: only staff can record outside {settings.LIVEFEED_RECORDINGS_DIR}.",
                            field="output_dir")
        values["output_dir"] = record_services.output_dir_check(folder)
    if "postprocess" in changes:
        values["postprocess"] = _postprocess(changes["postprocess"], actor=actor)
    if values:
        LiveChannel.objects.filter(pk=channel_id).update(**values)
        logger.info("live recording settings changed", extra={"channel_id": channel_id, "fields": sorted(values),
                                                               "user_id": actor.pk})
        channel.refresh_from_db()
    return channel


# --- deleting -----------------------------------------------------------------------------------


def recording_delete(*, recording_id: int, actor) -> None:
    """Delete a recording that has ended: its segment files (and their logs), its rows, and its
    title in the catalog. Who added the channel or staff. One still being recorded is refused
    (409): stop recording it first."""
    from catalog import film_services

    recording = Recording.objects.select_related("channel").filter(pk=recording_id).first()
    if recording is None:
        raise LiveError("not_found", f"No recording {recording_id}.")
    if not can_manage(recording.channel, actor):
        raise LiveError("forbidden", "Only the user who added this channel, or staff, can delete its recordings.")
    if recording.ended_at is None:
        raise LiveError("conflict", "This recording is still going on: turn recording off first, then delete it.")
    paths = set()
    for segment in recording.segments.all():
        paths.update(p for p in (segment.file_path, segment.original_path, segment.log_path) if p)
    with transaction.atomic():
        film_services.recording_title_remove(source_id=str(recording_id))
        recording.delete()
    for path in paths:
        try:
            Path(path).unlink(missing_ok=True)
        except OSError as exc:
            logger.warning("recording file not deleted", extra={"recording_id": recording_id, "path": path,
                                                                "error": str(exc)})
    logger.info("live recording deleted", extra={"recording_id": recording_id, "user_id": actor.pk,
                                                 "files": len(paths)})
