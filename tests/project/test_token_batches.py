"""Tokens looked up together (the handshakes of a reconnect storm) cost one query and one
write, and each gets the answer it would have got alone."""

import pytest

from project.accounts import services
from project.accounts.models import ApiToken

pytestmark = pytest.mark.django_db


def test_many_tokens_are_checked_in_one_query_and_one_write(alice, bob, django_assert_num_queries):
    _, alice_raw = services.token_create(user=alice, name="laptop")
    _, bob_raw = services.token_create(user=bob, name="phone")
    revoked, revoked_raw = services.token_create(user=bob, name="old phone")
    services.token_revoke(user=bob, token_id=revoked.pk)
    raws = [alice_raw, "chorus_not-a-real-token", bob_raw, revoked_raw, None, alice_raw]
    with django_assert_num_queries(2):  # the tokens, then last_used_at of those due
        users = services.tokens_authenticate(raws)
    assert [getattr(user, "username", None) for user in users] == ["alice", None, "bob", None, None, "alice"]
    assert users[0] is not users[5]  # the same token twice: two callers, two user objects
    assert users[0].auth_token_id == users[5].auth_token_id == ApiToken.objects.get(user=alice).pk
    assert ApiToken.objects.filter(last_used_at__isnull=True).values_list("name", flat=True).get() == "old phone"
    with django_assert_num_queries(1):  # used a moment ago: nothing to write
        services.tokens_authenticate([alice_raw, bob_raw])


def test_a_stream_token_counts_in_a_batch_only_for_streams(alice):
    stream_raw = services.stream_token_get(user=alice)
    assert services.tokens_authenticate([stream_raw]) == [None]
    assert services.tokens_authenticate([stream_raw], streams=True)[0].username == "alice"
