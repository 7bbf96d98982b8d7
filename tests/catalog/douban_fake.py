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
lines with `<span class="pl">` labels), checked against the saved real pages in pages/.
"""

from __future__ import annotations

import html
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.scrobbling.fakes import Failure, FakeServer, RecordedRequest, Reply, json_reply, scripted_body, text_reply

PAGES = Path(__file__).parent / "pages"
BLOCKED_PAGE = (PAGES / "blocked.html").read_text(encoding="utf-8")
_SUBJECT = re.compile(r"^/subject/(\d+)/?$")


@dataclass
class Person:
    name: str
    person_id: str = ""  # "" renders Douban's search link instead of a celebrity link


@dataclass
class FakeSubject:
    source_id: str
    title: str
    kind: str = "movie"
    original_title: str = ""
    year: int | None = None
    directors: list[Person] = field(default_factory=list)
    writers: list[Person] = field(default_factory=list)
    cast: list[Person] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    releases: list[str] = field(default_factory=list)  # as Douban writes them: "2023-07-21(中国大陆)", "2023"
    runtime: str = ""  # the 片长 line as written: "142分钟 / 151分钟(加长版)", "约60分钟"
    other_titles: list[str] = field(default_factory=list)
    imdb_id: str = ""
    synopsis: str = ""
    long_synopsis: str = ""  # the hidden full version, when the page has one
    rating: str = ""
    votes: str = ""
    cover: str = ""
    seasons: list[str] = field(default_factory=list)  # TV: the ids of every season, for the 季数 select
    episode_count: int | None = None
    episode_runtime: str = ""

    def list_entry(self, origin: str) -> dict[str, Any]:
        return {"episodes_info": "", "rate": self.rating, "cover_x": 1080, "title": self.title,
                "url": f"{origin}/subject/{self.source_id}/", "playable": False, "cover": self.cover,
                "id": self.source_id, "cover_y": 1528, "is_new": True}


def render(subject: FakeSubject) -> str:
    """A subject page in Douban's markup."""
    e = html.escape
    heading = f"{subject.title} {subject.original_title}".strip()
    lines: list[str] = []
    for label, people, rel in (("导演", subject.directors, ' rel="v:directedBy"'), ("编剧", subject.writers, ""),
                               ("主演", subject.cast, ' rel="v:starring"')):
        if people:
            links = " / ".join(
                f'<a href="/celebrity/{p.person_id}/"{rel}>{e(p.name)}</a>' if p.person_id
                else f'<a href="/subject_search?search_text={quote(p.name)}"{rel}>{e(p.name)}</a>' for p in people)
            lines.append(f"<span><span class='pl'>{label}</span>: <span class='attrs'>{links}</span></span><br/>")
    if subject.genres:
        lines.append('<span class="pl">类型:</span> ' + " / ".join(
            f'<span property="v:genre">{e(genre)}</span>' for genre in subject.genres) + "<br/>")
    if subject.countries:
        lines.append(f'<span class="pl">制片国家/地区:</span> {e(" / ".join(subject.countries))}<br/>')
    if subject.languages:
        lines.append(f'<span class="pl">语言:</span> {e(" / ".join(subject.languages))}<br/>')
    if subject.releases:
        label = "首播" if subject.kind == "tv" else "上映日期"
        lines.append(f'<span class="pl">{label}:</span> ' + " / ".join(
            f'<span property="v:initialReleaseDate" content="{e(r)}">{e(r)}</span>' for r in subject.releases) + "<br/>")
    if subject.seasons:
        options = "".join(f"<option value={sid} {'selected=selected' if sid == subject.source_id else ''} >{n}</option>"
                          for n, sid in enumerate(subject.seasons, 1))
        lines.append(f"<span class=\"pl\">季数:</span> <select id='season'>{options}</select><br/>")
    if subject.episode_count is not None:
        lines.append(f'<span class="pl">集数:</span> {subject.episode_count}<br/>')
    if subject.episode_runtime:
        lines.append(f'<span class="pl">单集片长:</span> {e(subject.episode_runtime)}<br/>')
    if subject.runtime:
        first, _, rest = subject.runtime.partition(" / ")
        minutes = re.match(r"\d+", first)
        shown = f'<span property="v:runtime" content="{minutes.group(0)}">{e(first)}</span>' if minutes else e(first)
        lines.append(f'<span class="pl">片长:</span> {shown}{" / " + e(rest) if rest else ""}<br/>')
    if subject.other_titles:
        lines.append(f'<span class="pl">又名:</span> {e(" / ".join(subject.other_titles))}<br/>')
    if subject.imdb_id:
        lines.append(f'<span class="pl">IMDb:</span> {e(subject.imdb_id)}<br>')
    year = f'<span class="year">({subject.year})</span>' if subject.year else ""
    cover = (f'<div id="mainpic" class=""><a class="nbgnbg" href="/subject/{subject.source_id}/photos?type=R">'
             f'<img src="{e(subject.cover)}" title="点击看更多海报" alt="{e(subject.title)}" rel="v:image" /></a></div>'
             if subject.cover else "")
    if subject.long_synopsis:
        summary = (f'<span class="short"><span property="v:summary">{e(subject.synopsis)}</span>'
                   f'<a href="javascript:void(0)" class="j a_show_full">(展开全部)</a></span>'
                   f'<span class="all hidden">{e(subject.long_synopsis)}</span>')
    else:
        summary = f'<span property="v:summary" class="">{e(subject.synopsis)}</span>' if subject.synopsis else ""
    return f"""<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>
        {e(subject.title)} (豆瓣)
</title>
</head>
<body>
<div id="wrapper"><div id="content">
<h1>
    <span property="v:itemreviewed">{e(heading)}</span>
    {year}
</h1>
<div class="grid-16-8 clearfix"><div class="article"><div class="indent clearfix"><div class="subjectwrap clearfix">
<div class="subject clearfix">
{cover}
<div id="info">
        {chr(10).join("        " + line for line in lines)}
</div>
</div>
<div id="interest_sectl"><div class="rating_wrap clearbox" rel="v:rating">
<div class="rating_self clearfix" typeof="v:Rating">
    <strong class="ll rating_num" property="v:average">{e(subject.rating)}</strong>
    <span property="v:best" content="10.0"></span>
    <div class="rating_right "><div class="rating_sum">
        {f'<a href="comments" class="rating_people"><span property="v:votes">{e(subject.votes)}</span>人评价</a>'
         if subject.votes else '<span>暂无评分</span>'}
    </div></div>
</div></div></div>
</div></div>
<div class="related-info" style="margin-bottom:-10px;">
    <div class="indent" id="link-report-intra">
        {summary}
    </div>
</div>
</div></div>
</div></div>
</body>
</html>
"""


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
