"""The demo Douban (catalog/demo_source/) over real HTTP, read by the real Douban client and its
parser: the newest lists, every subject page complete, covers that are images, the answers to
bad requests, the same content on every start, and `manage.py catalog_demo_server`. No database."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import httpx
import pytest

from catalog.clients import MOVIE, TV, TitleDetails
from catalog.clients.douban import DoubanClient
from catalog.demo_source import content
from catalog.demo_source.pages import render_subject
from catalog.demo_source.server import DemoDouban, NotLoopback

BASE_DIR = Path(__file__).resolve().parents[2]
CHINESE_LANGUAGES = {"汉语普通话", "粤语"}


@pytest.fixture(scope="module")
def demo():
    with DemoDouban() as server:
        yield server


@pytest.fixture
def client(demo):
    douban = DoubanClient(root=demo.root, min_interval_s=0, timeout_s=5, retries=0, wait_max_s=5)
    yield douban
    douban.close()


@pytest.fixture(scope="module")
def everything(demo) -> list[TitleDetails]:
    """Every listed subject's details, through the Douban client."""
    douban = DoubanClient(root=demo.root, min_interval_s=0, timeout_s=5, retries=0, wait_max_s=5)
    try:
        return [douban.details(listed.source_id, kind=kind) for kind in (MOVIE, TV) for listed in douban.newest(kind=kind)]
    finally:
        douban.close()


def test_the_newest_lists_hold_24_films_and_8_tv_seasons_newest_first(client, demo):
    films, series = client.newest(kind=MOVIE), client.newest(kind=TV)

    assert (len(films), len(series)) == (24, 8)
    assert len({listed.source_id for listed in films + series}) == 32
    for listed in films + series:
        assert listed.url == f"{demo.root}/subject/{listed.source_id}/"
        assert listed.cover_url == f"{demo.root}/view/photo/s_ratio_poster/public/p{listed.source_id}.png"
        assert listed.title
        assert 0 < listed.rating <= 10
    by_id = {subject.source_id: subject for subject in demo.subjects}
    for kind_list in (films, series):
        firsts = [min(by_id[listed.source_id].releases) for listed in kind_list]
        assert firsts == sorted(firsts, reverse=True)


def test_the_list_pages_through_page_start_and_page_limit(demo):
    def ids(**params):
        answer = httpx.get(f"{demo.root}/j/search_subjects", params={"type": "movie", "tag": "最新", **params})
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json; charset=utf-8"
        return [entry["id"] for entry in answer.json()["subjects"]]

    every = ids(page_limit="80", page_start="0")
    assert ids(page_limit="10", page_start="0") + ids(page_limit="10", page_start="10") + ids(
        page_limit="10", page_start="20") == every
    assert ids(page_limit="5", page_start="30") == []
    assert len(ids()) == 20  # Douban's default page
    assert ids(tag="热门", page_limit="80") == []  # a tag it does not have: nothing


def test_every_subject_page_parses_into_complete_details(everything, demo):
    assert len(everything) == 32
    for details in everything:
        subject = demo._by_id[details.source_id]
        what = f"{details.source_id} {details.title}"
        assert details.title == subject.title, what
        if details.languages[0] in CHINESE_LANGUAGES:
            assert details.original_title == "", what  # as Douban shows a Chinese-language title
        else:
            assert details.original_title == subject.original_title != "", what
        assert details.other_titles, what
        assert details.year == details.release_date.year, what
        assert details.rating is not None, what
        assert details.votes > 0, what
        assert details.synopsis.startswith(content.TITLES[int(details.source_id) - content.FIRST_SUBJECT_ID].synopsis)
        assert details.cover_url == f"{demo.root}/view/photo/s_ratio_poster/public/p{details.source_id}.png", what
        assert details.releases, what
        assert all(release.region for release in details.releases), what
        assert re.fullmatch(r"tt99\d{6}", details.imdb_id), what
        assert details.genres, what
        assert details.countries, what
        assert details.languages, what
        roles = {role: [c for c in details.credits if c.role == role] for role in ("director", "writer", "actor")}
        assert all(roles.values()), what
        assert len(roles["actor"]) >= 4, what
        assert all(credit.source_person_id.startswith("991") for credit in details.credits), what
        for credits in roles.values():
            assert [credit.order for credit in credits] == list(range(len(credits)))
        if details.kind == TV:
            assert details.episode_count > 0, what
            assert details.episode_runtime_min > 0, what
            assert details.season_number >= 1, what
            assert details.runtime_min is None, what  # a series' page has 单集片长, not 片长
        else:
            assert 80 < details.runtime_min < 200, what
            assert details.episode_count is details.episode_runtime_min is details.season_number is None, what


def test_the_pages_cover_the_forms_douban_writes(everything):
    """Long hidden synopses and plain summaries, several releases, several runtimes, "约", a
    festival premiere, a later season in the 季数 select: the forms the parser must read."""
    by_id = {details.source_id: details for details in everything}
    pages = {subject.source_id: subject for subject in content.subjects(origin="http://x")}
    assert any("\n" in details.synopsis for details in everything)  # the hidden long version, paragraphs kept
    assert any(not pages[sid].long_synopsis for sid in by_id)
    assert any(" / " in pages[sid].runtime for sid in by_id)
    assert any(pages[sid].runtime.startswith("约") for sid in by_id)
    assert any(len(details.releases) == 3 for details in everything)
    assert any("电影节" in release.region for details in everything for release in details.releases)
    assert sorted(d.season_number for d in everything if d.kind == TV) == [1, 1, 1, 1, 1, 1, 1, 2]
    festival_films = [d for d in everything if any("电影节" in r.region for r in d.releases)]
    assert all(d.release_date == min(r.date for r in d.releases) for d in festival_films)


