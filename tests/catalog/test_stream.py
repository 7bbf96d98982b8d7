"""GET/HEAD /library/tracks/<id>/stream: byte ranges, validators, transcodes, auth, and a live server.

The view is async and its bodies are async iterators, so the in-process tests use Django's
AsyncClient (the sync Client works too, but only by collecting the whole body through
async_to_sync with a warning: not the path Daphne takes). Each request runs in a fresh event
loop through async_to_sync, so the view's ORM calls come back to this thread and see the
test's transaction.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import AsyncClient, AsyncRequestFactory
from django.utils.http import http_date

from catalog import views
from catalog.models import Track
from catalog.streaming import TRANSCODE_FORMATS, Transcode, transcode_command
from project.accounts.services import token_create, token_revoke
from tests.conftest import make_audio

pytestmark = pytest.mark.django_db

FETCH_TIMEOUT_S = 60  # only so that a hung stream fails the test instead of the run
FFMPEG_GONE_TIMEOUT_S = 20


@pytest.fixture
def listener(alice) -> AsyncClient:
    client = AsyncClient()
    client.force_login(alice)
    return client


def fetch(client: AsyncClient, url: str, *, method: str = "get", **headers: str):
    """(response, body bytes) of one request, the streamed body read to its end."""

    async def run():
        response = await getattr(client, method)(url, headers=headers)
        if response.streaming:
            body = b"".join([chunk async for chunk in response.streaming_content])
        else:
            body = response.content
        return response, body

    return async_to_sync(bounded)(run())


async def bounded(coroutine):
    """Await `coroutine`, failing (rather than hanging the run) after FETCH_TIMEOUT_S."""
    task = asyncio.ensure_future(coroutine)
    done, _ = await asyncio.wait({task}, timeout=FETCH_TIMEOUT_S)
    while not task.done():  # a cleanup that hangs as well may swallow one cancellation
        task.cancel()
        await asyncio.wait({task}, timeout=1)
    if not done:
        pytest.fail(f"no complete response within {FETCH_TIMEOUT_S} s")
    return task.result()


def file_bytes(track: Track) -> bytes:
    return Path(track.file_path).read_bytes()


def ffprobe(path: Path) -> dict:
    result = subprocess.run(
        [settings.FFPROBE_BINARY, "-v", "error", "-show_entries", "stream=codec_name:format=format_name,duration",
         "-of", "json", str(path)],
        capture_output=True, check=True, timeout=30, text=True,
    )
    return json.loads(result.stdout)


def assert_error(response, status: int, code: str) -> str:
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    payload = json.loads(response.content)
    assert payload["error"] == code
    assert payload["message"]
    return payload["message"]


def ffmpeg_children(parent_pid: int) -> list[int]:
    """Pids of ffmpeg processes (zombies included) whose parent is `parent_pid`, from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == parent_pid and comm == "ffmpeg":
            pids.append(int(entry.name))
    return pids


def ffmpeg_children_once_gone(parent_pid: int) -> list[int]:
    """ffmpeg_children(parent_pid), polled until empty or FFMPEG_GONE_TIMEOUT_S (killing is not instant)."""
    deadline = time.monotonic() + FFMPEG_GONE_TIMEOUT_S
    while (children := ffmpeg_children(parent_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return children


# --- byte ranges of the original file ----------------------------------------------------


def test_whole_file_without_range_advertises_byte_ranges(listener, track):
    data = file_bytes(track)
    response, body = fetch(listener, track.get_stream_url())
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/mpeg"
    assert response["Accept-Ranges"] == "bytes"
    assert response["Content-Length"] == str(len(data))
    assert "Content-Range" not in response
    assert body == data


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        pytest.param("bytes=0-99", 0, 99, id="start"),
        pytest.param("bytes=1000-1999", 1000, 1999, id="middle"),
        pytest.param("bytes=500-", 500, None, id="open-ended"),
        pytest.param("bytes=-500", -500, None, id="suffix"),
        pytest.param("bytes=100-99999999", 100, None, id="end-beyond-eof-clamped"),
        # Longer than Python converts to int by default (4300 digits), but still a valid range.
        pytest.param("bytes=0-" + "9" * 5000, 0, None, id="absurdly-long-end-clamped"),
        pytest.param("bytes=-" + "9" * 5000, 0, None, id="absurdly-long-suffix-is-whole-file"),
    ],
)
def test_range_returns_exactly_those_bytes_of_the_file(listener, track, header, start, end):
    data = file_bytes(track)
    size = len(data)
    first = start if start >= 0 else max(0, size + start)
    last = end if end is not None else size - 1
    response, body = fetch(listener, track.get_stream_url(), range=header)
    assert response.status_code == 206
    assert response["Content-Range"] == f"bytes {first}-{last}/{size}"
    assert response["Content-Length"] == str(last - first + 1)
    assert response["Accept-Ranges"] == "bytes"
    assert body == data[first : last + 1]


