"""A fake Douban (movie.douban.com) on 127.0.0.1 for tests and benchmarks, real HTTP:

    GET /j/search_subjects?type=movie|tv&tag=最新&page_limit=80&page_start=0   the newest list (JSON)
    GET /subject/<id>/                                                        a subject page (HTML)

    fake = FakeDouban().start()
    fake.add(FakeSubject("3541415", "盗梦空间", kind="movie", ...))      # a page from the template
    fake.add_page("3541415", html, title="盗梦空间", rate="9.4")         # or a saved real page
    fake.block = "page" | "redirect" | "403" | "418" | None           # Douban's anti-bot answers
    fake.garbage = b"..."                                              # the list answers this instead
    fake.fail_next(2, status=500) / fake.fail_next(1, status=429, headers={"Retry-After": "1"})
    fake.delay_s = 3                                                    # slow answers

Every request is in `fake.requests` and its arrival time (time.time()) in `fake.arrivals`, so a
test can show the spacing the politeness limiter gives. The subject pages come from a small
template with Douban's real markup (ids, classes, `property="v:..."` attributes, the `#info`
lines with `<span class="pl">` labels), checked against the saved real pages in pages/; the
builder is catalog/demo_source/pages.py, shared with the demo server `make run` syncs from.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from urllib.parse import quote

from catalog.demo_source.pages import Person, Subject, render_subject  # noqa: F401 - Person: for the tests
from tests.scrobbling.fakes import Failure, FakeServer, RecordedRequest, Reply, json_reply, scripted_body, text_reply

PAGES = Path(__file__).parent / "pages"
BLOCKED_PAGE = (PAGES / "blocked.html").read_text(encoding="utf-8")
_SUBJECT = re.compile(r"^/subject/(\d+)/?$")


FakeSubject = Subject  # the names the tests use
render = render_subject


class FakeDouban(FakeServer):
    api_prefix = "/"

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        super().__init__(host=host)
        self.subjects: dict[str, FakeSubject] = {}
        self.pages: dict[str, str] = {}  # saved pages by id, served instead of the template
        self.block: str | None = None
        self.garbage: bytes | None = None
        self.arrivals: list[float] = []

    @property
    def url(self) -> str:
        return self.origin

    def add(self, subject: FakeSubject) -> FakeSubject:
        with self.lock:
            self.subjects[subject.source_id] = subject
        return subject

    def add_page(self, source_id: str, page: str, *, title: str, kind: str = "movie", rate: str = "") -> None:
        with self.lock:
            self.subjects[source_id] = FakeSubject(source_id, title, kind=kind, rating=rate)
            self.pages[source_id] = page

    def handle(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self.arrivals.append(time.time())
        return super().handle(request)

    def failure_reply(self, failure: Failure) -> Reply:
        body, content_type = scripted_body(failure, "<html><body>服务器错误</body></html>")
        return Reply(failure.status or 500, body, {"Content-Type": content_type, **failure.headers})

    def route(self, request: RecordedRequest) -> Reply:
        if self.block in ("redirect", "login"):
            target = ("https://sec.douban.com/b?r=" if self.block == "redirect"
                      else "https://accounts.douban.com/passport/login?redir=")
            return Reply(302, b"", {"Location": target + quote(self.origin + request.path, safe="")})
        if self.block in ("403", "418"):
            return text_reply(int(self.block), BLOCKED_PAGE)
        if self.block == "page":
            return text_reply(200, BLOCKED_PAGE)
        if request.path == "/j/search_subjects":
            return self._list(request)
        match = _SUBJECT.match(request.path)
        if match is None:
            return text_reply(404, "<html><body>页面不存在</body></html>")
        source_id = match.group(1)
        if source_id in self.pages:
            return text_reply(200, self.pages[source_id])
        subject = self.subjects.get(source_id)
        if subject is None:
            return text_reply(404, "<html><head><title>页面不存在</title></head><body>你想访问的页面不存在</body></html>")
        return text_reply(200, render(subject))

    def _list(self, request: RecordedRequest) -> Reply:
        if self.garbage is not None:
            return Reply(200, self.garbage, {"Content-Type": "application/json; charset=utf-8"})
        kind = request.params.get("type", "")
        if kind not in ("movie", "tv") or request.params.get("tag") != "最新":
            return json_reply(200, {"subjects": []})
        limit = int(request.params.get("page_limit") or 20)
        start = int(request.params.get("page_start") or 0)
        entries = [s.list_entry(self.origin) for s in self.subjects.values() if s.kind == kind][start:start + limit]
        return Reply(200, json.dumps({"subjects": entries}, ensure_ascii=False).encode(),
                     {"Content-Type": "application/json; charset=utf-8"})
