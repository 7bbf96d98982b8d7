"""Douban (movie.douban.com): the newest films and TV series, and each subject's page.

    newest:  GET {root}/j/search_subjects?type=movie|tv&tag=最新&page_limit=80&page_start=0  (JSON)
    details: GET {root}/subject/<id>/                                                    (HTML)

The pages are read by catalog/clients/douban_pages.py. Politeness: every request first waits
its turn in project/ratelimit.py, one key per Douban host shared by every worker, at most one
request every CATALOG_DOUBAN_MIN_INTERVAL_S; network errors, timeouts, 429 and 5xx are tried
again (project/outside.py `with_retries`: exponential backoff with jitter, Retry-After
honoured), each try waiting its turn again.

Douban's anti-bot answers (a redirect to sec.douban.com or to the login page, a 403 or 418
with a captcha, a 200 page "检测到有异常请求从你的 IP 发出") raise `Blocked` with a backoff of
BLOCKED_BACKOFF_S: the run stops rather than hammering on, and nothing on such a page is taken
as data. A list that is not the JSON Douban sends, a page that is no subject, or a subject
that does not exist are GiveUp.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from catalog.clients import MOVIE, TV, Blocked, CatalogSource, GiveUp, ListedTitle, TitleDetails, registry
from catalog.clients.douban_pages import BLOCKED_MARKERS, BadList, NotASubject, looks_blocked, parse_list, parse_subject
from project import outside, ratelimit

BLOCKED_BACKOFF_S = 1800.0  # after an anti-bot page: half an hour before the next try
NEWEST_TAG = "最新"
NEWEST_LIMIT = 80
HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Accept-Language": "zh-CN,zh;q=0.9,en;q=0.6",
}


@registry.register
class DoubanClient(CatalogSource):
    name = "douban"
    label = "Douban"

    def __init__(self, *, root: str | None = None, min_interval_s: float | None = None, timeout_s: float | None = None,
                 retries: int | None = None, wait_max_s: float | None = None, http: httpx.Client | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.root = (root or settings.CATALOG_DOUBAN_ROOT).rstrip("/")
        self.min_interval_s = settings.CATALOG_DOUBAN_MIN_INTERVAL_S if min_interval_s is None else min_interval_s
        self.timeout_s = settings.CATALOG_DOUBAN_TIMEOUT_S if timeout_s is None else timeout_s
        self.retries = settings.CATALOG_DOUBAN_RETRIES if retries is None else retries
        self.wait_max_s = settings.CATALOG_DOUBAN_WAIT_MAX_S if wait_max_s is None else wait_max_s
        self._own_http = http is None
        self._http = http or outside.http_client(timeout_s=self.timeout_s)
        self._sleep = sleep
        self.rate_key = "douban:" + (urlsplit(self.root).netloc or self.root)

    def newest(self, *, kind: str) -> list[ListedTitle]:
        _check_kind(kind)
        what = f"Douban newest {kind}"
        response = self._get(f"{self.root}/j/search_subjects", what=what, params={
            "type": kind, "tag": NEWEST_TAG, "page_limit": str(NEWEST_LIMIT), "page_start": "0"})
        document = outside.json_or_none(response)
        if document is None:
            if looks_blocked(outside.answer_text(response)):
                raise Blocked(f"{what}: Douban answered with its anti-bot or login page",
                              retry_after_s=BLOCKED_BACKOFF_S, status=response.status_code,
                              answer=outside.answer_text(response))
            raise GiveUp(f"{what}: the answer is not JSON", status=response.status_code,
                         answer=outside.answer_text(response))
        try:
            return parse_list(document, kind=kind)
        except BadList as exc:
            raise GiveUp(f"{what}: the answer is not Douban's list ({exc})", status=response.status_code,
                         answer=outside.answer_text(response)) from None

    def details(self, source_id: str, *, kind: str) -> TitleDetails:
        _check_kind(kind)
        source_id = str(source_id).strip()
        if not source_id.isdigit() or len(source_id) > 12:
            raise GiveUp(f"Douban subject id {source_id[:40]!r} is not a number.")
        what = f"Douban subject {source_id}"
        response = self._get(f"{self.root}/subject/{source_id}/", what=what)
        try:
            return parse_subject(response.text, source_id=source_id, kind=kind)
        except NotASubject as exc:
            if exc.blocked:
                raise Blocked(f"{what}: {exc}", retry_after_s=BLOCKED_BACKOFF_S, status=response.status_code,
                              answer=outside.answer_text(response)) from None
            raise GiveUp(f"{what}: {exc}", status=response.status_code, answer=outside.answer_text(response)) from None

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def _get(self, url: str, *, what: str, params: dict[str, str] | None = None) -> httpx.Response:
        return outside.with_retries(lambda: self._once(url, what=what, params=params), attempts=self.retries + 1,
                                    sleep=self._sleep)

    def _once(self, url: str, *, what: str, params: dict[str, str] | None) -> httpx.Response:
        ratelimit.wait_turn(self.rate_key, min_interval_s=self.min_interval_s, timeout_s=self.wait_max_s)
        response = outside.send(self._http, "GET", url, what=what, timeout_s=self.timeout_s, params=params,
                                headers=HEADERS, follow_redirects=False)
        status = response.status_code
        if response.is_redirect:
            location = response.headers.get("Location", "")
            if any(marker in location for marker in BLOCKED_MARKERS):
                raise Blocked(f"{what}: Douban sent us to its anti-bot or login page ({location[:120]})",
                              retry_after_s=BLOCKED_BACKOFF_S, status=status)
            raise GiveUp(f"{what}: Douban redirected to {location[:120] or 'nowhere'}", status=status)
        if status in (403, 418):
            raise Blocked(f"{what}: Douban refused us (HTTP {status}, its anti-bot answer)",
                          retry_after_s=BLOCKED_BACKOFF_S, status=status, answer=outside.answer_text(response))
        outside.raise_if_busy(response, f"{what}: Douban is busy (HTTP {status})")
        if status == 404:
            raise GiveUp(f"{what}: Douban has no such subject (HTTP 404)", status=status)
        if status >= 400:
            raise GiveUp(f"{what}: Douban answered HTTP {status}", status=status, answer=outside.answer_text(response))
        return response


def _check_kind(kind: Any) -> None:
    if kind not in (MOVIE, TV):
        raise GiveUp(f"Douban lists only {MOVIE!r} and {TV!r}, not {str(kind)[:20]!r}.")