@pytest.mark.parametrize("header", ["bytes=99999999-", "bytes=-0", "bytes=" + "9" * 5000 + "-"])
def test_unsatisfiable_range_is_416_with_the_file_size(listener, track, header):
    size = len(file_bytes(track))
    response, body = fetch(listener, track.get_stream_url(), range=header)
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{size}"
    assert str(size) in body.decode()


def test_range_starting_exactly_at_the_end_is_unsatisfiable(listener, track):
    size = len(file_bytes(track))
    response, _ = fetch(listener, track.get_stream_url(), range=f"bytes={size}-")
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{size}"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("bytes=abc-def", id="letters"),
        pytest.param("bytes=200-100", id="end-before-start"),
        pytest.param("bytes=", id="empty-spec"),
        pytest.param("bytes 0-99", id="no-equals"),
        pytest.param("lines=0-99", id="other-unit"),
        pytest.param("bytes=0-99,200-299", id="multi-range"),
        pytest.param("bytes=-", id="lone-dash"),
        # Latin-1 superscript digits pass str.isdigit() but not int().
        pytest.param("bytes=\u00b2-", id="superscript-digit"),
        pytest.param("bytes=0-\u00b9\u00b2\u00b3", id="superscript-end"),
    ],
)
def test_malformed_or_multi_range_header_gets_the_whole_file(listener, track, header):
    data = file_bytes(track)
    response, body = fetch(listener, track.get_stream_url(), range=header)
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(data))
    assert "Content-Range" not in response
    assert body == data


# --- validators: ETag, Last-Modified, conditional requests ------------------------------


def test_file_response_carries_etag_and_last_modified(listener, track):
    response, _ = fetch(listener, track.get_stream_url())
    assert re.fullmatch(r'"[^"]+"', response["ETag"])  # strong: If-Range may use it
    assert response["Last-Modified"] == http_date(int(Path(track.file_path).stat().st_mtime))


def test_if_none_match_with_current_etag_is_304_that_keeps_the_validators(listener, track):
    first, _ = fetch(listener, track.get_stream_url())
    response, body = fetch(listener, track.get_stream_url(), if_none_match=first["ETag"])
    assert response.status_code == 304
    assert body == b""
    # RFC 9110 15.4.5: a 304 carries the ETag and Cache-Control a 200 would have had.
    assert response["ETag"] == first["ETag"]
    assert response["Cache-Control"] == first["Cache-Control"]


def test_if_modified_since_last_modified_is_304(listener, track):
    first, _ = fetch(listener, track.get_stream_url())
    response, body = fetch(listener, track.get_stream_url(), if_modified_since=first["Last-Modified"])
    assert response.status_code == 304
    assert body == b""


def test_if_modified_since_before_the_file_changed_gets_the_file(listener, track):
    mtime = Path(track.file_path).stat().st_mtime
    earlier = format_datetime(datetime.fromtimestamp(mtime - 3600, tz=UTC), usegmt=True)
    response, body = fetch(listener, track.get_stream_url(), if_modified_since=earlier)
    assert response.status_code == 200
    assert body == file_bytes(track)


