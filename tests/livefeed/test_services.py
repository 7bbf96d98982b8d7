"""Live channel services: adding by URL, who may follow and remove, state transitions
(stored and pushed), leases, sessions and gaps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from livefeed import services
from livefeed.models import LiveChannel, LiveMessage, LiveSession, LiveStateChange
from livefeed.services import LiveError, live_group
from livefeed.storage import messages_store
from tests.livefeed.conftest import chat

pytestmark = pytest.mark.django_db


# --- adding and removing ------------------------------------------------------------------


def test_adding_a_room_url_creates_the_channel_once(alice, bob):
    channel, created = services.channel_add(user=alice, url="https://live.bilibili.com/21452505?spm=x")
    assert created
    assert (channel.platform, channel.ref, channel.added_by, channel.desired, channel.state) == (
        "bilibili", "21452505", alice, "stop", "idle")
    again, created_again = services.channel_add(user=bob, url="live.bilibili.com/21452505")
    assert again.pk == channel.pk
    assert not created_again
    assert LiveChannel.objects.count() == 1


@pytest.mark.parametrize("url", ["https://example.org/live/1", "not a url", "", "https://live.bilibili.com/"])
def test_a_url_that_is_not_a_room_is_refused_naming_url(alice, url):
    with pytest.raises(LiveError) as error:
        services.channel_add(user=alice, url=url)
    assert error.value.code == "invalid"
    assert error.value.field == "url"
    assert error.value.message.startswith("url:")
    assert error.value.http_status == 400
    assert not LiveChannel.objects.exists()


def test_only_the_adder_or_staff_may_remove_a_channel(channel, session, bob, staff):
    messages_store(channel_id=channel.pk, session_id=session.pk, messages=[chat("hi"), chat("there")])
    with pytest.raises(LiveError) as error:
        services.channel_remove(channel_id=channel.pk, actor=bob)
    assert error.value.code == "forbidden"
    assert LiveChannel.objects.filter(pk=channel.pk).exists()
    services.channel_remove(channel_id=channel.pk, actor=staff)
    assert not LiveChannel.objects.filter(pk=channel.pk).exists()
    assert not LiveMessage.objects.exists()
    assert not LiveSession.objects.exists()


def test_removing_deletes_messages_in_batches(channel, session):
    from livefeed import storage

    messages_store(channel_id=channel.pk, session_id=session.pk, messages=[chat(f"m{n}") for n in range(25)])
    assert storage.messages_delete(channel_id=channel.pk, batch=10) == 25
    assert not LiveMessage.objects.exists()


def test_a_missing_channel_is_not_found(alice):
    with pytest.raises(LiveError) as error:
        services.channel_follow(channel_id=999_999, actor=alice)
    assert error.value.code == "not_found"


# --- follow / unfollow --------------------------------------------------------------------


def test_follow_is_for_the_adder_and_staff_only(channel, bob, staff, published):
    with pytest.raises(LiveError) as error:
        services.channel_follow(channel_id=channel.pk, actor=bob)
    assert error.value.code == "forbidden"
    assert LiveChannel.objects.get(pk=channel.pk).desired == "stop"
    with published.on_commit():
        services.channel_follow(channel_id=channel.pk, actor=staff)
    assert LiveChannel.objects.get(pk=channel.pk).desired == "follow"
    assert [topic for topic, _ in published.of_type("live.status")] == [live_group(channel.pk)]


def test_follow_and_unfollow_are_idempotent(channel, alice, published):
    with published.on_commit():
        first = services.channel_follow(channel_id=channel.pk, actor=alice)
        second = services.channel_follow(channel_id=channel.pk, actor=alice)
    assert first.desired == second.desired == "follow"
    assert len(published.of_type("live.status")) == 1
    event = published.of_type("live.status")[0][1]
    assert event["desired"] == "follow"
    assert event["channel_id"] == channel.pk
    with published.on_commit():
        services.channel_unfollow(channel_id=channel.pk, actor=alice)
        services.channel_unfollow(channel_id=channel.pk, actor=alice)
    assert LiveChannel.objects.get(pk=channel.pk).desired == "stop"
    assert [event["desired"] for _, event in published.of_type("live.status")] == ["follow", "stop"]


# --- state --------------------------------------------------------------------------------


def test_every_transition_is_stored_and_pushed_after_commit(channel, session, published):
    with published.on_commit():
        assert services.channel_transition(channel_id=channel.pk, to="starting", reason="following")
        assert services.channel_transition(channel_id=channel.pk, to="running", reason="connected")
        assert services.channel_transition(channel_id=channel.pk, to="reconnecting", reason="The socket dropped.")
        assert published == []  # nothing before commit
    changes = list(LiveStateChange.objects.filter(channel=channel).order_by("id")
                   .values_list("from_state", "to_state", "reason", "session_id"))
    assert changes == [("idle", "starting", "following", session.pk), ("starting", "running", "connected", session.pk),
                       ("running", "reconnecting", "The socket dropped.", session.pk)]
    events = [event for _, event in published.of_type("live.status")]
    assert [event["reason"] for event in events] == ["following", "connected", "The socket dropped."]
    assert all(topic == live_group(channel.pk) for topic, _ in published)
    channel.refresh_from_db()
    assert (channel.state, channel.reconnects, channel.last_error) == ("reconnecting", 1, "The socket dropped.")
    assert events[-1]["state"] == "reconnecting"
    assert events[-1]["session_id"] == session.pk


def test_a_transition_from_an_unexpected_state_changes_nothing(channel, published):
    with published.on_commit():
        assert not services.channel_transition(channel_id=channel.pk, to="running", expected_from="starting")
        assert not services.channel_transition(channel_id=channel.pk, to="idle")  # already idle
    assert not LiveStateChange.objects.exists()
    assert published == []
    assert services.channel_transition(channel_id=channel.pk, to="starting", expected_from="idle")
    assert LiveChannel.objects.get(pk=channel.pk).state == "starting"


def test_unknown_states_are_refused(channel):
    with pytest.raises(LiveError) as error:
        services.channel_transition(channel_id=channel.pk, to="flying")
    assert error.value.field == "to"


def test_running_resets_failures_and_error_keeps_the_reason(channel):
    services.channel_transition(channel_id=channel.pk, to="starting")
    assert services.channel_failure(channel_id=channel.pk) == 1
    assert services.channel_failure(channel_id=channel.pk) == 2
    services.channel_transition(channel_id=channel.pk, to="running")
    assert LiveChannel.objects.get(pk=channel.pk).consecutive_failures == 0
    reason = "Douyin refused the connection: a signer is needed, see LIVEFEED_DOUYIN_SIGNER"
    services.channel_follow(channel_id=channel.pk, actor=channel.added_by)
    services.channel_settle(channel_id=channel.pk, to="error", reason=reason)
    channel.refresh_from_db()
    assert (channel.state, channel.desired, channel.last_error) == ("error", "stop", reason)


def test_waiting_records_the_next_check(channel):
    at = timezone.now() + timedelta(seconds=60)
    services.channel_transition(channel_id=channel.pk, to="waiting", reason="The room is offline.", next_check_at=at)
    assert LiveChannel.objects.get(pk=channel.pk).next_check_at == at


def test_malformed_frames_are_counted_per_kind(channel):
    services.channel_count_malformed(channel_id=channel.pk, kinds={"gzip": 2, "protobuf": 1})
    services.channel_count_malformed(channel_id=channel.pk, kinds={"gzip": 1})
    channel.refresh_from_db()
    assert channel.malformed_total == 4
    assert channel.malformed_by_kind == {"gzip": 3, "protobuf": 1}


# --- leases -------------------------------------------------------------------------------


def test_a_live_lease_cannot_be_taken_over(channel):
    token = services.lease_take(channel_id=channel.pk, owner="worker-a:1", ttl_s=30)
    assert token
    assert services.lease_take(channel_id=channel.pk, owner="worker-b:2", ttl_s=30) is None
    assert services.lease_renew(channel_id=channel.pk, token=token, ttl_s=30)
    held = LiveChannel.objects.get(pk=channel.pk)
    assert held.lease_owner == "worker-a:1"
    assert timezone.now() + timedelta(seconds=20) < held.lease_expires_at < timezone.now() + timedelta(seconds=40)


def test_a_lease_runs_out_on_the_database_clock(channel):
    import time

    assert services.lease_take(channel_id=channel.pk, owner="worker-a:1", ttl_s=1)
    assert services.lease_take(channel_id=channel.pk, owner="worker-b:2", ttl_s=30) is None
    time.sleep(1.5)
    assert services.lease_take(channel_id=channel.pk, owner="worker-b:2", ttl_s=30)


def test_an_expired_lease_is_taken_over_and_the_old_holder_loses_it(channel):
    old = services.lease_take(channel_id=channel.pk, owner="worker-a:1", ttl_s=30)
    # worker-a was killed: it stopped renewing and its lease ran out.
    LiveChannel.objects.filter(pk=channel.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    new = services.lease_take(channel_id=channel.pk, owner="worker-b:2", ttl_s=30)
    assert new
    assert new != old
    assert not services.lease_renew(channel_id=channel.pk, token=old, ttl_s=30)
    assert not services.lease_release(channel_id=channel.pk, token=old)
    assert LiveChannel.objects.get(pk=channel.pk).lease_owner == "worker-b:2"
    assert services.lease_release(channel_id=channel.pk, token=new)
    assert services.lease_take(channel_id=channel.pk, owner="worker-c:3", ttl_s=30)


def test_an_empty_token_never_renews_or_releases(channel):
    assert not services.lease_renew(channel_id=channel.pk, token="", ttl_s=30)
    assert not services.lease_release(channel_id=channel.pk, token="")


# --- sessions -----------------------------------------------------------------------------


def test_a_take_over_continues_the_open_session(channel):
    session, created = services.session_open(channel_id=channel.pk, title="Evening show")
    assert created
    assert session.title_at_start == "Evening show"
    same, created_again = services.session_open(channel_id=channel.pk, title="Other")
    assert same.pk == session.pk
    assert not created_again
    assert LiveChannel.objects.get(pk=channel.pk).current_session_id == session.pk


def test_closing_a_session_is_idempotent_and_the_next_broadcast_is_a_new_session(channel, published):
    session, _ = services.session_open(channel_id=channel.pk)
    with published.on_commit():
        assert services.session_close(session_id=session.pk, reason="ended")
        assert not services.session_close(session_id=session.pk, reason="stopped")
    session.refresh_from_db()
    assert session.end_reason == "ended"
    assert session.ended_at is not None
    assert LiveChannel.objects.get(pk=channel.pk).current_session_id is None
    assert len(published.of_type("live.status")) == 1
    following, created = services.session_open(channel_id=channel.pk)
    assert created
    assert following.pk != session.pk


def test_a_bad_end_reason_is_refused(channel):
    session, _ = services.session_open(channel_id=channel.pk)
    with pytest.raises(LiveError) as error:
        services.session_close(session_id=session.pk, reason="bored")
    assert error.value.field == "reason"


def test_gaps_are_recorded_once_in_order(session):
    services.session_gap_add(session_id=session.pk, start_ms=5_000, end_ms=9_000)
    services.session_gap_add(session_id=session.pk, start_ms=1_000, end_ms=2_000)
    services.session_gap_add(session_id=session.pk, start_ms=5_000, end_ms=9_000)
    session.refresh_from_db()
    assert session.gaps == [[1_000, 2_000], [5_000, 9_000]]
    with pytest.raises(LiveError) as error:
        services.session_gap_add(session_id=session.pk, start_ms=9_000, end_ms=1_000)
    assert error.value.field == "end_ms"
