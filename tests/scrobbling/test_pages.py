"""The Scrobbles page, the services page (linking Last.fm and ListenBrainz), the paused banner
and the home page's "Listening now"."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.utils import timezone

from rooms import services as room_services
from scrobbling import charts, inputs, links, nowplaying, recording
from scrobbling.models import BufferEntry, DeadLetter, Play, ScrobblerLink
from tests.factories import make_track, shown_room

BAR = re.compile(r'<g class="day[^"]*"><title>([^<]*)</title><rect class="hit"[^>]*/><rect class="bar" '
                 r'x="[^"]*" y="([^"]*)" width="[^"]*" height="([^"]*)"')


@pytest.fixture
def song(db):
    return make_track("Windowlicker", "Aphex Twin", "Windowlicker", duration_s=366.0)


@pytest.fixture
def other_song(db):
    return make_track("Jóga", "Björk", "Homogenic", duration_s=305.0)


def record(user, track, played_at, **kwargs):
    kwargs.setdefault("source", Play.Source.LIBRARY)
    return recording.plays_record(user=user, plays=[inputs.PlayInput.of_track(track, played_at=played_at, **kwargs)])


def unmatched(user, played_at, *, artist="Boards of Canada", title="Roygbiv", client="Pano Scrobbler"):
    return recording.plays_record(user=user, plays=[inputs.PlayInput(
        played_at=played_at, artist_name=artist, track_title=title, source=Play.Source.EXTERNAL, client=client)])


def local_noon(days_ago: int) -> datetime:
    day = timezone.localdate() - timedelta(days=days_ago)
    return timezone.make_aware(datetime.combine(day, datetime.min.time()) + timedelta(hours=12))


def body(response) -> str:
    return response.content.decode()


# --- access ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/scrobbles/", "/scrobbles/recent", "/scrobbles/services/",
                                 "/scrobbles/services/status", "/scrobbling/lastfm/connect",
                                 "/scrobbling/lastfm/callback?token=x"])
def test_scrobbling_pages_send_visitors_to_the_login_page(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("url", ["/scrobbles/services/lastfm/unlink", "/scrobbles/services/lastfm/discard",
                                 "/scrobbles/services/listenbrainz"])
def test_service_actions_need_a_login_and_a_post(client, alice, url):
    link = ScrobblerLink.objects.create(user=alice, service="lastfm", account_name="x", secret="sk")
    assert client.post(url)["Location"].startswith("/accounts/login/")
    client.force_login(alice)
    assert client.get(url).status_code == 405
    assert ScrobblerLink.objects.filter(pk=link.pk).exists()


def test_navigation_marks_scrobbles_on_the_services_page(alice_client):
    page = body(alice_client.get("/scrobbles/services/"))
    assert re.search(r'<a href="/scrobbles/" class="active" aria-current="page">Scrobbles</a>', page)


# --- the Scrobbles page --------------------------------------------------------------


def test_without_plays_the_page_says_what_to_do(alice_client):
    response = alice_client.get("/scrobbles/")
    page = body(response)
    assert response.status_code == 200
    assert "No plays yet" in page
    assert 'href="/library/"' in page
    assert 'href="/rooms/"' in page
    assert "Link Last.fm or ListenBrainz" in page
    assert "http://testserver/apis/listenbrainz</code>" in page
    assert 'href="/accounts/settings/"' in page
    assert "day-chart" not in page


def test_page_shows_summary_top_lists_rooms_and_history(alice_client, alice, song, other_song):
    room = room_services.room_create(owner=alice, name="Friday Mix")
    for minutes in (5, 10, 15):
        record(alice, song, timezone.now() - timedelta(minutes=minutes))
    record(alice, other_song, timezone.now() - timedelta(minutes=20), source=Play.Source.ROOM, room_id=room.pk,
           played_s=240.0)
    unmatched(alice, timezone.now() - timedelta(minutes=30))

    page = body(alice_client.get("/scrobbles/"))

    assert re.search(r"<b>5</b><span>plays in all</span>", page)
    assert re.search(r"<b>1</b><span>not in the library</span>", page)
    # Top tracks: the most played first, linked to the library, its bar full; Jóga at a third.
    tracks = page.split('id="top-tracks-title"')[1].split("</section>")[0]
    assert tracks.index("Windowlicker") < tracks.index("Jóga") < tracks.index("Roygbiv")
    assert f'<a href="/library/tracks/{song.pk}/">Windowlicker</a>' in tracks
    assert 'style="width:100.0%"' in tracks
    assert 'style="width:33.3%"' in tracks
    assert "<a href" not in tracks.split("Roygbiv")[0].rsplit("<li>", 1)[1]  # unmatched: no library link
    albums = page.split('id="top-albums-title"')[1].split("</section>")[0]
    assert f'<a href="/library/albums/{song.album_id}/">Windowlicker</a>' in albums
    # Listening per room.
    rooms = page.split('id="rooms-title"')[1].split("</section>")[0]
    assert f'<a href="/rooms/{room.slug}/">Friday Mix</a>' in rooms
    assert "4 min" in rooms
    # Recent plays with where each came from.
    recent = page.split('id="recent"')[1].split('class="card send-here"')[0]
    assert 'hx-trigger="every 10s"' in recent.split(">")[0]
    assert recent.count("Library player") >= 3
    assert f'in <a href="/rooms/{room.slug}/">Friday Mix</a>' in recent
    assert "Pano Scrobbler" in recent
    assert recent.count(">unmatched</span>") == 1
    assert "No plays yet" not in page


def test_day_chart_draws_90_days_scaled_to_the_busiest(alice_client, alice, song, other_song):
    now = timezone.now()
    for seconds in (1, 2, 3, 4):  # today: 4 plays
        record(alice, song, now - timedelta(seconds=seconds))
    record(alice, song, local_noon(2))  # two days ago: 2 plays
    record(alice, other_song, local_noon(2))
    record(alice, song, local_noon(89))  # the first day of the chart: 1 play
    record(alice, song, local_noon(95))  # before the chart

    page = body(alice_client.get("/scrobbles/"))

    box = page.split('<div class="day-chart-box">')[1].split("</section>")[0]
    svg = re.search(r'<svg class="day-chart".*?</svg>', box, re.S).group(0)
    bars = BAR.findall(svg)
    assert len(bars) == 90
    full = charts.PLOT_HEIGHT
    heights = [float(height) for _, _, height in bars]
    assert heights[-1] == full
    assert heights[-3] == full / 2
    assert heights[0] == full / 4
    assert heights.count(0.0) == 87
    # Bars stand on the baseline.
    assert all(float(y) + float(h) == pytest.approx(charts.BASELINE) for _, y, h in bars)
    today = timezone.localdate()
    assert bars[-1][0] == f"{today:%a} {today.day} {today:%b}: 4 plays"
    first = today - timedelta(days=89)
    assert bars[0][0] == f"{first:%a} {first.day} {first:%b}: 1 play"
    assert bars[1][0].endswith(": 0 plays")
    assert 'role="img"' in svg
    assert re.search(r'aria-label="Plays per day over the last 90 days: 7 plays on 3 days; the most, 4, on ', svg)
    assert '<span class="y-label y-max" aria-hidden="true">4</span>' in box  # the y axis: up to the busiest day
    months = re.findall(r'<span class="x-label" style="left:[\d.]+%" aria-hidden="true">(\w+)</span>', box)
    expected = [f"{today - timedelta(days=d):%b}" for d in range(89, -1, -1) if (today - timedelta(days=d)).day == 1]
    assert months == expected
    assert len(months) >= 2


def test_period_tabs_choose_what_the_top_lists_count(alice_client, alice, song, other_song):
    for minutes in (5, 10):
        record(alice, song, timezone.now() - timedelta(minutes=minutes))
    for days in (40, 41, 42):
        record(alice, other_song, timezone.now() - timedelta(days=days))

    def top_artists(query):
        page = body(alice_client.get("/scrobbles/", query))
        return page, page.split('id="top-artists-title"')[1].split("</section>")[0]

    page, artists = top_artists({"period": "week"})
    assert "Aphex Twin" in artists
    assert "Björk" not in artists
    assert '<a href="?period=week#top" class="active" aria-current="page">Week</a>' in page
    _, artists = top_artists({"period": "year"})
    assert artists.index("Björk") < artists.index("Aphex Twin")  # 3 plays before 2
    page, artists = top_artists({"period": "forever"})  # unknown: the default, a month
    assert "Björk" not in artists
    assert '<a href="?period=month#top" class="active" aria-current="page">Month</a>' in page
    _, artists = top_artists({"period": "all"})
    assert "Björk" in artists


def test_history_pages_back_with_older_links(alice_client, alice, song):
    start = timezone.now() - timedelta(hours=2)
    for index in range(55):
        record(alice, song, start + timedelta(minutes=index))

    page = body(alice_client.get("/scrobbles/", {"period": "year"}))
    recent = page.split('id="recent"')[1]
    assert recent.count("<tr>") == 50 + 1  # plus the header row
    older = re.search(r'href="\?period=year&amp;before=([^"#]+)#recent-title">Older', recent)
    assert older is not None
    assert "Newest" not in recent

    response = alice_client.get(f"/scrobbles/?period=year&before={older.group(1)}")
    recent = body(response).split('id="recent"')[1]
    assert response.status_code == 200
    assert recent.count("<tr>") == 5 + 1
    assert "Older" not in recent
    assert 'href="?period=year#recent-title">← Newest' in recent
    assert "hx-trigger" not in recent.split(">")[0]  # an older page does not poll


def test_a_bad_before_is_a_400_showing_the_newest_plays(alice_client, alice, song):
    record(alice, song, timezone.now() - timedelta(minutes=5))
    response = alice_client.get("/scrobbles/", {"before": "yesterday"})
    assert response.status_code == 400
    assert "is not a date and time" in body(response)
    assert "Windowlicker" in body(response)


def test_recent_partial_lists_the_newest_plays(alice_client, alice, bob, song):
    record(alice, song, timezone.now() - timedelta(minutes=5))
    record(bob, song, timezone.now() - timedelta(minutes=6))
    response = alice_client.get("/scrobbles/recent", headers={"HX-Request": "true"})
    page = body(response)
    assert '<div id="recent" hx-get="/scrobbles/recent?period=month" hx-trigger="every 10s"' in page
    assert page.count("Windowlicker</a>") == 1  # alice's play only
    assert "<html" not in page


def test_services_page_and_settings_are_linked(alice_client):
    assert 'href="/scrobbles/services/"' in body(alice_client.get("/scrobbles/"))
    assert 'href="/scrobbles/services/"' in body(alice_client.get("/accounts/settings/"))


# --- the services page -------------------------------------------------------------


def card(page: str, service: str) -> str:
    return page.split(f'id="service-{service}"')[1].split("</section>")[0]


def test_services_page_shows_unlinked_services(alice_client, settings):
    settings.LASTFM_API_KEY, settings.LASTFM_API_SECRET = "key", "secret"
    page = body(alice_client.get("/scrobbles/services/"))
    lastfm = card(page, "lastfm")
    assert "Not linked" in lastfm
    assert 'href="/scrobbling/lastfm/connect" hx-boost="false">Connect Last.fm</a>' in lastfm
    listenbrainz = card(page, "listenbrainz")
    assert 'id="lb-link-form"' in listenbrainz
    assert 'name="token"' in listenbrainz
    assert 'name="api_root"' in listenbrainz
    assert "hx-preserve" not in listenbrainz  # only the polled answer keeps the form as typed
    assert 'hx-get="/scrobbles/services/status" hx-trigger="every 5s' in page


def test_services_page_says_when_lastfm_is_not_set_up(alice_client, settings):
    settings.LASTFM_API_KEY = ""
    lastfm = card(body(alice_client.get("/scrobbles/services/")), "lastfm")
    assert "Last.fm is not configured on this server" in lastfm
    assert '<span class="badge">Not configured</span>' in lastfm
    assert "Not linked" not in lastfm  # it cannot be linked at all here
    assert "Connect Last.fm" not in lastfm


def test_services_page_warns_when_a_linked_lastfm_is_no_longer_configured(alice_client, alice, settings):
    ScrobblerLink.objects.create(user=alice, service="lastfm", account_name="rj", secret="sk")
    settings.LASTFM_API_KEY = ""
    lastfm = card(body(alice_client.get("/scrobbles/services/status")), "lastfm")
    assert "Linked as <strong>rj</strong>" in lastfm
    assert "Last.fm is not configured on this server any more: plays wait here" in lastfm


def test_services_page_shows_a_linked_service_and_its_queue(alice_client, alice, song):
    link = ScrobblerLink.objects.create(user=alice, service="lastfm", account_name="rj", secret="sk",
                                        last_sent_at=timezone.now() - timedelta(minutes=3),
                                        retry_at=timezone.now() + timedelta(seconds=30),
                                        last_error="Last.fm answered 503")
    for minutes in (5, 10):
        record(alice, song, timezone.now() - timedelta(minutes=minutes))
    play = Play.objects.filter(user=alice).first()
    DeadLetter.objects.create(user=alice, service="lastfm", play=play, payload={}, reason="Timestamp too old")
    assert BufferEntry.objects.filter(user=alice, service="lastfm").count() == 2

    page = body(alice_client.get("/scrobbles/services/"))
    lastfm = card(page, "lastfm")
    assert "Linked as <strong>rj</strong>" in lastfm
    assert '<span class="badge ok">Linked</span>' in lastfm
    assert "<strong>2</strong> plays waiting" in lastfm
    assert "1 refused by Last.fm" in lastfm
    assert f"Retrying at {timezone.localtime(link.retry_at):%H:%M:%S}: Last.fm answered 503" in lastfm
    assert "3\xa0minutes ago" in lastfm
    assert 'action="/scrobbles/services/lastfm/unlink"' in lastfm
    assert "Not linked" in card(page, "listenbrainz")


def test_services_page_shows_a_paused_link_with_reconnect(alice_client, alice, song):
    ScrobblerLink.objects.create(user=alice, service="lastfm", account_name="rj", secret="sk",
                                 status="paused", paused_reason="Invalid session key - Please re-authenticate")
    ScrobblerLink.objects.create(user=alice, service="listenbrainz", account_name="rj", secret="t",
                                 status="paused", paused_reason="Token invalid.")
    record(alice, song, timezone.now() - timedelta(minutes=5))

    page = body(alice_client.get("/scrobbles/services/"))
    lastfm = card(page, "lastfm")
    assert "<strong>Paused:</strong> Invalid session key - Please re-authenticate" in lastfm
    assert "1 play is kept and will be sent after you reconnect" in lastfm
    assert 'href="/scrobbling/lastfm/connect" hx-boost="false">Reconnect</a>' in lastfm
    listenbrainz = card(page, "listenbrainz")
    assert "<strong>Paused:</strong> Token invalid." in listenbrainz
    assert "Reconnect ListenBrainz</button>" in listenbrainz


def test_status_partial_rerenders_the_cards(alice_client, alice):
    response = alice_client.get("/scrobbles/services/status", headers={"HX-Request": "true"})
    page = body(response)
    assert page.lstrip().startswith('<div id="link-cards"')
    assert 'id="lb-link-form" class="lb-form" hx-preserve="true"' in page
    assert "<html" not in page
    ScrobblerLink.objects.create(user=alice, service="listenbrainz", account_name="lbuser", secret="t")
    page = body(alice_client.get("/scrobbles/services/status"))
    assert "Linked as <strong>lbuser</strong>" in card(page, "listenbrainz")
    assert 'id="lb-link-form"' not in page


# --- linking ListenBrainz ----------------------------------------------------------


def test_a_bad_listenbrainz_token_is_a_400_that_keeps_the_input(alice_client, alice, fake_listenbrainz):
    response = alice_client.post("/scrobbles/services/listenbrainz", {"token": "not-a-real-token", "api_root": ""})
    page = body(response)
    assert response.status_code == 400
    assert 'value="not-a-real-token"' in page
    assert "ListenBrainz says this token is not valid." in card(page, "listenbrainz")
    assert not ScrobblerLink.objects.filter(user=alice).exists()


def test_a_good_listenbrainz_token_links_the_account(alice_client, alice, fake_listenbrainz):
    token = fake_listenbrainz.add_user("lb_alice")
    response = alice_client.post("/scrobbles/services/listenbrainz", {"token": token})
    assert response.status_code == 302
    assert response["Location"] == "/scrobbles/services/"
    link = ScrobblerLink.objects.get(user=alice, service="listenbrainz")
    assert (link.account_name, link.secret, link.api_root) == ("lb_alice", token, "")
    page = body(alice_client.get(response["Location"]))
    assert "ListenBrainz linked as lb_alice." in page
    assert "Linked as <strong>lb_alice</strong>" in card(page, "listenbrainz")


def test_listenbrainz_on_a_self_hosted_server(alice_client, alice, fake_listenbrainz, settings, allow_loopback):
    settings.LISTENBRAINZ_API_ROOT = "http://127.0.0.1:9"  # nothing there: the form's server is used
    token = fake_listenbrainz.add_user("maloja_me")
    response = alice_client.post("/scrobbles/services/listenbrainz",
                                 {"token": token, "api_root": fake_listenbrainz.url + "/"})
    assert response.status_code == 302
    link = ScrobblerLink.objects.get(user=alice, service="listenbrainz")
    assert (link.account_name, link.api_root) == ("maloja_me", fake_listenbrainz.url)
    assert f"on <code>{fake_listenbrainz.url}</code>" in body(alice_client.get("/scrobbles/services/"))


def test_listenbrainz_form_needs_a_token_and_a_web_address(alice_client, alice):
    response = alice_client.post("/scrobbles/services/listenbrainz", {"token": "", "api_root": "not a url"})
    page = body(response)
    assert response.status_code == 400
    assert "This field is required." in page
    assert "Enter a valid URL." in page
    assert 'value="not a url"' in page


# --- linking Last.fm ---------------------------------------------------------------


def connect(client, fake) -> dict:
    """Start the connection; returns the query Last.fm got (api_key, cb) and the callback's state."""
    response = client.get("/scrobbling/lastfm/connect")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == fake.auth_url
    query = {key: values[0] for key, values in parse_qs(location.query).items()}
    callback = urlsplit(query["cb"])
    query["state"] = parse_qs(callback.query)["state"][0]
    query["callback"] = f"{callback.scheme}://{callback.netloc}{callback.path}"
    return query


