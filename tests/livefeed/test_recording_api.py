"""Recordings over /api/live/ and on the channel page: the recording settings (checked, only
who added the channel or staff), the recordings with their segments and the downloads behind
their URLs (video with byte ranges, ASS, XML), deleting one, and the settings form."""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.test import AsyncClient, Client

from catalog.models import Title
from livefeed.models import LiveChannel, Recording, Segment
from livefeed.storage import messages_store
from project.accounts.services import token_create
from tests.catalog.test_stream import fetch
from tests.livefeed.conftest import BASE_MS, chat, gift

START = datetime.fromtimestamp(BASE_MS / 1000, UTC)


def body_of(response) -> bytes:
    """A streamed response's body (the comment files stream asynchronously)."""
    async def read() -> bytes:
        return b"".join([chunk.encode() if isinstance(chunk, str) else chunk
                         async for chunk in response.streaming_content])

    return async_to_sync(read)()


def make_clip(path: Path, seconds: float = 2) -> Path:
    """A real little recording file: ffmpeg's test pattern and a tone, H.264 + AAC, in the
    container the name says (flv as streamed, mp4 as remuxed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = ["-movflags", "+faststart"] if path.suffix == ".mp4" else []
    subprocess.run([settings.FFMPEG_BINARY, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=duration={seconds}:size=160x90:rate=15",
                    "-f", "lavfi", "-i", f"sine=duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", *extra, str(path)], check=True, timeout=60)
    return path


@pytest.fixture
def recordings_dir(settings, tmp_path) -> Path:
    settings.LIVEFEED_RECORDINGS_DIR = tmp_path / "recordings"
    settings.LIVEFEED_RECORDINGS_DIR.mkdir()
    return settings.LIVEFEED_RECORDINGS_DIR


@pytest.fixture
def api(alice):
    return {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=alice, name='api')[1]}"}


@pytest.fixture
def bob_api(bob):
    return {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=bob, name='api')[1]}"}


@pytest.fixture
def staff_api(staff):
    return {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=staff, name='api')[1]}"}


@pytest.fixture
def recording(channel, session, recordings_dir):
    """An ended recording of two segments: an mp4 (remuxed) and an flv, 2 s each, the second
    starting 0.5 s after the first ended; and the messages said meanwhile."""
    recording = Recording.objects.create(channel=channel, session=session, title="Evening show", started_at=START,
                                         ended_at=START + timedelta(seconds=5), state="idle", segments_total=2)
    first = make_clip(recordings_dir / "show_001.mp4")
    second = make_clip(recordings_dir / "show_002.flv")
    Segment.objects.create(recording=recording, index=1, file_path=str(first), started_at_ms=BASE_MS,
                           ended_at_ms=BASE_MS + 2_000, offset_s=0, duration_s=2.0, size_bytes=first.stat().st_size,
                           state="done", log_path=str(recordings_dir / "show_001.log"))
    Segment.objects.create(recording=recording, index=2, file_path=str(second), started_at_ms=BASE_MS + 2_500,
                           ended_at_ms=BASE_MS + 4_500, offset_s=2.5, duration_s=2.0,
                           size_bytes=second.stat().st_size, state="done")
    (recordings_dir / "show_001.log").write_text("ffmpeg said things\n")
    messages_store(channel_id=channel.pk, session_id=session.pk, messages=[
        chat("hello at 0.8", at_ms=BASE_MS + 800), chat("between segments", at_ms=BASE_MS + 2_200),
        chat("second part at 1.2", at_ms=BASE_MS + 3_700), gift(combo="c9", count=2, at_ms=BASE_MS + 4_000, end=True)])
    return recording


# --- settings -----------------------------------------------------------------------------------


def test_the_owner_sets_recording_settings_and_only_what_is_sent_changes(client, api, channel, recordings_dir):
    response = client.patch(f"/api/live/channels/{channel.pk}", {
        "record": True, "segment_s": 600, "container": "mp4", "filename_template": "{channel}/{date:%Y}/{title}",
        "output_dir": str(recordings_dir / "alice")}, content_type="application/json", **api)
    assert response.status_code == 200, response.content
    body = response.json()["recording"]
    assert (body["record"], body["segment_s"], body["segment_mb"], body["container"]) == (True, 600, 2048, "mp4")
    assert body["filename_template"] == "{channel}/{date:%Y}/{title}"
    assert (recordings_dir / "alice").is_dir()
    again = client.patch(f"/api/live/channels/{channel.pk}", {"segment_mb": 100}, content_type="application/json", **api)
    assert again.json()["recording"]["segment_s"] == 600
    stored = LiveChannel.objects.get(pk=channel.pk)
    assert (stored.record, stored.segment_s, stored.segment_mb, stored.container) == (True, 600, 100, "mp4")


@pytest.mark.parametrize(("body", "field", "status"), [
    ({"filename_template": "../escape/{title}"}, "filename_template", 400),
    ({"filename_template": "/etc/{title}"}, "filename_template", 400),
    ({"filename_template": "a/../../b"}, "filename_template", 400),
    ({"filename_template": "bad\x00name"}, "filename_template", 400),
    ({"filename_template": "{secret}"}, "filename_template", 400),
    ({"filename_template": ""}, "filename_template", 400),
    ({"output_dir": "relative/folder"}, "output_dir", 400),
    ({"container": "avi"}, "container", 400),
    ({"segment_s": 0}, "segment_s", 400),
    ({"segment_mb": 10**9}, "segment_mb", 400),
    ({"segment_s": "600"}, "segment_s", 422),
    ({"record": "yes"}, "record", 422),
    ({"quality": "a\nb"}, "quality", 400),
])
def test_a_bad_setting_is_refused_naming_it_and_nothing_changes(client, api, channel, recordings_dir, body, field,
                                                                 status):
    response = client.patch(f"/api/live/channels/{channel.pk}", {**body, "record": body.get("record", True)},
                            content_type="application/json", **api)
    assert response.status_code == status, response.content
    assert response.json()["field"] == field
    assert LiveChannel.objects.get(pk=channel.pk).record is False


def test_an_output_folder_that_cannot_be_written_is_refused(client, api, channel, recordings_dir):
    blocker = recordings_dir / "a-file"
    blocker.write_text("not a folder")
    response = client.patch(f"/api/live/channels/{channel.pk}", {"output_dir": str(blocker / "inside")},
                            content_type="application/json", **api)
    assert response.status_code == 400
    assert response.json()["field"] == "output_dir"
    assert "cannot write" in response.json()["message"]
    assert LiveChannel.objects.get(pk=channel.pk).output_dir == ""


def test_only_the_owner_or_staff_change_settings_and_only_staff_go_outside_the_folder_or_run_steps(
        client, api, bob_api, staff_api, channel, recordings_dir, tmp_path):
    assert client.patch(f"/api/live/channels/{channel.pk}", {"record": True}, content_type="application/json",
                        **bob_api).status_code == 403
    outside = tmp_path / "elsewhere"
    refused = client.patch(f"/api/live/channels/{channel.pk}", {"output_dir": str(outside)},
                           content_type="application/json", **api)
    assert (refused.status_code, refused.json()["field"]) == (403, "output_dir")
    steps = [{"step": "remux", "format": "mp4"}, {"step": "command", "run": ["echo", "{path}"], "timeout_s": 60}]
    refused = client.patch(f"/api/live/channels/{channel.pk}", {"postprocess": steps},
                           content_type="application/json", **api)
    assert (refused.status_code, refused.json()["field"]) == (403, "postprocess")
    bad = client.patch(f"/api/live/channels/{channel.pk}", {"postprocess": [{"step": "format_disk"}]},
                       content_type="application/json", **staff_api)
    assert (bad.status_code, bad.json()["field"]) == (400, "postprocess")
    assert "step 1" in bad.json()["message"]
    (recordings_dir / "f").write_text("a file, not a folder")
    unwritable = client.patch(f"/api/live/channels/{channel.pk}",
                              {"postprocess": [{"step": "move", "to": str(recordings_dir / "f" / "x")}]},
                              content_type="application/json", **staff_api)
    assert (unwritable.status_code, unwritable.json()["field"]) == (400, "postprocess")
    assert "cannot write" in unwritable.json()["message"]
    ok = client.patch(f"/api/live/channels/{channel.pk}", {"output_dir": str(outside), "postprocess": steps},
                      content_type="application/json", **staff_api)
    assert ok.status_code == 200, ok.content
    assert LiveChannel.objects.get(pk=channel.pk).postprocess == steps
    assert LiveChannel.objects.get(pk=channel.pk).output_dir == str(outside)


# --- recordings and downloads -------------------------------------------------------------------


def test_a_recording_lists_its_segments_with_their_urls(client, api, channel, recording):
    listed = client.get(f"/api/live/channels/{channel.pk}/recordings", **api)
    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()] == [recording.pk]
    body = client.get(f"/api/live/recordings/{recording.pk}", **api).json()
    assert (body["state"], body["segments_total"], body["session_id"]) == ("idle", 2, recording.session_id)
    first, second = body["segments"]
    assert (first["start_ms"], first["end_ms"], first["offset_s"], first["duration_s"]) == (
        BASE_MS, BASE_MS + 2_000, 0, 2.0)
    assert (second["start_ms"], second["offset_s"], second["state"]) == (BASE_MS + 2_500, 2.5, "done")
    assert first["size_bytes"] == Path(Segment.objects.get(index=1).file_path).stat().st_size
    assert first["video_url"] == f"/live/segments/{first['id']}/video"
    assert first["ass_url"] == f"/live/segments/{first['id']}/comments.ass"
    assert second["xml_url"] == f"/live/segments/{second['id']}/comments.xml"
    assert client.get(f"/api/live/recordings/{recording.pk + 99}", **api).status_code == 404


def test_the_segment_downloads_stream_with_ranges_and_need_a_login(alice, recording):
    segment = recording.segments.get(index=2)
    url = f"/live/segments/{segment.pk}/video"
    assert fetch(AsyncClient(), url)[0].status_code == 401
    viewer = AsyncClient()
    viewer.force_login(alice)
    whole = Path(segment.file_path).read_bytes()
    response, body = fetch(viewer, url)
    assert (response.status_code, response["Content-Type"], body) == (200, "video/x-flv", whole)
    assert 'filename="show_002.flv"' in response["Content-Disposition"]
    response, body = fetch(viewer, url, range="bytes=10-19")
    assert (response.status_code, body) == (206, whole[10:20])
    Path(segment.file_path).unlink()
    assert fetch(viewer, url)[0].status_code == 410


def test_the_comment_files_of_a_segment_are_timed_from_its_start(alice_client, client, recording):
    first, second = recording.segments.order_by("index")
    xml = alice_client.get(f"/live/segments/{second.pk}/comments.xml")
    assert xml.status_code == 200
    assert xml["Content-Type"].startswith("application/xml")
    root = ET.fromstring(body_of(xml))  # noqa: S314 - our own file
    assert [(d.get("p").split(",")[0], d.text) for d in root.findall("d")] == [
        ("1.200", "second part at 1.2"), ("1.500", "viewer 2 ▸ Rose ×2")]
    ass = body_of(alice_client.get(f"/live/segments/{first.pk}/comments.ass")).decode()
    assert "Dialogue: 0,0:00:00.80,0:00:08.80,Chat,viewer 1,0,0,0,,{\\move(" in ass
    assert "between segments" not in ass
    session_ass = alice_client.get(f"/live/sessions/{recording.session_id}/comments.ass")
    assert session_ass.status_code == 200
    assert alice_client.get(f"/live/segments/{first.pk}/comments.srt").status_code == 404
    Client().logout()
    assert Client().get(f"/live/segments/{first.pk}/comments.ass").status_code == 401


def test_deleting_a_recording_removes_its_files_and_rows_but_not_while_it_records(
        client, api, bob_api, recording, recordings_dir):
    files = [Path(s.file_path) for s in recording.segments.all()] + [recordings_dir / "show_001.log"]
    assert client.delete(f"/api/live/recordings/{recording.pk}", **bob_api).status_code == 403
    Recording.objects.filter(pk=recording.pk).update(ended_at=None)
    busy = client.delete(f"/api/live/recordings/{recording.pk}", **api)
    assert busy.status_code == 409
    assert all(path.exists() for path in files)
    Recording.objects.filter(pk=recording.pk).update(ended_at=START + timedelta(seconds=5))
    assert client.delete(f"/api/live/recordings/{recording.pk}", **api).status_code == 204
    assert not any(path.exists() for path in files)
    assert not Segment.objects.exists()
    assert client.delete(f"/api/live/recordings/{recording.pk}", **api).status_code == 404


# --- the channel page ---------------------------------------------------------------------------


def test_the_channel_page_shows_recordings_with_their_files(alice_client, channel, recording):
    page = alice_client.get(f"/live/{channel.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    for segment in recording.segments.all():
        assert f"/live/segments/{segment.pk}/video?download=1" in html
        assert f"/live/segments/{segment.pk}/comments.ass" in html
        assert f"/live/segments/{segment.pk}/comments.xml" in html
    assert 'id="record-log"' in html
    assert "Save recording settings" in html
    # mp4 is played as it is, flv from its remux: Watch goes through the recording's watch page.
    assert f'href="/live/recordings/{recording.pk}/watch"' in html
    from livefeed import recordings

    recordings.recording_finish(recording_id=recording.pk)
    for segment in recording.segments.all():
        Segment.objects.filter(pk=segment.pk).update(file_path=f"/nowhere/show_{segment.index}.mkv")
    html = alice_client.get(f"/live/{channel.pk}/").content.decode()
    assert "▶ Watch with comments" not in html
    assert "not playable in a browser" in html


def test_the_channel_page_shows_the_segment_being_written_so_far(alice_client, channel, recording, recordings_dir):
    from livefeed.messages import now_ms

    Recording.objects.filter(pk=recording.pk).update(ended_at=None, state="recording")
    writing = recordings_dir / "show_003.flv"
    writing.write_bytes(b"F" * 3 * 1024 * 1024)
    Segment.objects.create(recording=recording, index=3, file_path=str(writing), started_at_ms=now_ms() - 125_000,
                           state="recording")
    html = alice_client.get(f"/live/{channel.pk}/").content.decode()
    assert re.search(r'id="record-segment">#3 · 3\.0\xa0MB · 2:0[56]<', html), re.search(r'id="record-segment">[^<]*', html)


def test_the_settings_form_keeps_what_was_typed_on_a_refusal(alice_client, channel, recordings_dir):
    form = {"record": "on", "segment_s": "900", "segment_mb": "512", "quality": "", "container": "ts",
            "output_dir": "", "filename_template": "../../{title}"}
    response = alice_client.post(f"/live/{channel.pk}/recording", form)
    assert response.status_code == 400
    html = response.content.decode()
    assert 'value="../../{title}"' in html
    assert 'value="900"' in html
    assert "not allowed" in html
    assert LiveChannel.objects.get(pk=channel.pk).record is False
    form["filename_template"] = "{channel}/{title}"
    saved = alice_client.post(f"/live/{channel.pk}/recording", form)
    assert saved.status_code == 302
    stored = LiveChannel.objects.get(pk=channel.pk)
    assert (stored.record, stored.segment_s, stored.container, stored.filename_template) == (
        True, 900, "ts", "{channel}/{title}")


def test_staff_set_post_processing_steps_in_the_form_and_others_do_not_see_it(alice, staff, channel, recordings_dir):
    alice_client, staff_client = Client(), Client()
    alice_client.force_login(alice)
    staff_client.force_login(staff)
    assert "Post-processing steps" not in alice_client.get(f"/live/{channel.pk}/").content.decode()
    assert "Post-processing steps" in staff_client.get(f"/live/{channel.pk}/").content.decode()
    form = {"segment_s": "3600", "segment_mb": "2048", "container": "flv", "filename_template": "{title}",
            "postprocess": '[{"step": "shred"}]'}
    refused = staff_client.post(f"/live/{channel.pk}/recording", form)
    assert refused.status_code == 400
    assert "step 1 must be one of" in refused.content.decode()
    assert "shred" in refused.content.decode()  # what was typed is still there
    form["postprocess"] = '[{"step": "command", "run": ["true", "{path}"]}]'
    assert staff_client.post(f"/live/{channel.pk}/recording", form).status_code == 302
    assert LiveChannel.objects.get(pk=channel.pk).postprocess == [{"step": "command", "run": ["true", "{path}"]}]


def test_the_settings_form_needs_the_csrf_token_and_the_owner(alice, bob, channel):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post(f"/live/{channel.pk}/recording", {"record": "on"}).status_code == 403
    other = Client()
    other.force_login(bob)
    form = {"record": "on", "segment_s": "900", "segment_mb": "512", "container": "flv",
            "filename_template": "{title}"}
    assert other.post(f"/live/{channel.pk}/recording", form).status_code == 403
    assert LiveChannel.objects.get(pk=channel.pk).record is False


# --- watching back ------------------------------------------------------------------------------


def test_a_finished_recording_becomes_a_title_with_its_parts_and_comments(recording, alice):
    from catalog import film_services
    from livefeed import recordings

    recordings.recording_finish(recording_id=recording.pk)
    title = Title.objects.get(kind="recording")
    episodes = list(title.seasons.get().episodes.order_by("number"))
    assert [e.number for e in episodes] == [1, 2]
    first, second = episodes
    assert first.videos.get().file_path == recording.segments.get(index=1).file_path
    # An flv: played from its mp4 remux (tests/livefeed/test_playback.py).
    assert second.videos.get().get_stream_url() == f"/live/segments/{recording.segments.get(index=2).pk}/playable.mp4"
    assert list(first.danmaku.values_list("offset_ms", "text", "mode")) == [(800, "hello at 0.8", "scroll")]
    assert list(second.danmaku.values_list("offset_ms", "text", "color", "mode")) == [
        (1_200, "second part at 1.2", "#ffffff", "scroll"), (1_500, "viewer 2 ▸ Rose ×2", "#ffd700", "bottom")]

    # Again (a repeated hook): nothing doubles, and what users said while watching stays.
    film_services.danmaku_post(user=alice, title=title, text="watching it back", offset_ms=500, episode_id=first.pk)
    recordings.recording_finish(recording_id=recording.pk)
    assert Title.objects.filter(kind="recording").count() == 1
    assert first.danmaku.count() == 2
    assert recordings.watch_titles([recording.pk]) == {recording.pk: title.pk}


def test_a_recording_in_progress_can_be_watched_as_its_segments_are_ready(recording):
    from livefeed import recordings

    Recording.objects.filter(pk=recording.pk).update(ended_at=None, state="recording")
    Segment.objects.filter(recording=recording, index=2).update(state="recording")
    first = recording.segments.get(index=1)
    Segment.objects.filter(pk=first.pk).update(state="processing")
    recordings.recording_segment_ready(segment_id=first.pk)  # not ready after all: no title for nothing
    assert not Title.objects.exists()
    Segment.objects.filter(pk=first.pk).update(state="done")
    recordings.recording_segment_ready(segment_id=first.pk)
    title = Title.objects.get(kind="recording")
    assert list(title.seasons.get().episodes.values_list("number", flat=True)) == [1]
    assert title.videos.count() == 1
    Segment.objects.filter(recording=recording, index=2).update(state="done")
    recordings.recording_segment_ready(segment_id=recording.segments.get(index=2).pk)
    assert list(title.seasons.get().episodes.order_by("number").values_list("number", flat=True)) == [1, 2]


def test_the_recording_calls_are_in_the_openapi_docs(client):
    schema = client.get("/api/openapi.json").json()
    paths = schema["paths"]
    assert "patch" in paths["/api/live/channels/{channel_id}"]
    assert "get" in paths["/api/live/channels/{channel_id}/recordings"]
    assert {"get", "delete"} <= set(paths["/api/live/recordings/{recording_id}"])
    body = paths["/api/live/channels/{channel_id}"]["patch"]["requestBody"]["content"]["application/json"]["schema"]
    settings_schema = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert {"record", "segment_s", "segment_mb", "quality", "container", "output_dir", "filename_template",
            "postprocess"} == set(settings_schema["properties"])


@pytest.mark.django_db(transaction=True)
def test_two_hooks_at_once_make_one_title(recording):
    import threading

    from django.db import connection

    from livefeed import recordings

    barrier = threading.Barrier(4)
    errors = []

    def hook():
        try:
            barrier.wait()
            recordings.recording_watch_sync(recording_id=recording.pk)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=hook) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    title = Title.objects.get(kind="recording")
    assert title.seasons.get().episodes.count() == 2
    assert title.danmaku.count() == 3


def test_the_page_deletes_an_ended_recording_for_its_owner_only(alice, bob, recording):
    files = [Path(s.file_path) for s in recording.segments.all()]
    other = Client()
    other.force_login(bob)
    refused = other.post(f"/live/recordings/{recording.pk}/delete", follow=True)
    assert "Only the user who added this channel" in refused.content.decode()
    assert Recording.objects.filter(pk=recording.pk).exists()
    owner = Client()
    owner.force_login(alice)
    done = owner.post(f"/live/recordings/{recording.pk}/delete")
    assert (done.status_code, done["Location"]) == (302, f"/live/{recording.channel_id}/")
    assert not Recording.objects.filter(pk=recording.pk).exists()
    assert not any(path.exists() for path in files)
    assert owner.post(f"/live/recordings/{recording.pk}/delete").status_code == 404


def test_the_end_of_a_recording_adds_messages_stored_after_their_segment_was_ready(recording, session):
    from livefeed import recordings

    first = recording.segments.get(index=1)
    recordings.recording_segment_ready(segment_id=first.pk)
    episode = Title.objects.get(kind="recording").seasons.get().episodes.get(number=1)
    assert list(episode.danmaku.values_list("text", flat=True)) == ["hello at 0.8"]
    messages_store(channel_id=session.channel_id, session_id=session.pk,
                   messages=[chat("flushed late", at_ms=BASE_MS + 1_900)])
    recordings.recording_finish(recording_id=recording.pk)
    assert list(episode.danmaku.values_list("offset_ms", "text")) == [(800, "hello at 0.8"), (1_900, "flushed late")]


def test_a_chat_colour_becomes_the_danmaku_colour(recording, session):
    from livefeed import recordings

    coloured = chat("orange words", at_ms=BASE_MS + 1_200)
    coloured.extra = {"color": 0xFF8800}
    messages_store(channel_id=session.channel_id, session_id=session.pk, messages=[coloured])
    recordings.recording_finish(recording_id=recording.pk)
    episode = Title.objects.get(kind="recording").seasons.get().episodes.get(number=1)
    assert list(episode.danmaku.values_list("text", "color")) == [("hello at 0.8", "#ffffff"),
                                                                   ("orange words", "#ff8800")]
