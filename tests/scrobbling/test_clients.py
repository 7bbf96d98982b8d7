"""The Last.fm and ListenBrainz clients against local fakes that speak the real protocols."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from scrobbling.clients import AuthExpired, GiveUp, ItemResult, Listen, NotAllowed, RetryLater, registry
from scrobbling.clients.lastfm import LastfmClient
from scrobbling.clients.listenbrainz import ListenBrainzClient
from tests.scrobbling.fakes import lastfm_signature

MBID = "8f3471b5-7e6a-48da-86a9-c1c07a0f47ae"


def make_listen(index: int = 0, *, ago_s: float = 3600, **fields) -> Listen:
    """A listen that started ago_s seconds ago (minus index minutes, so batches stay in order)."""
    played_at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=ago_s) + timedelta(minutes=index)
    fields.setdefault("artist", f"Artist {index}")
    fields.setdefault("title", f"Song {index}")
    return Listen(played_at=played_at, **fields)


@pytest.fixture
def lastfm(fake_lastfm, settings):
    client = LastfmClient(api_root=settings.LASTFM_API_ROOT, api_key=settings.LASTFM_API_KEY,
                          api_secret=settings.LASTFM_API_SECRET, timeout_s=5)
    yield client
    client.close()


@pytest.fixture
def session_key(fake_lastfm) -> str:
    return fake_lastfm.add_session("lfm_user")


@pytest.fixture
def listenbrainz(fake_listenbrainz, settings):
    client = ListenBrainzClient(api_root=settings.LISTENBRAINZ_API_ROOT, timeout_s=5)
    yield client
    client.close()


@pytest.fixture
def lb_token(fake_listenbrainz) -> str:
    return fake_listenbrainz.add_user("lb_user")


# --- Last.fm: signature and auth ----------------------------------------------------------


def test_api_sig_matches_known_vectors():
    client = LastfmClient(api_root="http://127.0.0.1:9/2.0/", api_key="unused",
                          api_secret="425b55975eed76058ac220b7b2e0a026")
    params = {"method": "auth.getSession", "api_key": "b25b959554ed76058ac220b7b2e0a026",
              "token": "CG2i4Jx7qV3bPBPzVIBkYgyk2vVCBCf0", "format": "json"}
    assert client.sign(params) == "dbd3d5806e0b3ca230c1912135276723"

    client = LastfmClient(api_root="http://127.0.0.1:9/2.0/", api_key="unused", api_secret="secret")
    params = {"track[0]": "Sóng", "artist[0]": "Ärtist", "timestamp[0]": "1700000000", "album[0]": "Ünïcode Album",
              "method": "track.scrobble", "sk": "SK", "api_key": "k", "format": "json", "callback": "cb"}
    assert client.sign(params) == "6422590107dfaae89250b401a4ca8531"
    assert lastfm_signature(params, "secret") == "6422590107dfaae89250b401a4ca8531"
    client.close()


def test_wrong_secret_is_refused_with_error_13(fake_lastfm, session_key):
    client = LastfmClient(api_root=fake_lastfm.url, api_key=fake_lastfm.api_key, api_secret="not-the-secret")
    with pytest.raises(GiveUp) as caught:
        client.scrobble(session_key, [make_listen()])
    client.close()
    assert caught.value.code == 13
    assert json.loads(caught.value.answer)["error"] == 13
    assert fake_lastfm.scrobbles == {}


def test_an_unknown_api_key_is_the_servers_problem_and_retried_later(fake_lastfm, session_key):
    client = LastfmClient(api_root=fake_lastfm.url, api_key="someone-elses", api_secret=fake_lastfm.api_secret)
    with pytest.raises(RetryLater) as caught:
        client.update_now_playing(session_key, make_listen())
    client.close()
    assert "error 10" in str(caught.value)


def test_web_auth_redirects_with_token_and_get_session_exchanges_it_once(lastfm, fake_lastfm, settings):
    callback = "http://testserver/scrobbling/lastfm/callback/?next=%2Fme%2F"
    page = httpx.get(settings.LASTFM_AUTH_URL, params={"api_key": settings.LASTFM_API_KEY, "cb": callback})
    assert page.status_code == 302
    location = urlsplit(page.headers["Location"])
    query = parse_qs(location.query)
    assert (location.netloc, location.path, query["next"]) == ("testserver", "/scrobbling/lastfm/callback/", ["/me/"])

    name, key = lastfm.get_session(query["token"][0])

    assert name == "lfm_user"
    assert fake_lastfm.sessions[key] == "lfm_user"
    request = fake_lastfm.requests[-1]
    assert (request.method, request.params["method"], request.params["format"]) == ("POST", "auth.getSession", "json")
    with pytest.raises(AuthExpired) as caught:
        lastfm.get_session(query["token"][0])
    assert caught.value.code == 4


def test_get_session_with_unauthorized_token_is_auth_expired(lastfm, fake_lastfm):
    fake_lastfm.tokens["pending-token"] = None
    with pytest.raises(AuthExpired) as caught:
        lastfm.get_session("pending-token")
    assert caught.value.code == 14


def test_fake_auth_page_refuses_unknown_api_key(fake_lastfm):
    page = httpx.get(fake_lastfm.auth_url, params={"api_key": "nope", "cb": "http://testserver/cb/"})
    assert page.status_code == 400
    assert fake_lastfm.tokens == {}


# --- Last.fm: now playing and scrobbles ---------------------------------------------------


def test_update_now_playing_sends_track_details(lastfm, fake_lastfm, session_key):
    listen = make_listen(artist="Ärtist", title="Sóng", album="Albüm", duration_s=214.6, mbid=MBID, track_number=3)
    lastfm.update_now_playing(session_key, listen)

    assert fake_lastfm.now_playing["lfm_user"] == {
        "artist": "Ärtist", "track": "Sóng", "album": "Albüm", "duration": "215", "trackNumber": "3", "mbid": MBID}
    params = fake_lastfm.requests[-1].params
    assert "timestamp" not in params
    assert params["sk"] == session_key


def test_update_now_playing_leaves_out_unknown_fields(lastfm, fake_lastfm, session_key):
    lastfm.update_now_playing(session_key, make_listen(title="Bare"))
    assert fake_lastfm.now_playing["lfm_user"] == {"artist": "Artist 0", "track": "Bare"}


@pytest.mark.parametrize("count", [1, 2, 50])
def test_scrobble_batch_is_stored_in_order_with_indexed_params(lastfm, fake_lastfm, session_key, count):
    listens = [make_listen(index, ago_s=86400, album=f"Album {index}") for index in range(count)]

    results = lastfm.scrobble(session_key, listens)

    assert results == [ItemResult(accepted=True)] * count
    stored = fake_lastfm.scrobbles["lfm_user"]
    assert [(item["artist"], item["track"], item["album"], item["timestamp"]) for item in stored] == [
        (listen.artist, listen.title, listen.album, int(listen.played_at.timestamp())) for listen in listens]
    params = fake_lastfm.requests[-1].params
    assert "artist" not in params
    assert params[f"artist[{count - 1}]"] == f"Artist {count - 1}"
    assert params[f"timestamp[{count - 1}]"] == str(int(listens[-1].played_at.timestamp()))


@pytest.mark.parametrize("count", [0, 51])
def test_scrobble_takes_one_to_fifty_listens(lastfm, fake_lastfm, session_key, count):
    with pytest.raises(ValueError, match="1 to 50"):
        lastfm.scrobble(session_key, [make_listen(index) for index in range(count)])
    assert fake_lastfm.requests == []


def test_scrobble_refuses_naive_datetimes(lastfm, session_key):
    naive = Listen(artist="A", title="T", played_at=datetime(2024, 1, 1, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        lastfm.scrobble(session_key, [naive])


def test_too_old_and_too_new_timestamps_come_back_ignored(lastfm, fake_lastfm, session_key):
    listens = [make_listen(0), make_listen(1, ago_s=15 * 86400), make_listen(2, ago_s=-2 * 86400)]

    results = lastfm.scrobble(session_key, listens)

    assert [(result.accepted, result.code) for result in results] == [(True, None), (False, 3), (False, 4)]
    assert results[1].message
    assert [item["track"] for item in fake_lastfm.scrobbles["lfm_user"]] == ["Song 0"]


def test_daily_limit_comes_back_per_item(lastfm, fake_lastfm, session_key):
    fake_lastfm.daily_limit = 1
    results = lastfm.scrobble(session_key, [make_listen(0), make_listen(1)])
    assert [(result.accepted, result.code) for result in results] == [(True, None), (False, 5)]


def test_user_name_checks_a_session_key(lastfm, fake_lastfm, session_key):
    assert lastfm.user_name(session_key) == "lfm_user"
    with pytest.raises(AuthExpired):
        lastfm.user_name("not-a-session")


def test_unknown_session_key_is_auth_expired(lastfm):
    with pytest.raises(AuthExpired) as caught:
        lastfm.scrobble("revoked-session-key", [make_listen()])
    assert caught.value.code == 9
    assert caught.value.status == 403
    assert "revoked-session-key" not in str(caught.value)
    assert "revoked-session-key" not in caught.value.answer


def test_missing_parameter_is_give_up_with_the_answer(lastfm, fake_lastfm, session_key):
    with pytest.raises(GiveUp) as caught:
        lastfm.scrobble(session_key, [make_listen(artist="")])
    assert caught.value.code == 6
    assert caught.value.status == 400
    assert json.loads(caught.value.answer) == {"error": 6, "message": "Invalid parameters - Your request is missing a required parameter"}


# --- Last.fm: transient failures ----------------------------------------------------------


def test_http_503_is_retry_later_and_the_next_call_goes_through(lastfm, fake_lastfm, session_key):
    fake_lastfm.fail_next(1, status=503)
    with pytest.raises(RetryLater) as caught:
        lastfm.scrobble(session_key, [make_listen()])
    assert caught.value.status == 503
    assert "Unavailable" in caught.value.answer

    assert lastfm.scrobble(session_key, [make_listen()]) == [ItemResult(accepted=True)]


def test_rate_limit_honours_retry_after_seconds(lastfm, fake_lastfm, session_key):
    fake_lastfm.fail_next(1, status=429, error_code=29, headers={"Retry-After": "2"})
    with pytest.raises(RetryLater) as caught:
        lastfm.update_now_playing(session_key, make_listen())
    assert (caught.value.status, caught.value.retry_after_s) == (429, 2.0)


def test_retry_after_as_http_date(lastfm, fake_lastfm, session_key):
    when = datetime.now(UTC) + timedelta(seconds=120)
    fake_lastfm.fail_next(1, status=503, headers={"Retry-After": format_datetime(when, usegmt=True)})
    with pytest.raises(RetryLater) as caught:
        lastfm.scrobble(session_key, [make_listen()])
    assert 100 < caught.value.retry_after_s <= 121


@pytest.mark.parametrize(("code", "status"), [(11, None), (16, 200), (29, 429)])
def test_service_busy_codes_are_retry_later(lastfm, fake_lastfm, session_key, code, status):
    fake_lastfm.fail_next(1, error_code=code, status=status)
    with pytest.raises(RetryLater) as caught:
        lastfm.scrobble(session_key, [make_listen()])
    assert f"error {code}" in str(caught.value)
    assert json.loads(caught.value.answer)["error"] == code


def test_scripted_error_9_is_auth_expired(lastfm, fake_lastfm, session_key):
    fake_lastfm.fail_next(1, error_code=9)
    with pytest.raises(AuthExpired):
        lastfm.update_now_playing(session_key, make_listen())


def test_slow_answer_is_retry_later_after_the_timeout(fake_lastfm, session_key):
    fake_lastfm.delay_s = 2.0
    client = LastfmClient(api_root=fake_lastfm.url, api_key=fake_lastfm.api_key,
                          api_secret=fake_lastfm.api_secret, timeout_s=0.2)
    started = time.monotonic()
    with pytest.raises(RetryLater, match="no answer within"):
        client.scrobble(session_key, [make_listen()])
    client.close()
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_retry_later(closed_url):
    client = LastfmClient(api_root=f"{closed_url}/2.0/", api_key="k", api_secret="s", timeout_s=2)
    with pytest.raises(RetryLater) as caught:
        client.scrobble("sk", [make_listen()])
    client.close()
    assert caught.value.status is None


def test_errors_never_carry_the_secret_or_session_key(lastfm, fake_lastfm, session_key):
    fake_lastfm.fail_next(1, error_code=13, status=403)
    with pytest.raises(GiveUp) as caught:
        lastfm.scrobble(session_key, [make_listen()])
    for text in (str(caught.value), caught.value.answer, repr(lastfm)):
        assert fake_lastfm.api_secret not in text
        assert session_key not in text


def test_fake_lastfm_refuses_scrobbles_by_get_and_without_timestamp(fake_lastfm, session_key):
    params = {"method": "track.scrobble", "api_key": fake_lastfm.api_key, "sk": session_key,
              "artist[0]": "A", "track[0]": "T"}
    params = {**params, "api_sig": lastfm_signature(params, fake_lastfm.api_secret), "format": "json"}
    assert httpx.post(fake_lastfm.url, data=params).json()["error"] == 6
    assert httpx.get(f"{fake_lastfm.url}?{urlencode(params)}").json()["error"] == 3
    assert fake_lastfm.scrobbles == {}


def test_scrobble_counts_without_a_list_are_trusted_when_all_were_accepted(lastfm, fake_lastfm, session_key):
    fake_lastfm.fail_next(1, status=200, body={"scrobbles": {"@attr": {"accepted": "2", "ignored": "0"}}})
    results = lastfm.scrobble(session_key, [make_listen(0), make_listen(1)])
    assert results == [ItemResult(accepted=True)] * 2


def test_scrobble_counts_that_do_not_say_which_were_ignored_are_give_up(lastfm, fake_lastfm, session_key):
    fake_lastfm.fail_next(1, status=200, body={"scrobbles": {"@attr": {"accepted": 1, "ignored": 1}}})
    with pytest.raises(GiveUp, match="accepted 1 of 2 without saying which"):
        lastfm.scrobble(session_key, [make_listen(0), make_listen(1)])


# --- ListenBrainz -------------------------------------------------------------------------


def test_validate_token_returns_the_user_name(listenbrainz, fake_listenbrainz, lb_token):
    assert listenbrainz.validate_token(lb_token) == "lb_user"
    request = fake_listenbrainz.requests[-1]
    assert (request.method, request.path, request.headers["authorization"]) == (
        "GET", "/1/validate-token", f"Token {lb_token}")


def test_invalid_token_is_auth_expired(listenbrainz):
    with pytest.raises(AuthExpired) as caught:
        listenbrainz.validate_token("not-a-token")
    assert json.loads(caught.value.answer)["valid"] is False


def test_one_listen_is_single_and_carries_full_metadata(listenbrainz, fake_listenbrainz, lb_token):
    listen = make_listen(artist="Ärtist", title="Sóng", album="Albüm", duration_s=214.6, mbid=MBID, track_number=3)
    listenbrainz.submit(lb_token, [listen])

    assert fake_listenbrainz.requests[-1].json["listen_type"] == "single"
    assert fake_listenbrainz.listens["lb_user"] == [{
        "listened_at": int(listen.played_at.timestamp()),
        "track_metadata": {
            "artist_name": "Ärtist", "track_name": "Sóng", "release_name": "Albüm",
            "additional_info": {"duration": 215, "recording_mbid": MBID, "tracknumber": 3,
                                "submission_client": "Chorus", "submission_client_version": "1"},
        },
    }]


def test_several_listens_are_an_import_in_order(listenbrainz, fake_listenbrainz, lb_token):
    listens = [make_listen(index) for index in range(3)]
    listenbrainz.submit(lb_token, listens)

    assert fake_listenbrainz.requests[-1].json["listen_type"] == "import"
    stored = fake_listenbrainz.listens["lb_user"]
    assert [(item["listened_at"], item["track_metadata"]["track_name"]) for item in stored] == [
        (int(listen.played_at.timestamp()), listen.title) for listen in listens]
    assert "release_name" not in stored[0]["track_metadata"]
    assert "duration" not in stored[0]["track_metadata"]["additional_info"]


def test_playing_now_has_no_listened_at(listenbrainz, fake_listenbrainz, lb_token):
    listenbrainz.playing_now(lb_token, make_listen(title="Now"))

    document = fake_listenbrainz.requests[-1].json
    assert document["listen_type"] == "playing_now"
    assert document["payload"] == [fake_listenbrainz.playing_now["lb_user"]]
    assert "listened_at" not in document["payload"][0]
    assert fake_listenbrainz.playing_now["lb_user"]["track_metadata"]["track_name"] == "Now"
    assert fake_listenbrainz.listens == {}


def test_a_thousand_listens_go_in_one_request(listenbrainz, fake_listenbrainz, lb_token):
    listens = [make_listen(index, ago_s=86400) for index in range(1000)]
    listenbrainz.submit(lb_token, listens)
    assert len(fake_listenbrainz.listens["lb_user"]) == 1000
    assert len(fake_listenbrainz.requests) == 1


@pytest.mark.parametrize("count", [0, 1001])
def test_submit_takes_one_to_a_thousand_listens(listenbrainz, fake_listenbrainz, lb_token, count):
    with pytest.raises(ValueError, match="1 to 1000"):
        listenbrainz.submit(lb_token, [make_listen(index, ago_s=86400) for index in range(count)])
    assert fake_listenbrainz.requests == []


def test_exact_resubmit_is_ignored(listenbrainz, fake_listenbrainz, lb_token):
    listen = make_listen()
    listenbrainz.submit(lb_token, [listen])
    listenbrainz.submit(lb_token, [listen])
    listenbrainz.submit(lb_token, [make_listen(ago_s=60)])
    assert len(fake_listenbrainz.listens["lb_user"]) == 2


def test_unknown_token_on_submit_is_auth_expired(listenbrainz, fake_listenbrainz):
    with pytest.raises(AuthExpired) as caught:
        listenbrainz.submit("revoked-token", [make_listen()])
    assert caught.value.status == 401
    assert "revoked-token" not in str(caught.value)
    assert fake_listenbrainz.listens == {}


def test_bad_listen_is_give_up_with_the_answer(listenbrainz, lb_token):
    with pytest.raises(GiveUp) as caught:
        listenbrainz.submit(lb_token, [make_listen(artist="")])
    assert caught.value.status == 400
    assert json.loads(caught.value.answer) == {
        "code": 400, "error": "JSON document does not contain required track_metadata.artist_name."}


def test_rate_limit_honours_x_ratelimit_reset_in(listenbrainz, fake_listenbrainz, lb_token):
    fake_listenbrainz.fail_next(1, status=429, headers={"X-RateLimit-Reset-In": "1", "X-RateLimit-Remaining": "0"})
    with pytest.raises(RetryLater) as caught:
        listenbrainz.submit(lb_token, [make_listen()])
    assert (caught.value.status, caught.value.retry_after_s) == (429, 1.0)

    listenbrainz.submit(lb_token, [make_listen()])
    assert len(fake_listenbrainz.listens["lb_user"]) == 1


def test_listenbrainz_server_error_is_retry_later(listenbrainz, fake_listenbrainz, lb_token):
    fake_listenbrainz.fail_next(1, status=502, body="<html>Bad Gateway</html>")
    with pytest.raises(RetryLater) as caught:
        listenbrainz.playing_now(lb_token, make_listen())
    assert caught.value.answer == "<html>Bad Gateway</html>"


def test_listenbrainz_slow_answer_is_retry_later(fake_listenbrainz, lb_token):
    fake_listenbrainz.delay_s = 2.0
    client = ListenBrainzClient(api_root=fake_listenbrainz.url, timeout_s=0.2)
    with pytest.raises(RetryLater, match="no answer within"):
        client.submit(lb_token, [make_listen()])
    client.close()


def test_listenbrainz_connection_refused_is_retry_later(closed_url):
    client = ListenBrainzClient(api_root=closed_url, timeout_s=2)
    with pytest.raises(RetryLater):
        client.validate_token("token")
    client.close()


def test_a_user_chosen_server_on_this_machine_is_not_allowed(fake_listenbrainz, lb_token, settings):
    settings.OUTBOUND_ALLOW_PRIVATE = []
    client = ListenBrainzClient(api_root=fake_listenbrainz.url, timeout_s=2, user_chosen=True)
    with pytest.raises(NotAllowed, match="private address"):
        client.submit(lb_token, [make_listen()])
    client.close()
    assert fake_listenbrainz.requests == []


def test_a_malformed_stored_server_address_is_not_allowed_rather_than_a_crash():
    client = ListenBrainzClient(api_root="http://[::1", timeout_s=2, user_chosen=True)
    with pytest.raises(NotAllowed, match="not valid"):
        client.validate_token("token")
    client.close()


def test_a_saved_token_that_cannot_be_sent_is_auth_expired(listenbrainz, fake_listenbrainz):
    with pytest.raises(AuthExpired, match="characters a token cannot have"):
        listenbrainz.submit("jeton-été", [make_listen()])
    assert fake_listenbrainz.requests == []


def _lb_listen(**overrides) -> dict:
    listen = {"listened_at": int(time.time()) - 60, "track_metadata": {"artist_name": "A", "track_name": "T"}}
    return {**listen, **overrides}


@pytest.mark.parametrize(("document", "error"), [
    (b"{not json", "Cannot parse JSON document"),
    ({"listen_type": "bogus", "payload": [_lb_listen()]}, "valid listen_type"),
    ({"listen_type": "import", "payload": {}}, "should be a list"),
    ({"listen_type": "import", "payload": [_lb_listen()] * 1001}, "more than 1000"),
    ({"listen_type": "single", "payload": [_lb_listen(), _lb_listen()]}, "exactly one listen"),
    ({"listen_type": "import", "payload": [{"track_metadata": {"artist_name": "A", "track_name": "T"}}]},
     "listened_at"),
    ({"listen_type": "single", "payload": [_lb_listen(track_metadata={"artist_name": "A"})]}, "track_name"),
    ({"listen_type": "playing_now", "payload": [_lb_listen()]}, "must not contain listened_at"),
    ({"listen_type": "single", "payload": [_lb_listen(track_metadata={
        "artist_name": "A", "track_name": "T", "additional_info": {"duration": 200, "duration_ms": 200000}})]},
     "both duration and duration_ms"),
])
def test_fake_listenbrainz_refuses_what_the_real_one_refuses(fake_listenbrainz, lb_token, document, error):
    content = document if isinstance(document, bytes) else json.dumps(document).encode()
    answer = httpx.post(f"{fake_listenbrainz.url}/1/submit-listens", content=content,
                        headers={"Authorization": f"Token {lb_token}", "Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.json()["code"] == 400
    assert error in answer.json()["error"]
    assert fake_listenbrainz.listens == {}



def test_the_batch_setting_only_lowers_what_the_protocol_takes(settings):
    lastfm, listenbrainz = registry.get("lastfm"), registry.get("listenbrainz")
    settings.SCROBBLING_LASTFM_BATCH = settings.SCROBBLING_LISTENBRAINZ_BATCH = None
    assert (lastfm.batch_size(), listenbrainz.batch_size()) == (50, 1000)
    settings.SCROBBLING_LASTFM_BATCH, settings.SCROBBLING_LISTENBRAINZ_BATCH = 7, 100
    assert (lastfm.batch_size(), listenbrainz.batch_size()) == (7, 100)
    settings.SCROBBLING_LASTFM_BATCH, settings.SCROBBLING_LISTENBRAINZ_BATCH = 500, 5000
    assert (lastfm.batch_size(), listenbrainz.batch_size()) == (50, 1000)
