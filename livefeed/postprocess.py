"""After a segment closes: measure it (ffprobe), then run the channel's post-processing steps
in order, each tried LIVEFEED_POSTPROCESS_TRIES times with backoff, each result recorded on
the segment (`steps`) as it happens. A step that fails stops the chain (a later
`delete_original` must not run after a failed remux) and the segment is `failed` with the
file kept where it is: no step ever deletes the only copy of a recording.

Steps (LiveChannel.postprocess, a JSON list; `container` mp4 or ts adds a remux and a
delete_original in front):
- `{"step": "remux", "format": "mp4"|"ts"}`: codec copy into the new container (mp4 with
  +faststart, so a browser starts playing before it has the whole file); the result becomes the
  segment's file, the original stays until `delete_original`.
- `{"step": "move", "to": "/folder"}` / `{"step": "copy", "to": "/folder"}`.
- `{"step": "command", "run": ["program", "{path}", ...], "timeout_s": 600}`: run a program (no
  shell) with the file's path; a non-zero exit fails the step, with the end of its output.
- `{"step": "delete_original"}`: remove the file ffmpeg wrote, once another file holds the
  recording (after a remux); otherwise the step fails and nothing is deleted.

Re-running on a segment (a recorder taking over one left in `processing`) skips the steps
already recorded as done: every step is idempotent from its recorded result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from livefeed import record_services
from livefeed.models import LiveChannel, Segment
from project import outside

STEPS = ("remux", "move", "copy", "command", "delete_original")
PROBE_TIMEOUT_S = 30
REMUX_TIMEOUT_S = 600
MUXERS = {"ts": "mpegts"}  # container name -> ffmpeg's muxer


class StepFailed(Exception):
    pass


def steps_check(steps) -> list[dict]:
    """The steps if each is well formed; else record_services.LiveError naming `postprocess`."""
    from livefeed.services import LiveError

    if not isinstance(steps, list) or len(steps) > 20:
        raise LiveError("invalid", "postprocess: a list of at most 20 steps.", field="postprocess")
    for number, step in enumerate(steps, 1):
        name = step.get("step") if isinstance(step, dict) else None
        if name not in STEPS:
            raise LiveError("invalid", f"postprocess: step {number} must be one of {', '.join(STEPS)}.",
                            field="postprocess")
        if name == "remux" and step.get("format", "mp4") not in ("mp4", "ts", "flv"):
            raise LiveError("invalid", f"postprocess: step {number}: format is mp4, ts or flv.", field="postprocess")
        if name in ("move", "copy") and not (isinstance(step.get("to"), str) and os.path.isabs(step["to"])):
            raise LiveError("invalid", f"postprocess: step {number}: 'to' must be an absolute folder.",
                            field="postprocess")
        if name == "command":
            run = step.get("run")
            if not (isinstance(run, list) and run and all(isinstance(arg, str) for arg in run)):
                raise LiveError("invalid", f"postprocess: step {number}: 'run' is a list of strings "
                                "(the program and its arguments; {path} is the file).", field="postprocess")
    return steps


def steps_for(channel: LiveChannel) -> list[dict]:
    """The channel's steps, with the container's remux in front."""
    steps = list(channel.postprocess or [])
    if channel.container in ("mp4", "ts") and not any(step.get("step") == "remux" for step in steps):
        steps = [{"step": "remux", "format": channel.container}, {"step": "delete_original"}, *steps]
    return steps


def probe(path: str) -> dict:
    """duration_s, codecs, width and height of a file, by ffprobe; {} when it cannot read it."""
    try:
        result = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type,codec_name,width,height",
             "-of", "json", path], capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
        data = json.loads(result.stdout or b"{}")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return {}
    info: dict = {}
    with contextlib.suppress(TypeError, ValueError):
        info["duration_s"] = float((data.get("format") or {}).get("duration"))
    for stream in data.get("streams") or []:
        if stream.get("codec_type") == "video" and "video_codec" not in info:
            info.update(video_codec=stream.get("codec_name", ""), width=stream.get("width"),
                        height=stream.get("height"))
        elif stream.get("codec_type") == "audio" and "audio_codec" not in info:
            info["audio_codec"] = stream.get("codec_name", "")
    return info


def remux(source: str, target: str, *, fmt: str) -> None:
    """Codec copy `source` into `target` (written beside it first, renamed when complete)."""
    import ffmpeg  # here, not at the top: a worker that records nothing never loads it

    partial = f"{target}.part"
    output_options = {"c": "copy", "f": MUXERS.get(fmt, fmt)}
    if fmt == "mp4":
        output_options["movflags"] = "+faststart"
    args = ffmpeg.input(source).output(partial, **output_options).global_args(
        "-hide_banner", "-nostdin", "-loglevel", "error").overwrite_output().compile(cmd=settings.FFMPEG_BINARY)
    try:
        result = subprocess.run(args, capture_output=True, timeout=REMUX_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _remove(partial)
        raise StepFailed(f"ffmpeg could not run: {exc}") from None
    if result.returncode != 0 or not os.path.getsize(partial):
        _remove(partial)
        raise StepFailed(f"ffmpeg exited {result.returncode}: {_tail(result.stderr)}")
    os.replace(partial, target)


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def _tail(output: bytes, limit: int = 300) -> str:
    return output.decode("utf-8", "replace").strip()[-limit:] or "(no output)"


def _run_step(step: dict, *, current: str, original: str) -> tuple[str, str]:
    """Do one step; (the segment's file now, what to record as the step's path)."""
    name = step["step"]
    if name == "remux":
        fmt = step.get("format", "mp4")
        target = str(Path(current).with_suffix(f".{fmt}"))
        if target == current:
            target = str(Path(current).with_name(f"{Path(current).stem}.remux.{fmt}"))
        remux(current, target, fmt=fmt)
        return target, target
    if name in ("move", "copy"):
        folder = Path(step["to"])
        folder.mkdir(parents=True, exist_ok=True)
        target = str(folder / Path(current).name)
        if name == "copy":
            shutil.copy2(current, target)
            return current, target
        shutil.move(current, target)
        return target, target
    if name == "command":
        run = [arg.replace("{path}", current) for arg in step["run"]]
        if "{path}" not in "".join(step["run"]):
            run.append(current)
        try:
            result = subprocess.run(run, capture_output=True, timeout=float(step.get("timeout_s", 600)), check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StepFailed(f"{run[0]}: {exc}") from None
        if result.returncode != 0:
            raise StepFailed(f"{run[0]} exited {result.returncode}: {_tail(result.stdout + result.stderr)}")
        return current, current
    if name == "delete_original":
        if original == current or not os.path.exists(current) or os.path.getsize(current) == 0:
            raise StepFailed("no other file holds the recording; the original is kept")
        if os.path.exists(original):
            os.remove(original)
        return current, original
    raise StepFailed(f"unknown step {name!r}")


def checksum(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def process_segment(*, segment_id: int, sleep=time.sleep) -> Segment:
    """Run the segment's steps (those not recorded as done), record each, set its final state."""
    segment = Segment.objects.select_related("recording__channel").get(pk=segment_id)
    channel = segment.recording.channel
    steps = steps_for(channel)
    results: list[dict] = list(segment.steps or [])
    current, original = segment.file_path, segment.original_path or segment.file_path
    failed = False
    for number, step in enumerate(steps):
        if number < len(results) and results[number].get("ok"):
            continue
        record = {"step": step["step"], "ok": False, "attempts": 0, "error": "", "path": ""}
        for attempt in range(settings.LIVEFEED_POSTPROCESS_TRIES):
            record["attempts"] = attempt + 1
            try:
                current, record["path"] = _run_step(step, current=current, original=original)
                record.update(ok=True, error="")
                break
            except (StepFailed, OSError) as exc:
                record["error"] = str(exc)[:400]
                if attempt + 1 < settings.LIVEFEED_POSTPROCESS_TRIES:
                    sleep(outside.backoff_s(attempt, first_s=0.5, max_s=10))
        record["at"] = timezone.now().isoformat()
        results[number:number + 1] = [record]
        record_services.segment_steps(segment_id=segment_id, steps=results, file_path=current, failed=not record["ok"])
        if not record["ok"]:
            failed = True
            break
    digest = checksum(current) if os.path.exists(current) else ""
    record_services.segment_steps(segment_id=segment_id, steps=results, file_path=current, failed=failed,
                                  checksum=digest, size_bytes=record_services.file_size(current) or None, done=True)
    return Segment.objects.get(pk=segment_id)


