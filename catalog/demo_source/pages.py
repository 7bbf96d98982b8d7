"""Douban's markup, built: a subject page (`render_subject`) and a list entry
(`Subject.list_entry`) in the shape movie.douban.com serves them, so that
catalog/clients/douban_pages.py reads them exactly as it reads Douban.

One builder for two users: the demo server `make run` syncs from (catalog/demo_source/server.py)
and the fake Douban of the tests (tests/catalog/douban_fake.py). The markup follows the saved
real pages in tests/catalog/pages/: the ids, classes and `property="v:..."` attributes, the
`#info` lines with their `<span class="pl">` labels, the people lines wrapped in
`<span class="attrs">`, the hidden long synopsis, the 季数 select of a TV season.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote


@dataclass
class Person:
    name: str
    person_id: str = ""  # "" renders Douban's search link instead of a celebrity link


@dataclass
class Subject:
    """One Douban subject as its page shows it: every value written as Douban writes it."""

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
        """This subject's entry in `/j/search_subjects` (Douban's keys, its cover size)."""
        episodes = f"{self.episode_count}集全" if self.kind == "tv" and self.episode_count else ""
        return {"episodes_info": episodes, "rate": self.rating, "cover_x": 1080, "title": self.title,
                "url": f"{origin}/subject/{self.source_id}/", "playable": False, "cover": self.cover,
                "id": self.source_id, "cover_y": 1528, "is_new": True}


def render_subject(subject: Subject) -> str:
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
