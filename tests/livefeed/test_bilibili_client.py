"""The Bilibili client's room URLs and HTTP calls, against the local fake Bilibili."""

from __future__ import annotations

import logging

import pytest

from livefeed.clients import Blocked, GiveUp, RetryLater, RoomNotFound
from livefeed.clients.bilibili import BilibiliClient, mixin_key, wbi_sign
from tests.livefeed.bilibili_fake import FakeRoom
from tests.livefeed.bilibili_fixtures import bilibili_client_fixture, bilibili_fixture, client_for  # noqa: F401

SECRET_COOKIE = "SESSDATA=fake-sessdata-value; buvid3=BUVID-1234-abcd; DedeUserID=424242"


@pytest.mark.parametrize(("url", "ref"), [
    ("https://live.bilibili.com/5440", "5440"),
    ("https://live.bilibili.com/3?broadcast_type=0&is_room_feed=1", "3"),
    ("http://live.bilibili.com/22603245/", "22603245"),
    ("https://live.bilibili.com/h5/5440", "5440"),
    ("https://live.bilibili.com/blanc/5440?liteVersion=true", "5440"),
    ("live.bilibili.com/76", "76"),
    ("  https://LIVE.bilibili.com/76#chat ", "76"),
])
def test_room_urls_give_the_room_id_as_written(url, ref):
    assert BilibiliClient.parse_url(url) == ref
    assert BilibiliClient.room_url(ref) == f"https://live.bilibili.com/{ref}"


@pytest.mark.parametrize("url", [
    "", "https://live.bilibili.com/", "https://live.bilibili.com/abc", "https://www.bilibili.com/video/BV1xx",
    "https://live.douyin.com/5440", "https://live.bilibili.com.evil.example/5440", "ftp://live.bilibili.com/5440",
    "https://live.bilibili.com/p/eden/area-tags", "https://live.bilibili.com/5440/extra", "javascript:alert(1)",
    "https://live.bilibili.com/" + "9" * 30,
])
def test_other_urls_are_not_bilibili_rooms(url):
    assert BilibiliClient.parse_url(url) is None


def test_wbi_signature_matches_the_published_example():
    img, sub = "7cd084941338484aae1ad9425b84077c", "4932caff0ff746eab6f01bf08b70ac45"
    assert mixin_key(img, sub) == "ea1db124af3c7062474693fa704f4ff8"
    signed = wbi_sign({"foo": "114", "bar": "514", "zab": 1919810}, img_key=img, sub_key=sub, wts=1702204169)
    assert signed["w_rid"] == "8f6f2b5b3d485fe1886cec6a0be8c5d4"
    assert signed["wts"] == "1702204169"
    # Spaces are %20, not +, and !'()* are dropped before signing.
    spaced = wbi_sign({"q": "one one(!)"}, img_key=img, sub_key=sub, wts=1)
    assert spaced["q"] == "one one"


async def test_short_id_is_resolved_to_the_real_room(bilibili, bilibili_client):
    info = await bilibili_client.room_info("3")
    assert info.ref == "3"
    assert info.internal["room_id"] == 5440
    assert info.live is True
    assert (info.title, info.streamer_name, info.streamer_id, info.viewers) == ("三号直播间", "三号主播", "9617619", 1234)
    assert info.avatar_url == "https://i0.hdslb.com/bfs/face/9617619.jpg"
    await bilibili_client.room_info("3")  # a reconnect reads the room again, not the avatar
    assert len([r for r in bilibili.requests if r.path == "/live_user/v1/Master/info"]) == 1
    assert info.internal["danmu"]["token"] == bilibili.token
    assert [h["host"] for h in info.internal["danmu"]["hosts"]] == ["127.0.0.1", "127.0.0.2"]
    danmu_call = next(r for r in bilibili.requests if r.path.endswith("getDanmuInfo"))
    assert danmu_call.params["id"] == "5440"
    assert danmu_call.params["w_rid"] == bilibili.expected_w_rid(danmu_call.params)


async def test_stream_urls_are_listed_by_protocol_format_and_codec(bilibili, bilibili_client):
    info = await bilibili_client.room_info("5440")
    assert info.stream_urls == {
        "http_stream_flv_avc": "https://cn-fake.bilivideo.com/live-bvc/1/live_9617619.flv?expires=1&qn=10000",
        "http_hls_ts_avc": "https://cn-fake.bilivideo.com/live-bvc/1/live_9617619.m3u8?expires=1&qn=10000",
    }
    play = next(r for r in bilibili.requests if r.path.endswith("getRoomPlayInfo"))
    assert (play.params["protocol"], play.params["format"], play.params["codec"]) == ("0,1", "0,1,2", "0,1")


async def test_an_offline_room_is_not_live_and_needs_no_token(bilibili, bilibili_client):
    bilibili.rooms[777] = FakeRoom(room_id=777, live_status=0)
    replaying = FakeRoom(room_id=778, live_status=2)  # replaying old videos: not live either
    bilibili.rooms[778] = replaying
    assert (await bilibili_client.room_info("777")).live is False
    assert (await bilibili_client.room_info("778")).live is False
    assert not [r for r in bilibili.requests if r.path.endswith("getDanmuInfo")]


async def test_stream_urls_of_an_unexpected_shape_do_not_fail_the_room(bilibili, bilibili_client, caplog):
    bilibili.fail_next("/xlive/web-room/v2/index/getRoomPlayInfo", data={"playurl_info": {"playurl": {"stream": [7]}}})
    info = await bilibili_client.room_info("3")
    assert info.live is True
    assert info.stream_urls == {}
    assert "unexpected shape" in caplog.text