def test_etag_changes_when_the_file_is_rewritten(listener, track):
    first, _ = fetch(listener, track.get_stream_url())
    path = Path(track.file_path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    response, body = fetch(listener, track.get_stream_url(), if_none_match=first["ETag"])
    assert response.status_code == 200
    assert response["ETag"] != first["ETag"]
    assert body == file_bytes(track)


def test_if_range_with_current_etag_honours_the_range(listener, track):
    first, _ = fetch(listener, track.get_stream_url())
    response, body = fetch(listener, track.get_stream_url(), range="bytes=1000-1999", if_range=first["ETag"])
    assert response.status_code == 206
    assert body == file_bytes(track)[1000:2000]


def test_if_range_with_stale_etag_gets_the_whole_file(listener, track):
    data = file_bytes(track)
    response, body = fetch(listener, track.get_stream_url(), range="bytes=1000-1999", if_range='"stale-0-0"')
    assert response.status_code == 200
    assert "Content-Range" not in response
    assert body == data


def test_if_range_with_weak_etag_never_matches(listener, track):
    first, _ = fetch(listener, track.get_stream_url())
    response, _ = fetch(listener, track.get_stream_url(), range="bytes=0-9", if_range="W/" + first["ETag"])
    assert response.status_code == 200


def test_if_range_with_last_modified_date_honours_the_range(listener, track):
    first, _ = fetch(listener, track.get_stream_url())
    response, body = fetch(listener, track.get_stream_url(), range="bytes=0-9", if_range=first["Last-Modified"])
    assert response.status_code == 206
    assert body == file_bytes(track)[:10]


# --- HEAD --------------------------------------------------------------------------------


def call_view(method: str, track: Track, query: str, user, **headers: str):
    """The view called directly (the test client drops HEAD bodies itself, which would hide a bug).

    Returns (response, ffmpeg children of this process right after the view returned, body).
    """
    request = getattr(AsyncRequestFactory(), method)(track.get_stream_url() + query, headers=headers)

    async def auser():
        return user

    request.auser = auser

    async def run():
        response = await views.track_stream(request, track_id=track.pk)
        children = ffmpeg_children(os.getpid())
        body = b"".join([chunk async for chunk in response.streaming_content])
        return response, children, body

    return async_to_sync(bounded)(run())


def test_head_returns_the_headers_of_get_without_a_body(alice, track):
    size = len(file_bytes(track))
    response, _, body = call_view("head", track, "", alice)
    assert response.status_code == 200
    assert body == b""
    assert response["Content-Length"] == str(size)
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"]


def test_head_of_a_range_describes_the_range(alice, track):
    size = len(file_bytes(track))
    response, _, body = call_view("head", track, "", alice, range="bytes=0-99")
    assert response.status_code == 206
    assert body == b""
    assert response["Content-Range"] == f"bytes 0-99/{size}"
    assert response["Content-Length"] == "100"


def test_head_of_a_transcode_sends_no_body_and_starts_no_ffmpeg(alice, track):
    response, children, body = call_view("head", track, "?format=opus&bitrate=96", alice)
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/ogg"
    assert body == b""
    assert children == []


# --- transcoding -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "mime_type", "codec", "container"),
    [
        ("format=mp3&bitrate=128", "audio/mpeg", "mp3", "mp3"),
        ("format=opus&bitrate=96", "audio/ogg", "opus", "ogg"),
    ],
)
def test_transcoded_stream_decodes_with_the_asked_codec_and_the_tracks_duration(
    listener, track, tmp_path, query, mime_type, codec, container
):
    response, body = fetch(listener, f"{track.get_stream_url()}?{query}")
    assert response.status_code == 200
    assert response["Content-Type"] == mime_type
    assert response["Accept-Ranges"] == "none"
    assert "Content-Length" not in response
    out = tmp_path / f"out.{container}"
    out.write_bytes(body)
    probe = ffprobe(out)
    assert [stream["codec_name"] for stream in probe["streams"]] == [codec]
    assert probe["format"]["format_name"] == container
    assert float(probe["format"]["duration"]) == pytest.approx(track.duration_s, abs=0.3)


def test_transcode_without_bitrate_uses_the_formats_default(listener, track):
    response, _ = fetch(listener, f"{track.get_stream_url()}?format=mp3")
    assert response.status_code == 200
    assert response["X-Transcode"] == "mp3;bitrate=192k"


@pytest.mark.parametrize(
    ("query", "words"),
    [
        pytest.param("format=wav", "format must be", id="unknown-format"),
        pytest.param("format=mp3&bitrate=fast", "whole number", id="non-numeric-bitrate"),
        pytest.param("format=opus&bitrate=12.5", "whole number", id="fractional-bitrate"),
        pytest.param("format=mp3&bitrate=8", "between 32 and 320", id="bitrate-too-low"),
        pytest.param("format=mp3&bitrate=999", "between 32 and 320", id="bitrate-too-high"),
        pytest.param("bitrate=128", "needs format", id="bitrate-without-format"),
    ],
)
def test_bad_transcode_parameters_are_400_with_a_message(listener, track, query, words):
    response, _ = fetch(listener, f"{track.get_stream_url()}?{query}")
    assert words in assert_error(response, 400, "invalid")


