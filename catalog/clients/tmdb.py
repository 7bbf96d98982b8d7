"""TMDB API v3 client (https://developer.themoviedb.org/reference): details of movies and TV
shows with their credits, external ids and the other language's title, lookups by IMDb id,
the lists of changed ids, and what is newest.

Requests are GETs under `CATALOG_TMDB_API_ROOT` with `language=CATALOG_TMDB_LANGUAGE`. The
credential (`CATALOG_TMDB_API_KEY`) is either a v3 API key, sent as the `api_key` parameter,
or a v4 read access token (a JWT: three base64url parts joined by dots, `eyJ...`), sent as
`Authorization: Bearer`; `credential_kind` tells them apart by that shape. It is a secret: it
is kept out of `repr`, error messages and answers, and out of httpx's request log lines.

Calls made per title:
- a movie: one, `/movie/{id}?append_to_response=external_ids,credits,translations,release_dates`;
- a TV show: that one on `/tv/{id}`, then its seasons (with their episodes) appended to
  `/tv/{id}` twenty at a time (`append_to_response=season/1,season/2,...`, TMDB's limit on
  appended items), so one more call for a show of up to twenty seasons.
The other language's title (en-US, or zh-CN when the language is English) comes from the
appended translations, so it costs no call.

`newest` lists `/movie/now_playing` or `/tv/on_the_air` (one page, 20 titles): TMDB's idea of
what is showing now, which is what a catalog of "what is new" wants. `changes` pages through
`/movie/changes` or `/tv/changes` in windows of at most 14 days (TMDB's limit per call).

Politeness: every request waits its turn in project/ratelimit.py (one key per TMDB host,
shared by all workers), at most `CATALOG_TMDB_MAX_PER_S` a second. Network errors, timeouts,
5xx and 429 are retried (project/outside.py `with_retries`: exponential backoff with jitter,
honouring `Retry-After`); what is still failing is RetryLater.

Errors come back as `{"success": false, "status_code": 7, "status_message": "Invalid API key:
You must be granted a valid key."}` (401), 34 "The resource you requested could not be found."
(404), 25 "Your request count is over the allowed limit" (429). A refused credential and a
missing title are GiveUp naming the setting or the id.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from catalog.clients import (
    MOVIE,
    TV,
    CatalogSource,
    Credit,
    Episode,
    GiveUp,
    ListedTitle,
    Release,
    RetryLater,
    Season,
    TitleDetails,
    registry,
)
from project import outside, ratelimit

logger = logging.getLogger(__name__)

KINDS = (MOVIE, TV)
COVER_SIZE = "w500"
APPEND_MAX = 20  # items TMDB takes in one append_to_response
CHANGES_WINDOW_DAYS = 14  # days TMDB returns in one /changes call (start and end included)
CHANGES_MAX_PAGES = 500
RATE_WAIT_MAX_S = 30.0  # longest wait for a turn before the call is RetryLater
KEY_CODES = {3, 7, 10, 14, 36}  # authentication failed, invalid key, suspended key, ...
NOT_FOUND_CODES = {6, 34}  # invalid id, resource not found
WRITER_JOBS = {"Screenplay", "Writer", "Teleplay"}
IMDB_ID = re.compile(r"^tt\d{5,10}$")
JWT = re.compile(r"^[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}$")
_API_KEY_PARAM = re.compile(r"(api_key=)[^&\s\"']+")


def credential_kind(key: str) -> str:
    """"v4" for a read access token (a JWT), "v3" for an API key."""
    return "v4" if JWT.match(key.strip()) else "v3"


def other_language(language: str) -> str:
    """The language whose title is kept besides the configured one's."""
    return "zh-CN" if language.lower().startswith("en") else "en-US"