def test_connect_sends_the_user_to_lastfm_with_key_and_callback(alice_client, fake_lastfm):
    query = connect(alice_client, fake_lastfm)
    assert query["api_key"] == fake_lastfm.api_key
    assert query["callback"] == "http://testserver/scrobbling/lastfm/callback"
    assert len(query["state"]) > 15


def test_callback_with_an_authorised_token_links_lastfm(alice_client, alice, fake_lastfm):
    state = connect(alice_client, fake_lastfm)["state"]
    token = fake_lastfm.authorize_token("rj")
    response = alice_client.get("/scrobbling/lastfm/callback", {"token": token, "state": state})
    assert response.status_code == 302
    assert response["Location"] == "/scrobbles/services/"
    link = ScrobblerLink.objects.get(user=alice, service="lastfm")
    assert link.account_name == "rj"
    assert fake_lastfm.sessions[link.secret] == "rj"
    page = body(alice_client.get("/scrobbles/services/"))
    assert "Last.fm linked as rj." in page


def test_callback_with_a_bad_token_explains_and_links_nothing(alice_client, alice, fake_lastfm):
    state = connect(alice_client, fake_lastfm)["state"]
    response = alice_client.get("/scrobbling/lastfm/callback", {"token": "forged", "state": state}, follow=True)
    assert response.redirect_chain == [("/scrobbles/services/", 302)]
    assert "Last.fm was not linked: Last.fm did not accept that authorisation" in body(response)
    assert not ScrobblerLink.objects.filter(user=alice).exists()