@pytest.fixture(scope="session")
def damaged_mp3(tmp_path_factory) -> bytes:
    """Three minutes of mp3 with 32 zero bytes after every 800: ffmpeg decodes it, logging an error per gap."""
    folder = tmp_path_factory.mktemp("damaged")
    good = make_audio(folder / "good.mp3", 180, ["-c:a", "libmp3lame", "-b:a", "128k"], {}).read_bytes()
    damaged = b"".join(good[offset : offset + 800] + bytes(32) for offset in range(0, len(good), 800))
    (folder / "damaged.mp3").write_bytes(damaged)
    # The premise: more on stderr than a pipe (64 KiB) plus asyncio's reader buffer (128 KiB) hold.
    result = subprocess.run(
        transcode_command(folder / "damaged.mp3", TRANSCODE_FORMATS["mp3"], 64),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, timeout=60,
    )
    assert len(result.stderr) > 256 * 1024
    return damaged


def test_transcode_of_a_damaged_file_that_makes_ffmpeg_chatty_still_finishes(listener, track, damaged_mp3, tmp_path):
    # ffmpeg writes more to stderr than a pipe holds; unless stderr is drained, it blocks and the stream hangs.
    Path(track.file_path).write_bytes(damaged_mp3)
    response, body = fetch(listener, f"{track.get_stream_url()}?format=mp3&bitrate=64")
    assert response.status_code == 200
    out = tmp_path / "out.mp3"
    out.write_bytes(body)
    assert float(ffprobe(out)["format"]["duration"]) > 60


def test_transcode_of_a_file_ffmpeg_cannot_read_is_an_error_not_an_empty_200(listener, track):
    Path(track.file_path).write_bytes(b"this is not audio\n" * 100)
    response, _ = fetch(listener, f"{track.get_stream_url()}?format=opus")
    assert "could not" in assert_error(response, 500, "transcode_failed")


# --- who may listen ----------------------------------------------------------------------


def test_anonymous_request_is_401(track):
    response, _ = fetch(AsyncClient(), track.get_stream_url())
    assert assert_error(response, 401, "not_authenticated")


def test_valid_bearer_token_can_stream(alice, track):
    _, raw = token_create(user=alice, name="phone")
    response, body = fetch(AsyncClient(), track.get_stream_url(), authorization=f"Bearer {raw}", range="bytes=0-9")
    assert response.status_code == 206
    assert body == file_bytes(track)[:10]


def test_revoked_bearer_token_is_401(alice, track):
    token, raw = token_create(user=alice, name="phone")
    token_revoke(user=alice, token_id=token.pk)
    response, _ = fetch(AsyncClient(), track.get_stream_url(), authorization=f"Bearer {raw}")
    assert_error(response, 401, "not_authenticated")


@pytest.mark.parametrize("how", ["query", "basic"])
def test_a_player_can_stream_with_the_token_in_the_url_or_as_basic_auth(alice, track, how):
    """What mpv and VLC can send: ?token=, or the token as basic auth's password."""
    _, raw = token_create(user=alice, name="mpv")
    url, headers = track.get_stream_url(), {}
    if how == "query":
        url += f"?token={raw}"
    else:
        headers["authorization"] = "Basic " + base64.b64encode(f"anyone:{raw}".encode()).decode()
    response, body = fetch(AsyncClient(), url, range="bytes=0-9", **headers)
    assert response.status_code == 206
    assert body == file_bytes(track)[:10]