class _RedactApiKey(logging.Filter):
    """httpx logs every request's URL at INFO: a v3 key is in the query string."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any("api_key=" in str(arg) for arg in record.args):
            record.args = tuple(_API_KEY_PARAM.sub(r"\1***", str(arg)) if "api_key=" in str(arg) else arg
                                for arg in record.args)
        return True


logging.getLogger("httpx").addFilter(_RedactApiKey())


@registry.register
class TmdbClient(CatalogSource):
    name: ClassVar[str] = "tmdb"
    label: ClassVar[str] = "TMDB"

    def __init__(self, *, api_root: str | None = None, api_key: str | None = None, image_root: str | None = None,
                 language: str | None = None, timeout_s: float | None = None, max_per_s: float | None = None,
                 retries: int = 3, retry_first_s: float = 1.0, http: httpx.Client | None = None):
        self.api_root = (api_root or settings.CATALOG_TMDB_API_ROOT).rstrip("/")
        self._api_key = (settings.CATALOG_TMDB_API_KEY if api_key is None else api_key).strip()
        if not self._api_key:
            raise GiveUp("TMDB is not set up on this server (CATALOG_TMDB_API_KEY is empty).")
        self.credential = credential_kind(self._api_key)
        self.image_root = (image_root or settings.CATALOG_TMDB_IMAGE_ROOT).rstrip("/") + "/"
        self.language = language or settings.CATALOG_TMDB_LANGUAGE
        self.timeout_s = timeout_s or settings.CATALOG_TMDB_TIMEOUT_S
        self.min_interval_s = 1.0 / (max_per_s or settings.CATALOG_TMDB_MAX_PER_S)
        self.retries = retries
        self.retry_first_s = retry_first_s
        self._rate_key = urlsplit(self.api_root).netloc  # per host, as every source
        self._http = http or outside.http_client(timeout_s=self.timeout_s)

    def __repr__(self) -> str:
        return f"<TmdbClient {self.api_root} {self.credential} credential, {self.language}>"

    @classmethod
    def enabled(cls) -> bool:
        return bool(settings.CATALOG_TMDB_API_KEY.strip())

    def close(self) -> None:
        self._http.close()

    # --- the calls --------------------------------------------------------------------

    def details(self, source_id: str, *, kind: str) -> TitleDetails:
        """One movie or TV show (TV: with every season and its episodes)."""
        tmdb_id = _tmdb_id(source_id)
        path = f"/{_kind(kind)}/{tmdb_id}"
        what = f"TMDB {kind} {tmdb_id}"
        body = self._get(path, what=what, append="external_ids,credits,translations"
                         + (",release_dates" if kind == MOVIE else ""))
        if kind == MOVIE:
            return self._movie(tmdb_id, body)
        show = self._tv(tmdb_id, body)
        numbers = [number for season in _dicts(body.get("seasons"))
                   if (number := _int(season.get("season_number"))) is not None]
        for start in range(0, len(numbers), APPEND_MAX):
            group = numbers[start:start + APPEND_MAX]
            seasons = self._get(path, what=f"{what} seasons", append=",".join(f"season/{n}" for n in group))
            show.seasons.extend(_season(seasons.get(f"season/{n}"), n) for n in group
                                if isinstance(seasons.get(f"season/{n}"), dict))
        if show.episode_runtime_min is None:
            show.episode_runtime_min = next((episode.runtime_min for season in show.seasons
                                             for episode in season.episodes if episode.runtime_min), None)
        return show

    def find_by_imdb(self, imdb_id: str) -> list[tuple[str, str]]:
        """(kind, TMDB id) of the movies and TV shows with this IMDb id (tt1234567)."""
        imdb_id = str(imdb_id).strip()
        if not IMDB_ID.match(imdb_id):
            raise GiveUp(f"imdb_id: {imdb_id[:30]!r} is not an IMDb id (tt followed by digits).")
        body = self._get(f"/find/{imdb_id}", what=f"TMDB find {imdb_id}", params={"external_source": "imdb_id"})
        found: list[tuple[str, str]] = []
        for kind, key in ((MOVIE, "movie_results"), (TV, "tv_results")):
            found += [(kind, str(item["id"])) for item in _dicts(body.get(key)) if _int(item.get("id")) is not None]
        return found

    def changes(self, *, kind: str, since: date, until: date | None = None) -> list[str]:
        """Ids of the movies or TV shows changed from `since` to `until` (today on TMDB's clock,
        UTC), both included, each once, in TMDB's order."""
        until = until or datetime.now(UTC).date()
        if since > until:
            raise GiveUp(f"since: {since.isoformat()} is after {until.isoformat()}.")
        seen: dict[str, None] = {}
        start = since
        while start <= until:
            end = min(until, start + timedelta(days=CHANGES_WINDOW_DAYS - 1))
            page, pages = 1, 1
            while page <= min(pages, CHANGES_MAX_PAGES):
                body = self._get(f"/{_kind(kind)}/changes", what=f"TMDB {kind} changes", language=False,
                                 params={"start_date": start.isoformat(), "end_date": end.isoformat(),
                                         "page": str(page)})
                for item in _dicts(body.get("results")):
                    if _int(item.get("id")) is not None:
                        seen.setdefault(str(item["id"]), None)
                pages = _int(body.get("total_pages")) or 1
                page += 1
            start = end + timedelta(days=1)
        return list(seen)

    def newest(self, *, kind: str) -> list[ListedTitle]:
        """What is in cinemas (movies) or airing (TV) now, first page."""
        path = "/movie/now_playing" if _kind(kind) == MOVIE else "/tv/on_the_air"
        body = self._get(path, what=f"TMDB {path[1:]}")
        listed = []
        for item in _dicts(body.get("results")):
            if _int(item.get("id")) is None:
                continue
            listed.append(ListedTitle(
                source_id=str(item["id"]), title=_str(item.get("title") or item.get("name")), kind=kind,
                rating=_rating(item), url=f"https://www.themoviedb.org/{kind}/{item['id']}",
                cover_url=self._cover(item.get("poster_path"))))
        return listed

    # --- mapping ----------------------------------------------------------------------

    def _common(self, tmdb_id: str, kind: str, body: dict[str, Any], *, title_key: str) -> TitleDetails:
        external = body.get("external_ids") if isinstance(body.get("external_ids"), dict) else {}
        imdb_id = _str(body.get("imdb_id") or external.get("imdb_id"))
        ids = {"imdb": imdb_id, "tvdb": _str(external.get("tvdb_id")), "wikidata": _str(external.get("wikidata_id"))}
        title = _str(body.get(title_key))
        original = _str(body.get(f"original_{title_key}"))
        other, other_overview = self._translation(body, title_key)
        details = TitleDetails(
            source=self.name, source_id=tmdb_id, kind=kind, title=title, original_title=original,
            other_titles=[other] if other and other not in (title, original) else [],
            rating=_rating(body), votes=_int(body.get("vote_count")),
            synopsis=_str(body.get("overview")) or other_overview, cover_url=self._cover(body.get("poster_path")),
            imdb_id=imdb_id if IMDB_ID.match(imdb_id) else "",
            genres=[_str(genre.get("name")) for genre in _dicts(body.get("genres")) if genre.get("name")],
            countries=_codes(body.get("production_countries"), "iso_3166_1"),
            languages=_codes(body.get("spoken_languages"), "iso_639_1"),
            credits=_credits(body.get("credits")),
            external_ids={source: value for source, value in ids.items() if value},
        )
        return details

    def _movie(self, tmdb_id: str, body: dict[str, Any]) -> TitleDetails:
        details = self._common(tmdb_id, MOVIE, body, title_key="title")
        released = _date(body.get("release_date"))
        # Every country's dated releases when appended; else TMDB's primary release date.
        details.releases = _releases(body.get("release_dates")) or ([Release(date=released)] if released else [])
        details.year = released.year if released else (details.release_date.year if details.releases else None)
        details.runtime_min = _int(body.get("runtime")) or None
        return details

    def _tv(self, tmdb_id: str, body: dict[str, Any]) -> TitleDetails:
        details = self._common(tmdb_id, TV, body, title_key="name")
        first_air = _date(body.get("first_air_date"))
        details.releases = [Release(date=first_air)] if first_air else []
        details.year = first_air.year if first_air else None
        for code in body.get("origin_country") or []:
            if isinstance(code, str) and code and code not in details.countries:
                details.countries.append(code)
        details.episode_count = _int(body.get("number_of_episodes"))
        runtimes = [minutes for minutes in (body.get("episode_run_time") or []) if _int(minutes)]
        details.episode_runtime_min = _int(runtimes[0]) if runtimes else None
        return details

    def _translation(self, body: dict[str, Any], title_key: str) -> tuple[str, str]:
        """(title, overview) in the other language, from the appended translations."""
        wanted = other_language(self.language)
        language, _, region = wanted.partition("-")
        translations = body.get("translations") if isinstance(body.get("translations"), dict) else {}
        matches = [item for item in _dicts(translations.get("translations")) if item.get("iso_639_1") == language]
        matches.sort(key=lambda item: item.get("iso_3166_1") != region)  # en-US before en-GB
        for item in matches:
            data = item.get("data") if isinstance(item.get("data"), dict) else {}
            if _str(data.get(title_key)):
                return _str(data.get(title_key)), _str(data.get("overview"))
        return "", ""

    def _cover(self, poster_path: Any) -> str:
        return f"{self.image_root}{COVER_SIZE}{poster_path}" if isinstance(poster_path, str) and poster_path else ""

    # --- HTTP -------------------------------------------------------------------------

    def _get(self, path: str, *, what: str, params: dict[str, str] | None = None, append: str = "",
             language: bool = True) -> dict[str, Any]:
        query = dict(params or {})
        if language:
            query["language"] = self.language
        if append:
            query["append_to_response"] = append
        headers = {"Accept": "application/json"}
        if self.credential == "v4":
            headers["Authorization"] = f"Bearer {self._api_key}"
        else:
            query["api_key"] = self._api_key
        try:
            return outside.with_retries(lambda: self._once(path, what=what, query=query, headers=headers),
                                        attempts=self.retries + 1, first_s=self.retry_first_s)
        except (RetryLater, GiveUp) as exc:
            raise self._scrubbed(exc) from None

    def _once(self, path: str, *, what: str, query: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
        ratelimit.wait_turn(self._rate_key, min_interval_s=self.min_interval_s, timeout_s=RATE_WAIT_MAX_S)
        response = outside.send(self._http, "GET", self.api_root + path, what=what, timeout_s=self.timeout_s,
                                params=query, headers=headers)
        body = outside.json_or_none(response)
        code = _int(body.get("status_code")) if isinstance(body, dict) else None
        message = _str(body.get("status_message")) if isinstance(body, dict) else ""
        detail = f" (code {code}: {message})" if code is not None else f" (HTTP {response.status_code})"
        outside.raise_if_busy(response, f"{what}: TMDB is busy{detail}")
        if response.status_code >= 400:
            answer = outside.answer_text(response)
            if code in KEY_CODES or response.status_code == 401:
                raise GiveUp(f"{what}: TMDB refused the credential in CATALOG_TMDB_API_KEY{detail}",
                             status=response.status_code, code=code, answer=answer)
            if code in NOT_FOUND_CODES or response.status_code == 404:
                raise GiveUp(f"{what}: TMDB has no such title{detail}", status=response.status_code, code=code,
                             answer=answer)
            raise GiveUp(f"{what}: TMDB refused the request{detail}", status=response.status_code, code=code,
                         answer=answer)
        if not isinstance(body, dict):
            raise GiveUp(f"{what}: TMDB's answer is not a JSON object", status=response.status_code,
                         answer=outside.answer_text(response))
        return body

    def _scrubbed(self, exc: RetryLater | GiveUp) -> RetryLater | GiveUp:
        """The error with the credential cut out of its message and answer, wherever it got in."""
        text, answer = str(exc), exc.answer
        if self._api_key not in text and self._api_key not in answer:
            return exc
        text, answer = text.replace(self._api_key, "***"), answer.replace(self._api_key, "***")
        if isinstance(exc, RetryLater):
            return type(exc)(text, retry_after_s=exc.retry_after_s, status=exc.status, answer=answer)
        return type(exc)(text, status=exc.status, code=exc.code, answer=answer)


# --- helpers of the mapping ---------------------------------------------------------------

def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise GiveUp(f"kind: {str(kind)[:20]!r} is not one of {', '.join(KINDS)}.")
    return kind


def _tmdb_id(source_id: Any) -> str:
    text = str(source_id).strip()
    if not text.isdigit() or not text.isascii():
        raise GiveUp(f"source_id: {text[:30]!r} is not a TMDB id (digits).")
    return str(int(text))


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _str(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    return str(value).strip() if isinstance(value, (str, int)) else ""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _date(value: Any) -> date | None:
    """A TMDB date ("2010-07-15", or "2010-07-16T00:00:00.000Z" in release_dates); "" is none."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _rating(body: dict[str, Any]) -> float | None:
    average, votes = body.get("vote_average"), _int(body.get("vote_count"))
    if not isinstance(average, (int, float)) or isinstance(average, bool) or not votes:
        return None  # TMDB says 0.0 for a title nobody voted on
    return round(float(average), 3)


def _codes(value: Any, key: str) -> list[str]:
    """ISO codes ("US", "en"): TMDB names countries in English whatever the language."""
    codes: list[str] = []
    for item in _dicts(value):
        code = _str(item.get(key))
        if code and code not in codes:
            codes.append(code)
    return codes


def _releases(value: Any) -> list[Release]:
    """release_dates: every country's dated releases, earliest first."""
    releases: set[tuple[date, str]] = set()
    results = value.get("results") if isinstance(value, dict) else None
    for country in _dicts(results):
        region = _str(country.get("iso_3166_1"))
        for item in _dicts(country.get("release_dates")):
            if (day := _date(item.get("release_date"))) is not None:
                releases.add((day, region))
    return [Release(date=day, region=region) for day, region in sorted(releases)]


def _credits(value: Any) -> list[Credit]:
    """Directors and writers in TMDB's crew order, each once; the cast by its `order`."""
    credits_ = value if isinstance(value, dict) else {}
    found: list[Credit] = []
    for role, jobs in (("director", {"Director"}), ("writer", WRITER_JOBS)):
        people: dict[str, str] = {}
        for person in _dicts(credits_.get("crew")):
            name, person_id = _str(person.get("name")), _str(person.get("id"))
            if person.get("job") in jobs and name and (person_id or name) not in people:
                people[person_id or name] = name
        found += [Credit(name=name, role=role, order=order, source_person_id=person_id if person_id != name else "")
                  for order, (person_id, name) in enumerate(people.items())]
    cast = sorted((person for person in _dicts(credits_.get("cast")) if _str(person.get("name"))),
                  key=lambda person: _int(person.get("order")) if _int(person.get("order")) is not None else 10**6)
    found += [Credit(name=_str(person.get("name")), role="actor", order=order, character=_str(person.get("character")),
                     source_person_id=_str(person.get("id")))
              for order, person in enumerate(cast)]
    return found


def _season(body: dict[str, Any], number: int) -> Season:
    episodes = []
    for item in _dicts(body.get("episodes")):
        episode_number = _int(item.get("episode_number"))
        if episode_number is None:
            continue
        episodes.append(Episode(number=episode_number, title=_str(item.get("name")), air_date=_date(item.get("air_date")),
                                runtime_min=_int(item.get("runtime")) or None))
    return Season(number=number, title=_str(body.get("name")), air_date=_date(body.get("air_date")),
                  episodes=tuple(sorted(episodes, key=lambda episode: episode.number)))