async def test_a_missing_avatar_does_not_fail_the_room(bilibili, bilibili_client):
    bilibili.fail_next("/live_user/v1/Master/info", status=500)
    info = await bilibili_client.room_info("3")
    assert (info.avatar_url, info.title) == ("", "三号直播间")


async def test_a_room_that_does_not_exist_is_room_not_found(bilibili, bilibili_client):
    with pytest.raises(RoomNotFound, match=r"no live room 999999.*60004.*直播间不存在"):
        await bilibili_client.room_info("999999")
    with pytest.raises(RoomNotFound, match="not a Bilibili room id"):
        await bilibili_client.room_info("abc")


@pytest.mark.parametrize(("code", "error"), [(19002000, RoomNotFound), (-400, RoomNotFound), (-352, Blocked),
                                             (-412, Blocked), (12345, GiveUp)])
async def test_platform_error_codes_are_mapped_with_the_platform_message(bilibili, bilibili_client, code, error):
    bilibili.fail_next("/room/v1/Room/room_init", code=code, message="平台说的话")
    with pytest.raises(error, match="平台说的话") as raised:
        await bilibili_client.room_info("5440")
    assert raised.value.code == code


async def test_busy_answers_are_retry_later_and_refusals_blocked(bilibili, bilibili_client):
    bilibili.fail_next("/room/v1/Room/room_init", status=503)
    with pytest.raises(RetryLater, match="HTTP 503"):
        await bilibili_client.room_info("5440")
    bilibili.fail_next("/room/v1/Room/room_init", status=412)
    with pytest.raises(Blocked, match="HTTP 412"):
        await bilibili_client.room_info("5440")
    bilibili.fail_next("/room/v1/Room/room_init", status=400)
    with pytest.raises(GiveUp, match="HTTP 400"):
        await bilibili_client.room_info("5440")


async def test_an_unreachable_api_is_retry_later():
    unreachable = BilibiliClient(api_root="http://127.0.0.1:9", nav_url="http://127.0.0.1:9/nav", ws_url="",
                                 cookie="", heartbeat_s=30, timeout_s=2)
    with pytest.raises(RetryLater, match="room_init"):
        await unreachable.room_info("5440")
    await unreachable.aclose()


async def test_a_refused_signature_is_blocked_and_the_wbi_keys_are_fetched_again(bilibili, bilibili_client):
    bilibili.fail_next("/xlive/web-room/v1/index/getDanmuInfo", code=-352, message="风控校验失败")
    with pytest.raises(Blocked, match=r"-352.*风控校验失败.*LIVEFEED_BILIBILI_COOKIE"):
        await bilibili_client.room_info("5440")
    navs = len([r for r in bilibili.requests if r.path == "/x/web-interface/nav"])
    info = await bilibili_client.room_info("5440")
    assert info.internal["danmu"]["token"] == bilibili.token
    assert len([r for r in bilibili.requests if r.path == "/x/web-interface/nav"]) == navs + 1


async def test_wrong_wbi_keys_are_refused_by_the_platform(bilibili, bilibili_client):
    bilibili.img_key = "0" * 32  # the nav answer and the fake's check both use the new keys
    wrong = client_for(bilibili, nav_url=bilibili.nav_url + "?other")  # a separate key cache
    await wrong._wbi_keys()
    bilibili.img_key = "1" * 32  # the keys changed since: the cached ones sign wrongly
    with pytest.raises(Blocked, match="-352"):
        await wrong.room_info("5440")
    await wrong.aclose()


async def test_a_nav_answer_without_keys_is_a_clear_error(bilibili, bilibili_client):
    bilibili.fail_next("/x/web-interface/nav", code=-101, message="账号未登录")
    with pytest.raises(GiveUp, match="no wbi_img keys"):
        await bilibili_client.room_info("5440")


async def test_the_cookie_is_sent_and_never_logged_or_shown(bilibili, caplog):
    caplog.set_level(logging.DEBUG)
    cookie_client = client_for(bilibili, cookie=SECRET_COOKIE)
    info = await cookie_client.room_info("5440")
    assert info.internal["danmu"]["uid"] == bilibili.login_mid  # the nav endpoint saw the logged-in user
    assert all(r.headers.get("cookie") == SECRET_COOKIE for r in bilibili.requests)
    connection = await cookie_client.connect(info, stall_s=5)
    await bilibili.wait_for_socket()
    assert bilibili.auths[-1]["uid"] == bilibili.login_mid
    assert bilibili.auths[-1]["buvid"] == "BUVID-1234-abcd"
    bilibili.fail_next("/room/v1/Room/room_init", code=-352, message="blocked")
    with pytest.raises(Blocked) as raised:
        await cookie_client.room_info("5440")
    shown = " ".join([repr(cookie_client), repr(connection), repr(info), str(raised.value), raised.value.answer,
                      caplog.text])
    await connection.close()
    await cookie_client.aclose()
    assert "fake-sessdata-value" not in shown
    assert "BUVID-1234" not in shown
    assert "cookie=set" in repr(cookie_client)


async def test_settings_choose_the_endpoints(bilibili, settings):
    settings.LIVEFEED_BILIBILI_API_ROOT = bilibili.api_root + "/"
    settings.LIVEFEED_BILIBILI_NAV_URL = bilibili.nav_url
    settings.LIVEFEED_BILIBILI_WS_URL = bilibili.ws_url
    settings.LIVEFEED_BILIBILI_COOKIE = ""
    from_settings = BilibiliClient()
    info = await from_settings.room_info("3")
    assert info.internal["room_id"] == 5440
    await from_settings.aclose()
