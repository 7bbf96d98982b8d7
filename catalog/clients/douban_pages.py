"""Reading Douban's answers: the newest-titles JSON and a subject page's HTML (with selectolax,
an HTML5 parser; the page is never searched with regular expressions, only single field
values are, such as "2010-09-01(中国大陆)" or "约60分钟").

A subject page is recognised by its `<span property="v:itemreviewed">`. A page without it is
not data: Douban's anti-bot or login page ("禁止访问", "检测到有异常请求从你的 IP 发出", the
captcha of sec.douban.com) and anything else are `NotASubject`, with `blocked` telling which.

Everything a page does not say stays empty. Where Douban writes a value in a form this parser
does not know (a runtime without a number, a date that is not a date), the field stays empty
too, rather than holding a guess.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from catalog.clients import MOVIE, Credit, ListedTitle, Release, TitleDetails

BLOCKED_MARKERS = ("异常请求", "禁止访问", "sec.douban.com", "captcha", "验证码", "登录跳转", "accounts/login", "passport/login")
ROLES = {"导演": "director", "编剧": "writer", "主演": "actor"}
_PERSON = re.compile(r"/(?:celebrity|personage)/(\d+)/?")
_DATE = re.compile(r"^\s*(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?\s*(?:\((.*)\))?\s*$")
_MINUTES = re.compile(r"(\d+)\s*(?:分钟|分|min)", re.IGNORECASE)
_IMDB = re.compile(r"\btt\d{5,10}\b")
_YEAR = re.compile(r"(\d{4})")
_CJK = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


class NotASubject(Exception):
    """The page is no subject page; `blocked` when it is Douban's anti-bot or login page."""

    def __init__(self, message: str, *, blocked: bool):
        super().__init__(message)
        self.blocked = blocked


class BadList(ValueError):
    """The newest-titles answer is not the JSON Douban sends."""


def parse_list(document: Any, *, kind: str) -> list[ListedTitle]:
    """`{"subjects": [{"id", "title", "rate", "url", "cover", ...}, ...]}` as ListedTitles."""
    if not isinstance(document, dict) or not isinstance(document.get("subjects"), list):
        raise BadList('the answer has no "subjects" list')
    listed = []
    for index, subject in enumerate(document["subjects"]):
        if not isinstance(subject, dict):
            raise BadList(f"subjects[{index}] is not an object")
        source_id = str(subject.get("id") or "").strip()
        if not source_id.isdigit():
            raise BadList(f"subjects[{index}].id is not a Douban id: {str(subject.get('id'))[:40]!r}")
        title = subject.get("title")
        if not isinstance(title, str) or not title.strip():
            raise BadList(f"subjects[{index}].title is missing")
        listed.append(ListedTitle(source_id=source_id, title=title.strip(), kind=kind, rating=_rating(subject.get("rate")),
                                  url=_text(subject.get("url")), cover_url=_text(subject.get("cover"))))
    return listed


def check_subject(html: str) -> LexborHTMLParser:
    """The parsed page, or NotASubject."""
    tree = LexborHTMLParser(html)
    if tree.css_first('span[property="v:itemreviewed"]') is not None:
        return tree
    text = " ".join(filter(None, (_node_text(tree.css_first("title")), _node_text(tree.body))))[:5000]
    if looks_blocked(html):
        return _raise(f"Douban answered with its anti-bot or login page ({_clip(text)!r})", blocked=True)
    return _raise(f"the page is no Douban subject page ({_clip(text)!r})", blocked=False)


def looks_blocked(text: str) -> bool:
    """Whether an answer that is not what was asked for is Douban's anti-bot or login page."""
    head = text[:20000]
    return any(marker in head for marker in BLOCKED_MARKERS)


def parse_subject(html: str, *, source_id: str, kind: str = MOVIE) -> TitleDetails:
    tree = check_subject(html)
    details = TitleDetails(source="douban", source_id=source_id, kind=kind)
    heading = _squash(_node_text(tree.css_first('span[property="v:itemreviewed"]')))
    info = tree.css_first("#info")
    lines = _info_lines(info)
    other_titles = _split(_line_text(lines.get("又名")))
    details.title, details.original_title = _titles(heading, _page_title(tree), other_titles)
    details.other_titles = other_titles
    year = _YEAR.search(_node_text(tree.css_first("#content h1 span.year")))
    details.year = int(year.group(1)) if year else None
    for label, role in ROLES.items():
        for order, link in enumerate((lines.get(label) or _Line()).links()):
            name = _squash(link.text(deep=True))
            if name:
                person = _PERSON.search(link.attributes.get("href") or "")
                details.credits.append(Credit(name=name, role=role, order=order,
                                              source_person_id=person.group(1) if person else ""))
    details.genres = [genre for node in _css(info, 'span[property="v:genre"]') if (genre := _squash(node.text()))]
    details.countries = _split(_line_text(lines.get("制片国家/地区")))
    details.languages = _split(_line_text(lines.get("语言")))
    details.releases = [release for node in _css(info, 'span[property="v:initialReleaseDate"]')
                        if (release := _release(node.attributes.get("content") or node.text()))]
    details.runtime_min = _minutes(_line_text(lines.get("片长")))
    details.episode_runtime_min = _minutes(_line_text(lines.get("单集片长")))
    details.episode_count = _count(_line_text(lines.get("集数")))
    details.season_number = _season(lines.get("季数"))
    imdb = _IMDB.search(_line_text(lines.get("IMDb")) or _line_text(lines.get("IMDb链接")))
    details.imdb_id = imdb.group(0) if imdb else ""
    details.synopsis = _synopsis(tree.css_first("#link-report-intra") or tree.css_first(".related-info"))
    rating = tree.css_first("#interest_sectl")
    details.rating = _rating(_node_text(rating.css_first('strong[property="v:average"]') if rating else None))
    details.votes = _count(_node_text(rating.css_first('span[property="v:votes"]') if rating else None))
    cover = tree.css_first("#mainpic img")
    details.cover_url = (cover.attributes.get("src") or "").strip() if cover is not None else ""
    return details