@pytest.mark.parametrize(
    "authorization",
    ["Basic !!!not-base64", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic " + base64.b64encode(b"x:chorus_wrong").decode()],
)
def test_bad_basic_auth_is_401_with_a_challenge(track, authorization):
    response, _ = fetch(AsyncClient(), track.get_stream_url(), authorization=authorization)
    assert "?token=" in assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == 'Basic realm="Chorus", charset="UTF-8"'


def test_revoked_token_in_the_url_is_401(alice, track):
    token, raw = token_create(user=alice, name="mpv")
    token_revoke(user=alice, token_id=token.pk)
    response, _ = fetch(AsyncClient(), f"{track.get_stream_url()}?token={raw}")
    assert_error(response, 401, "not_authenticated")


def test_unknown_bearer_token_is_401(track):
    response, _ = fetch(AsyncClient(), track.get_stream_url(), authorization="Bearer nonsense")
    assert_error(response, 401, "not_authenticated")


# --- missing and unknown tracks ---------------------------------------------------------


@pytest.mark.parametrize("query", ["", "?format=mp3"])
def test_file_gone_from_disk_is_410_and_flags_the_track(listener, track, query):
    Path(track.file_path).unlink()
    response, _ = fetch(listener, track.get_stream_url() + query)
    assert track.title in assert_error(response, 410, "gone")
    track.refresh_from_db()
    assert track.missing_since is not None


def test_unknown_track_is_404(listener, track):
    response, _ = fetch(listener, f"/library/tracks/{track.pk + 1000}/stream")
    assert assert_error(response, 404, "not_found")


def test_post_is_not_allowed(listener, track):
    response, _ = fetch(listener, track.get_stream_url(), method="post")
    assert response.status_code == 405


# --- ffmpeg's lifetime ------------------------------------------------------------------


async def test_ffmpeg_stops_when_the_listener_leaves_after_the_pipe_filled_up(long_wav):
    transcode = await Transcode.start(transcode_command(long_wav, TRANSCODE_FORMATS["opus"], 96), source=long_wav)
    chunks = aiter(transcode)
    assert (await anext(chunks)).startswith(b"OggS")
    assert len(ffmpeg_children(os.getpid())) == 1
    # Nobody reads for a while: ffmpeg fills the pipe and asyncio's buffer, and asyncio stops reading.
    await asyncio.sleep(1)
    # The listener has gone and the body is closed unread: that must not wait for ffmpeg's own end.
    await asyncio.wait_for(chunks.aclose(), FETCH_TIMEOUT_S)
    assert ffmpeg_children(os.getpid()) == []


async def test_closing_an_unread_transcode_from_a_worker_thread_stops_ffmpeg(long_wav):
    transcode = await Transcode.start(transcode_command(long_wav, TRANSCODE_FORMATS["mp3"], 128), source=long_wav)
    assert len(ffmpeg_children(os.getpid())) == 1
    # Django calls response.close() through sync_to_async, in a worker thread.
    await asyncio.to_thread(transcode.close)
    assert await asyncio.to_thread(ffmpeg_children_once_gone, os.getpid()) == []
    # What is left in the pipe still arrives, then the end (the kill is not logged as a failure).
    await asyncio.wait_for(read_to_end(transcode), FETCH_TIMEOUT_S)


async def read_to_end(transcode: Transcode) -> None:
    async for _ in transcode:
        pass


# --- through a real Daphne --------------------------------------------------------------


def test_transcode_arrives_incrementally_and_ffmpeg_stops_when_the_listener_leaves(alice, long_track, asgi_server):
    _, raw = token_create(user=alice, name="live test")
    connection = http.client.HTTPConnection("127.0.0.1", asgi_server.port, timeout=FETCH_TIMEOUT_S)
    try:
        connection.request("GET", f"{long_track.get_stream_url()}?format=opus&bitrate=96",
                           headers={"Authorization": f"Bearer {raw}"})
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "audio/ogg"
        first = response.read1(64 * 1024)
        assert first.startswith(b"OggS")
        # The first bytes are here while ffmpeg is still encoding: nothing waited for the whole track.
        assert len(ffmpeg_children(asgi_server.process.pid)) == 1
    finally:
        connection.close()
    assert ffmpeg_children_once_gone(asgi_server.process.pid) == [], "ffmpeg kept running (or unreaped) after the client left"


def vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_listener_that_stops_reading_does_not_make_the_server_buffer_the_file(alice, long_track, asgi_server):
    """A paused <audio> element stops reading: the server must wait for it, not read the rest
    of the 58 MB file into memory (Daphne alone would queue it all in Twisted)."""
    _, raw = token_create(user=alice, name="live test")
    connection = http.client.HTTPConnection("127.0.0.1", asgi_server.port, timeout=FETCH_TIMEOUT_S)
    try:
        connection.request("GET", long_track.get_stream_url(), headers={"Authorization": f"Bearer {raw}"})
        response = connection.getresponse()
        assert response.status == 200
        first = len(response.read1(64 * 1024))
        before = vm_rss_kib(asgi_server.process.pid)
        time.sleep(2)  # the client reads nothing more
        grown_mib = (vm_rss_kib(asgi_server.process.pid) - before) / 1024
        assert grown_mib < 20, f"the server grew by {grown_mib:.0f} MiB while the client was not reading"
        rest = len(response.read())  # and the rest still arrives once it reads again
    finally:
        connection.close()
    assert first + rest == long_track.size_bytes
