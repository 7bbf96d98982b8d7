"""What the sync tests share: the fake Douban with its cover images, a fake image host for
TMDB's posters, subjects with every field, and the settings that point the sync at them.

    from tests.catalog.sync_support import douban_fixture, sync_settings_fixture  # noqa: F401 - fixtures
"""

from __future__ import annotations

import pytest

from tests.catalog.douban_fake import FakeDouban, FakeSubject, Person
from tests.catalog.tmdb_fake import V3_KEY, FakeTmdb, sample_movie
from tests.scrobbling.fakes import FakeServer, RecordedRequest, Reply, text_reply

# What the covers are: JPEG markers around filler (nothing here decodes them).
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01" + bytes(200) + b"\xff\xd9"


class ImagesMixin:
    """Serves `/view/photo/...` and `/t/p/...` as JPEG images (or what `cover_reply` says)."""

    cover_reply: Reply | None = None

    def image(self, request: RecordedRequest) -> Reply | None:
        if not request.path.startswith(("/view/photo/", "/t/p/")):
            return None
        if self.cover_reply is not None:
            return self.cover_reply
        return Reply(200, JPEG, {"Content-Type": "image/jpeg"})


class CoverDouban(ImagesMixin, FakeDouban):
    """The fake Douban, also serving its subjects' covers (Douban's image host, here the same one)."""

    def route(self, request: RecordedRequest) -> Reply:
        return self.image(request) or super().route(request)

    def subject_paths(self) -> list[str]:
        with self.lock:
            return [request.path for request in self.requests if request.path.startswith("/subject/")]


class FakeImages(ImagesMixin, FakeServer):
    """TMDB's image host."""

    def route(self, request: RecordedRequest) -> Reply:
        return self.image(request) or text_reply(404, "no such image")


def full_subject(number: int, origin: str, *, kind: str = "movie", imdb_id: str = "", rating: str = "8.1",
                 released: str = "2023-07-21") -> FakeSubject:
    """A subject with every field Douban has."""
    return FakeSubject(
        str(1000000 + number), f"影片{number}", kind=kind, original_title=f"Film {number}", year=int(released[:4]),
        directors=[Person(f"导演{number}", str(2000000 + number))], writers=[Person(f"编剧{number}")],
        cast=[Person(f"演员甲{number}", str(3000000 + number)), Person(f"演员乙{number}", str(3100000 + number))],
        genres=["剧情", "科幻"], countries=["中国大陆", "美国"], languages=["汉语普通话", "英语"],
        releases=[f"{released}(中国大陆)", f"{int(released[:4]) - 1}-05-19(戛纳电影节)"],
        runtime="120分钟" if kind == "movie" else "", other_titles=[f"又名{number}"], imdb_id=imdb_id,
        synopsis=f"第{number}部的简介。", long_synopsis=f"第{number}部的完整简介，很长。", rating=rating, votes="12345",
        cover=f"{origin}/view/photo/s_ratio_poster/public/p{number}.jpg",
        episode_count=12 if kind == "tv" else None, episode_runtime="45分钟" if kind == "tv" else "")


@pytest.fixture(name="douban")
def douban_fixture(clean_redis):
    server = CoverDouban().start()
    yield server
    server.stop()


@pytest.fixture(name="images")
def images_fixture():
    server = FakeImages().start()
    yield server
    server.stop()


@pytest.fixture(name="tmdb")
def tmdb_fixture(images):
    server = FakeTmdb(api_key=V3_KEY).start()
    server.add_movie(sample_movie())
    yield server
    server.stop()


@pytest.fixture(name="sync_settings")
def sync_settings_fixture(settings, douban, tmp_path):
    """The sync pointed at the fake Douban, with a short interval; TMDB not set up."""
    settings.CATALOG_DOUBAN_ROOT = douban.url
    settings.CATALOG_DOUBAN_MIN_INTERVAL_S = 0.01
    settings.CATALOG_DOUBAN_RETRIES = 0  # the sync's own retries only (CATALOG_SYNC_ITEM_RETRIES): no client backoff
    settings.CATALOG_DOUBAN_WAIT_MAX_S = 10
    settings.CATALOG_TMDB_API_KEY = ""
    settings.CATALOG_SYNC_RETRY_FIRST_S = 0.05
    settings.CATALOG_SYNC_ITEM_RETRIES = 2
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings


@pytest.fixture(name="with_tmdb")
def with_tmdb_fixture(sync_settings, tmdb, images):
    sync_settings.CATALOG_TMDB_API_KEY = V3_KEY
    sync_settings.CATALOG_TMDB_API_ROOT = tmdb.url
    sync_settings.CATALOG_TMDB_IMAGE_ROOT = images.origin + "/t/p/"
    return sync_settings