def test_people_recur_across_titles_with_one_id_each(everything):
    names_by_id: dict[str, set[str]] = {}
    titles_by_id: dict[str, set[str]] = {}
    for details in everything:
        for credit in details.credits:
            names_by_id.setdefault(credit.source_person_id, set()).add(credit.name)
            titles_by_id.setdefault(credit.source_person_id, set()).add(details.source_id)
    assert all(len(names) == 1 for names in names_by_id.values())
    assert len({next(iter(names)) for names in names_by_id.values()}) == len(names_by_id)
    assert max(len(titles) for titles in titles_by_id.values()) >= 3  # a person page has something to show


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height, depth, color_type = struct.unpack(">IIBB", data[16:26])
    assert (depth, color_type) == (8, 2)
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])
    return width, height


def _pixels(data: bytes) -> bytes:
    """The decompressed image data (PNG chunks walked, IDATs joined)."""
    offset, idat = 8, b""
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            idat += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    return zlib.decompress(idat)


def test_covers_are_poster_sized_pngs_a_colour_of_their_own(demo, client):
    top_colours = set()
    for listed in client.newest(kind=MOVIE) + client.newest(kind=TV):
        answer = httpx.get(listed.cover_url)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/png"
        assert _png_size(answer.content) == (270, 400)
        pixels = _pixels(answer.content)
        assert len(pixels) == 400 * (1 + 270 * 3)
        top_colours.add(pixels[1:4])
        assert len(set(pixels[1 + 200 * 811: 200 * 811 + 811])) > 2  # the initials drawn across the band
    assert len(top_colours) >= 28  # 32 titles, nearly all a colour of their own


def test_cover_initials_come_from_the_english_name():
    from catalog.demo_source.covers import initials

    assert initials("The Salt Road") == "TSR"
    assert initials("Night Watch of Chang'an") == "NWO"
    assert initials("Past the Last Train", most=2) == "PT"
    assert initials("   ") == ""


@pytest.mark.parametrize("path", [
    "/subject/12345/", "/subject/99000033/", "/subject/abc/", "/subject/", "/celebrity/99100001/",
    "/view/photo/s_ratio_poster/public/p1.png", "/view/photo/s_ratio_poster/public/p99000001.jpg",
    "/j/search_subjects/extra", "/nothing", "/subject/99000001/../../etc/passwd",
])
def test_anything_else_is_a_404(demo, path):
    answer = httpx.get(demo.root + path)
    assert answer.status_code == 404
    assert "页面不存在" in answer.text


@pytest.mark.parametrize(("params", "named"), [
    ({"type": "book", "tag": "最新"}, "type"), ({"tag": "最新"}, "type"),
    ({"type": "movie", "page_limit": "ten"}, "page_limit"), ({"type": "movie", "page_start": "-1"}, "page_start"),
    ({"type": "movie", "page_limit": "100000"}, "page_limit"),
])
def test_a_list_request_douban_would_not_take_is_a_400_naming_the_parameter(demo, params, named):
    answer = httpx.get(f"{demo.root}/j/search_subjects", params=params)
    assert answer.status_code == 400
    assert named in answer.json()["msg"]


def test_only_get_and_head(demo):
    assert httpx.post(f"{demo.root}/subject/99000001/").status_code == 405
    head = httpx.head(f"{demo.root}/subject/99000001/")
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["content-length"]) == len(httpx.get(f"{demo.root}/subject/99000001/").content)


def test_it_listens_on_loopback_only():
    for host in ("0.0.0.0", "192.168.1.10", "::", "example.com"):
        with pytest.raises(NotLoopback):
            DemoDouban(host=host)
    with DemoDouban(host="::1") as server:
        assert server.root.startswith("http://[::1]:")
        assert httpx.get(server.root + "/").status_code == 200


def _digest_of_every_page() -> str:
    pages = "".join(render_subject(subject) for subject in content.subjects(origin="http://demo"))
    return hashlib.sha256(pages.encode()).hexdigest()


def test_the_content_is_the_same_in_every_process():
    """Seeded: another interpreter (another hash seed) builds the very same pages."""
    code = ("from tests.catalog.test_demo_source import _digest_of_every_page; print(_digest_of_every_page())")
    other = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345", "DJANGO_SETTINGS_MODULE": "project.settings"})
    assert other.stdout.strip() == _digest_of_every_page()


def test_ids_stay_out_of_the_real_sites_ranges(everything):
    assert all(int(details.source_id) >= 99000001 for details in everything)
    assert all(int(details.imdb_id[2:]) >= 99000001 for details in everything)


def test_the_command_serves_on_a_free_port_and_stops_on_sigterm(tmp_path):
    env = {**os.environ, "DEBUG": "1", "SECRET_KEY": "x"}
    process = subprocess.Popen([sys.executable, "manage.py", "catalog_demo_server", "--port", "0"], cwd=BASE_DIR,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        match = re.search(r"Demo Douban on (http://127\.0\.0\.1:\d+): 24 films and 8 TV seasons", line)
        assert match, line + process.stderr.read()
        assert httpx.get(match.group(1) + "/subject/99000001/").status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_command_refuses_an_address_that_is_not_loopback():
    env = {**os.environ, "DEBUG": "1", "SECRET_KEY": "x"}
    done = subprocess.run([sys.executable, "manage.py", "catalog_demo_server", "--host", "0.0.0.0"], cwd=BASE_DIR,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "--host: the demo Douban listens on a loopback address only" in done.stderr