def finish_segment(*, segment_id: int, ended_at_ms: int | None, started_at_ms: int | None = None,
                   repair: bool = False) -> Segment:
    """A segment's file is complete (or was left half-written, with `repair`): fix it up if
    asked (a codec copy into the same container, which drops a torn last tag), measure it,
    discard it if shorter than LIVEFEED_MIN_SEGMENT_S, else post-process it. Runs in a thread of
    its own (ffprobe, remuxes, commands), with its own database connection."""
    close_old_connections()
    try:
        segment = Segment.objects.get(pk=segment_id)
        path = segment.file_path
        if started_at_ms is not None and started_at_ms != segment.started_at_ms:
            record_services.segment_retime(segment_id=segment_id, started_at_ms=started_at_ms)
            segment.started_at_ms = started_at_ms
        error = ""
        if repair and os.path.exists(path) and os.path.getsize(path):
            fixed = f"{path}.fixed{Path(path).suffix}"
            try:
                remux(path, fixed, fmt=Path(path).suffix.lstrip(".") or "flv")
                os.replace(fixed, path)
            except StepFailed as exc:
                error = f"the half-written file could not be fixed up: {exc}"
        info = probe(path) if os.path.exists(path) else {}
        duration_s = info.get("duration_s") or 0.0
        if ended_at_ms is None and segment.started_at_ms is not None and duration_s:
            ended_at_ms = segment.started_at_ms + round(duration_s * 1000)
        too_short = duration_s < settings.LIVEFEED_MIN_SEGMENT_S
        segment = record_services.segment_close(
            segment_id=segment_id, ended_at_ms=ended_at_ms, duration_s=duration_s,
            size_bytes=record_services.file_size(path), probe=info, discarded=too_short,
            error=error or (f"shorter than LIVEFEED_MIN_SEGMENT_S ({settings.LIVEFEED_MIN_SEGMENT_S:g} s)"
                            if too_short else ""))
        if segment.state == Segment.State.DISCARDED:
            _remove(path)
            return segment
        if segment.state == Segment.State.PROCESSING:
            return process_segment(segment_id=segment_id)
        return segment
    finally:
        connection.close()