class _Line:
    """The nodes after one `<span class="pl">label:</span>` of #info, up to the next <br>."""

    def __init__(self) -> None:
        self.nodes: list[LexborNode] = []

    def text(self) -> str:
        return _squash("".join(node.text(deep=True) for node in self.nodes)).lstrip(":： ").strip()

    def links(self) -> list[LexborNode]:
        found = []
        for node in self.nodes:
            if node.tag == "a":
                found.append(node)
            elif node.tag != "-text":
                found.extend(node.css("a"))
        return [link for link in found if "more-attrs" not in (link.attributes.get("class") or "")]

    def select(self) -> LexborNode | None:
        for node in self.nodes:
            if node.tag == "select":
                return node
            if node.tag != "-text" and (inner := node.css_first("select")) is not None:
                return inner
        return None


def _info_lines(info: LexborNode | None) -> dict[str, _Line]:
    """label -> _Line. The people lines are `<span><span class="pl">导演</span>: <span class="attrs">`
    (the label's own span holds the line); the others are the label span and the nodes after it."""
    lines: dict[str, _Line] = {}
    if info is None:
        return lines
    current: _Line | None = None
    for node in info.iter(include_text=True):
        if node.tag == "br":
            current = None
            continue
        label_node = node if _is_label(node) else None
        if label_node is None and node.tag == "span":
            inner = node.css_first("span.pl")
            if inner is not None and node.css_first("span.attrs") is not None:
                line = _Line()
                line.nodes = [sibling for sibling in _after(inner)]
                lines.setdefault(_label(inner), line)
                current = None
                continue
        if label_node is not None:
            current = _Line()
            lines.setdefault(_label(label_node), current)
            continue
        if current is not None:
            current.nodes.append(node)
    return lines


def _is_label(node: LexborNode) -> bool:
    return node.tag == "span" and "pl" in (node.attributes.get("class") or "").split()


def _label(node: LexborNode) -> str:
    return _squash(node.text(deep=True)).rstrip(":：").strip()


def _after(node: LexborNode) -> list[LexborNode]:
    siblings = []
    sibling = node.next
    while sibling is not None:
        siblings.append(sibling)
        sibling = sibling.next
    return siblings


def _line_text(line: _Line | None) -> str:
    return line.text() if line is not None else ""


def _titles(heading: str, page_title: str, other_titles: list[str]) -> tuple[str, str]:
    """(title, original title) from "中文名 Original Name": the page's <title> ("中文名 (豆瓣)")
    says where the Chinese name ends; without it, the original name is the trailing part that
    has no Chinese in it. A heading that is one name is the title, with no original title."""
    if page_title and heading.startswith(page_title):
        return page_title, heading[len(page_title):].strip()
    words = heading.split(" ")
    for cut in range(1, len(words)):
        head, tail = " ".join(words[:cut]), " ".join(words[cut:])
        if _CJK.search(head) and not _CJK.search(tail):
            return head.strip(), tail.strip()
    return heading, ""


def _page_title(tree: LexborHTMLParser) -> str:
    title = _squash(_node_text(tree.css_first("title")))
    return title.removesuffix("(豆瓣)").strip() if title.endswith("(豆瓣)") else ""


def _release(value: str) -> Release | None:
    match = _DATE.match(value or "")
    if not match:
        return None
    year, month, day, region = match.groups()
    try:
        when = date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None
    precision = "day" if day else "month" if month else "year"
    return Release(date=when, region=(region or "").strip(), precision=precision)


def _minutes(value: str) -> int | None:
    """The first runtime of "142分钟 / 151分钟(加长版)", "约60分钟", "60min", "91 分钟"."""
    first = value.split("/")[0] if value else ""
    match = _MINUTES.search(first)
    if not match:
        return None
    minutes = int(match.group(1))
    return minutes if 0 < minutes < 10000 else None


def _count(value: str) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdigit() else None


def _season(line: _Line | None) -> int | None:
    if line is None:
        return None
    select = line.select()
    if select is not None:
        chosen = select.css_first("option[selected]")
        return _count(_squash(chosen.text())) if chosen is not None else None
    return _count(line.text())


def _synopsis(intro: LexborNode | None) -> str:
    """The hidden full version when the page has one, else the summary."""
    node = intro and (intro.css_first("span.all.hidden") or intro.css_first('span[property="v:summary"]'))
    if node is None:
        return ""
    paragraphs = (_squash(line) for line in node.text(deep=True).splitlines())
    return "\n".join(paragraph for paragraph in paragraphs if paragraph)


def _rating(value: Any) -> float | None:
    try:
        rating = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return rating if 0 < rating <= 10 else None


def _split(value: str) -> list[str]:
    return [part for part in (_squash(piece) for piece in value.split(" / ")) if part] if value else []


def _squash(text: str) -> str:
    """Whitespace (ideographic spaces and no-break spaces too) collapsed to single spaces."""
    return " ".join((text or "").replace("\u3000", " ").replace("\xa0", " ").split())


def _css(node: LexborNode | None, selector: str) -> list[LexborNode]:
    return node.css(selector) if node is not None else []


def _node_text(node: LexborNode | None) -> str:
    return node.text(deep=True) if node is not None else ""


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _clip(text: str) -> str:
    return _squash(text)[:80]


def _raise(message: str, *, blocked: bool):
    raise NotASubject(message, blocked=blocked)