def test_callback_without_a_token_explains(alice_client, fake_lastfm):
    connect(alice_client, fake_lastfm)
    response = alice_client.get("/scrobbling/lastfm/callback", follow=True)
    assert response.redirect_chain == [("/scrobbles/services/", 302)]
    assert "Last.fm sent no token back" in body(response)


def test_callback_not_started_in_this_session_links_nothing(alice_client, alice, fake_lastfm):
    token = fake_lastfm.authorize_token("mallory")
    response = alice_client.get("/scrobbling/lastfm/callback", {"token": token, "state": "guessed"}, follow=True)
    assert response.redirect_chain == [("/scrobbles/services/", 302)]
    assert "does not belong to a connection started here" in body(response)
    assert not ScrobblerLink.objects.filter(user=alice).exists()


def test_connect_without_lastfm_set_up_explains(alice_client, settings):
    settings.LASTFM_API_KEY = ""
    response = alice_client.get("/scrobbling/lastfm/connect", follow=True)
    assert response.redirect_chain == [("/scrobbles/services/", 302)]
    assert "Last.fm is not set up on this server" in body(response)


def test_connect_from_an_htmx_request_leaves_as_a_full_page(alice_client, fake_lastfm):
    response = alice_client.get("/scrobbling/lastfm/connect", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/scrobbling/lastfm/connect"


# --- unlink and discard ------------------------------------------------------------


def test_unlink_keeps_waiting_plays_and_says_how_many(alice_client, alice, song):
    ScrobblerLink.objects.create(user=alice, service="lastfm", account_name="rj", secret="sk")
    for minutes in (5, 10, 15):
        record(alice, song, timezone.now() - timedelta(minutes=minutes))
    response = alice_client.post("/scrobbles/services/lastfm/unlink", follow=True)
    assert response.redirect_chain == [("/scrobbles/services/", 302)]
    page = body(response)
    assert "Last.fm unlinked. 3 plays still wait for it" in page
    assert not ScrobblerLink.objects.filter(user=alice).exists()
    assert BufferEntry.objects.filter(user=alice, service="lastfm").count() == 3
    lastfm = card(page, "lastfm")
    assert "3 plays still wait for Last.fm" in lastfm
    assert 'action="/scrobbles/services/lastfm/discard"' in lastfm


def test_discard_drops_the_waiting_plays_of_an_unlinked_service(alice_client, alice, song):
    ScrobblerLink.objects.create(user=alice, service="listenbrainz", account_name="rj", secret="t")
    record(alice, song, timezone.now() - timedelta(minutes=5))
    response = alice_client.post("/scrobbles/services/listenbrainz/discard", follow=True)
    assert "unlink it first" in body(response)
    assert BufferEntry.objects.filter(user=alice).count() == 1

    alice_client.post("/scrobbles/services/listenbrainz/unlink")
    response = alice_client.post("/scrobbles/services/listenbrainz/discard", follow=True)
    assert "Discarded 1 play waiting for ListenBrainz" in body(response)
    assert not BufferEntry.objects.filter(user=alice).exists()
    assert Play.objects.filter(user=alice).count() == 1  # the history keeps it


def test_unlinking_what_is_not_linked_explains(alice_client):
    response = alice_client.post("/scrobbles/services/lastfm/unlink", follow=True)
    assert "Last.fm is not linked." in body(response)


def test_unknown_service_is_a_404(alice_client):
    assert alice_client.post("/scrobbles/services/myspace/unlink").status_code == 404


# --- banner ---------------------------------------------------------------------------


def test_banner_on_every_page_while_a_link_is_paused(alice_client, alice, song):
    link = ScrobblerLink.objects.create(user=alice, service="lastfm", account_name="rj", secret="sk")
    for minutes in (5, 10):
        record(alice, song, timezone.now() - timedelta(minutes=minutes))
    assert "stopped accepting" not in body(alice_client.get("/"))

    links.link_pause(link=link, reason="Invalid session key - Please re-authenticate")
    for url in ("/", "/library/", "/scrobbles/"):
        banner = body(alice_client.get(url)).split('<aside class="banner"')[1].split("</aside>")[0]
        assert ("<strong>Last.fm stopped accepting your plays:</strong> Invalid session key - Please "
                "re-authenticate.") in banner
        assert "2 plays are kept and will be sent after you reconnect." in banner
        assert 'href="/scrobbling/lastfm/connect" hx-boost="false">Reconnect</a>' in banner


def test_banner_for_listenbrainz_points_to_the_services_page(alice_client, alice):
    ScrobblerLink.objects.create(user=alice, service="listenbrainz", account_name="rj", secret="t",
                                 status="paused", paused_reason="Token invalid.")
    banner = body(alice_client.get("/")).split('<aside class="banner"')[1].split("</aside>")[0]
    assert "ListenBrainz stopped accepting your plays:</strong> Token invalid. Your plays are kept" in banner
    assert 'href="/scrobbles/services/#service-listenbrainz">Reconnect</a>' in banner


def test_banner_costs_one_query(alice_client, alice, django_assert_num_queries):
    ScrobblerLink.objects.create(user=alice, service="lastfm", account_name="rj", secret="sk", status="paused")
    from django.template import RequestContext, Template
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = alice
    template = Template("{% for link in paused_links %}{{ link.service }}{{ link.waiting }}{% endfor %}"
                        "{% if paused_links %}!{% endif %}")
    with django_assert_num_queries(1):
        assert template.render(RequestContext(request)) == "lastfm0!"


# --- home: listening now -------------------------------------------------------------


def test_home_says_when_nobody_is_listening(alice_client):
    page = body(alice_client.get("/"))
    assert "Listening now" in page
    assert "Nobody is listening right now" in page
    assert 'hx-get="/listening-now" hx-trigger="every 10s"' in page


def test_home_shows_who_is_listening_to_what(alice_client, alice, bob, song, other_song):
    room = room_services.room_create(owner=bob, name="Friday Mix")
    nowplaying.now_playing_set(user=bob, track=song, position_s=100.0, room=shown_room(room), source=Play.Source.ROOM)
    nowplaying.now_playing_set(user=alice, track=other_song, position_s=30.0, paused=True, source=Play.Source.LIBRARY)

    page = body(alice_client.get("/"))
    section = page.split('id="listening-now"')[1].split("</section>")[0]
    bob_entry = section.split(f'data-listener="{bob.pk}"')[1].split("</li>")[0]
    assert f'<a href="/library/tracks/{song.pk}/">Windowlicker</a>' in bob_entry
    assert "Aphex Twin" in bob_entry
    assert f'<a href="/rooms/{room.slug}/">Friday Mix</a>' in bob_entry
    percent = float(re.search(r'--from:([\d.]+)%', bob_entry).group(1))
    assert 27 <= percent <= 29  # 100 s of 366 s
    alice_entry = section.split(f'data-listener="{alice.pk}"')[1].split("</li>")[0]
    assert "Jóga" in alice_entry
    assert '<span class="badge">paused</span>' in alice_entry
    assert "progressbar" not in alice_entry
    assert "Nobody is listening" not in section


def test_listening_now_partial(alice_client, client, bob, song):
    nowplaying.now_playing_set(user=bob, track=song)
    page = body(alice_client.get("/listening-now", headers={"HX-Request": "true"}))
    assert page.lstrip().startswith('<section id="listening-now"')
    assert "Windowlicker" in page
    client.logout()
    assert client.get("/listening-now").status_code == 204


def test_the_library_player_gets_the_play_threshold_from_the_server(alice_client, monkeypatch):
    monkeypatch.setattr(inputs, "PLAYED_ENOUGH_S", 120.0)
    page = alice_client.get("/").content.decode()
    assert f'data-min-track-s="{inputs.MIN_TRACK_S:g}"' in page
    assert 'data-played-enough-s="120"' in page
