"""A local fake of TMDB's API v3 (https://developer.themoviedb.org/reference) over real HTTP,
for tests and benchmarks:

    fake = FakeTmdb(api_key="0123...", read_token="eyJ...").start()
    fake.add_movie(inception())
    ... TmdbClient(api_root=fake.url, api_key=...) ...
    fake.stop()

It answers the way TMDB does: the credential is a v3 key in `api_key` or a v4 read token in
`Authorization: Bearer` (anything else: 401, status_code 7); unknown ids are 404 status_code 34;
details take `language` (the title and overview of that translation, as TMDB serves them) and
`append_to_response` (external_ids, credits, translations, release_dates, season/N; at most 20
items, the rest ignored); `/find/{id}?external_source=imdb_id`; `/movie/changes` and
`/tv/changes` paged (100 ids a page) over at most 14 days; `now_playing` / `on_the_air`.
Every request is recorded (`fake.requests`, and its arrival time in `fake.arrivals`); `fail_next(n, status=429, headers={"Retry-After":
"1"})` scripts failures (the body is TMDB's error for that status unless given).
"""

from __future__ import annotations

import copy
import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.scrobbling.fakes import Failure, FakeServer, RecordedRequest, Reply, json_reply, scripted_body

ERRORS = {  # status_code -> (HTTP status, status_message), as TMDB sends them
    7: (401, "Invalid API key: You must be granted a valid key."),
    25: (429, "Your request count (#) is over the allowed limit of (40)."),
    34: (404, "The resource you requested could not be found."),
    11: (500, "Internal error: Something went wrong, contact TMDb."),
    43: (503, "Couldn't connect to the backend server."),
}
ERROR_FOR_STATUS = {401: 7, 404: 34, 429: 25, 500: 11, 503: 43}
APPEND_MAX = 20
PER_PAGE = 100
WINDOW_DAYS = 14
DETAIL = re.compile(r"^/3/(movie|tv)/(\d+)$")
SEASON = re.compile(r"^/3/tv/(\d+)/season/(\d+)$")
FIND = re.compile(r"^/3/find/([^/]+)$")
CHANGES = re.compile(r"^/3/(movie|tv)/changes$")


def tmdb_error(code: int, message: str = "") -> Reply:
    status, default = ERRORS.get(code, (400, "Invalid request."))
    return json_reply(status, {"success": False, "status_code": code, "status_message": message or default})


class FakeTmdb(FakeServer):
    api_prefix = "/3"

    def __init__(self, *, api_key: str = "", read_token: str = "") -> None:
        super().__init__()
        self.api_key = api_key
        self.read_token = read_token
        self.movies: dict[int, dict[str, Any]] = {}
        self.shows: dict[int, dict[str, Any]] = {}
        self.seasons: dict[tuple[int, int], dict[str, Any]] = {}
        self.changed: dict[str, list[tuple[date, int]]] = {"movie": [], "tv": []}
        self.now_playing: list[int] = []
        self.on_the_air: list[int] = []
        self.arrivals: list[float] = []  # time.monotonic() of each request, in order

    def handle(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self.arrivals.append(time.monotonic())
        return super().handle(request)

    @property
    def url(self) -> str:
        return f"{self.origin}/3"

    def add_movie(self, movie: dict[str, Any]) -> None:
        with self.lock:
            self.movies[movie["id"]] = movie

    def add_show(self, show: dict[str, Any], seasons: list[dict[str, Any]]) -> None:
        with self.lock:
            self.shows[show["id"]] = show
            for season in seasons:
                self.seasons[(show["id"], season["season_number"])] = season

    def api_requests(self, path_prefix: str = "/3/") -> list[RecordedRequest]:
        with self.lock:
            return [request for request in self.requests if request.path.startswith(path_prefix)]

    # --- serving ----------------------------------------------------------------------

    def failure_reply(self, failure: Failure) -> Reply:
        status = failure.status or 500
        code = failure.error_code or ERROR_FOR_STATUS.get(status, 11)
        body, content_type = scripted_body(failure, {"success": False, "status_code": code,
                                                     "status_message": ERRORS.get(code, (0, "Error."))[1]})
        return Reply(status, body, {"Content-Type": content_type, **failure.headers})

    def route(self, request: RecordedRequest) -> Reply:
        if request.method != "GET":
            return tmdb_error(34)
        if not self._authorized(request):
            return tmdb_error(7)
        path, params = request.path.rstrip("/"), request.params
        if match := CHANGES.match(path):
            return self._changes(match[1], params)
        if path in ("/3/movie/now_playing", "/3/tv/on_the_air"):
            return self._listing("movie" if "movie" in path else "tv", params)
        if match := DETAIL.match(path):
            return self._details(match[1], int(match[2]), params)
        if match := SEASON.match(path):
            season = self.seasons.get((int(match[1]), int(match[2])))
            return json_reply(200, season) if season else tmdb_error(34)
        if match := FIND.match(path):
            return self._find(match[1], params)
        return tmdb_error(34)

    def _authorized(self, request: RecordedRequest) -> bool:
        bearer = request.headers.get("authorization", "")
        if self.read_token and bearer == f"Bearer {self.read_token}":
            return True
        return bool(self.api_key) and request.params.get("api_key") == self.api_key

    def _localized(self, item: dict[str, Any], kind: str, language: str) -> dict[str, Any]:
        body = {key: value for key, value in item.items() if key != "translations"}
        code, _, region = language.partition("-")
        title_key = "title" if kind == "movie" else "name"
        for translation in item.get("translations", {}).get("translations", []):
            if translation["iso_639_1"] == code and (not region or translation["iso_3166_1"] == region):
                data = translation["data"]
                body[title_key] = data.get(title_key) or item[f"original_{title_key}"]
                body["overview"] = data.get("overview", "")
                break
        return body

    def _details(self, kind: str, tmdb_id: int, params: dict[str, str]) -> Reply:
        item = (self.movies if kind == "movie" else self.shows).get(tmdb_id)
        if item is None:
            return tmdb_error(34)
        body = self._localized(item, kind, params.get("language", "en-US"))
        for key in ("external_ids", "credits", "release_dates"):
            body.pop(key, None)
        appended = [name for name in params.get("append_to_response", "").split(",") if name][:APPEND_MAX]
        for name in appended:
            if name in ("external_ids", "credits", "release_dates", "translations") and name in item:
                body[name] = copy.deepcopy(item[name])
            elif kind == "tv" and (match := re.fullmatch(r"season/(\d+)", name)):
                season = self.seasons.get((tmdb_id, int(match[1])))
                if season is not None:
                    body[name] = season
        return json_reply(200, body)

    def _find(self, external_id: str, params: dict[str, str]) -> Reply:
        if params.get("external_source") != "imdb_id":
            return json_reply(400, {"success": False, "status_code": 5, "status_message": "Invalid parameters."})
        found: dict[str, list[dict[str, Any]]] = {"movie_results": [], "person_results": [], "tv_results": [],
                                                  "tv_episode_results": [], "tv_season_results": []}
        for kind, items in (("movie", self.movies), ("tv", self.shows)):
            for item in items.values():
                if item.get("external_ids", {}).get("imdb_id") == external_id or item.get("imdb_id") == external_id:
                    found[f"{kind}_results"].append(_summary(item, kind))
        return json_reply(200, found)

    def _changes(self, kind: str, params: dict[str, str]) -> Reply:
        try:
            end = date.fromisoformat(params["end_date"]) if params.get("end_date") else datetime.now(UTC).date()
            start = date.fromisoformat(params["start_date"]) if params.get("start_date") else end - timedelta(days=1)
            page = int(params.get("page", "1"))
        except ValueError:
            return json_reply(400, {"success": False, "status_code": 5, "status_message": "Invalid parameters."})
        if (end - start).days >= WINDOW_DAYS or end < start:
            return json_reply(400, {"success": False, "status_code": 5, "status_message":
                                    "Invalid date range: Should be a range no longer than 14 days."})
        ids: list[int] = []
        for day, tmdb_id in sorted(self.changed[kind], reverse=True):
            if start <= day <= end and tmdb_id not in ids:
                ids.append(tmdb_id)
        pages = max(1, -(-len(ids) // PER_PAGE))
        results = [{"id": tmdb_id, "adult": False} for tmdb_id in ids[(page - 1) * PER_PAGE:page * PER_PAGE]]
        return json_reply(200, {"results": results, "page": page, "total_pages": pages, "total_results": len(ids)})

    def _listing(self, kind: str, params: dict[str, str]) -> Reply:
        ids, items = (self.now_playing, self.movies) if kind == "movie" else (self.on_the_air, self.shows)
        language = params.get("language", "en-US")
        results = [_summary(self._localized(items[tmdb_id], kind, language), kind) for tmdb_id in ids]
        return json_reply(200, {"page": 1, "results": results, "total_pages": 1, "total_results": len(results)})


def _summary(item: dict[str, Any], kind: str) -> dict[str, Any]:
    """A title in lists and find results."""
    keys = ["id", "overview", "poster_path", "backdrop_path", "original_language", "popularity", "vote_average",
            "vote_count", "genre_ids", "adult"]
    keys += ["title", "original_title", "release_date", "video"] if kind == "movie" else \
        ["name", "original_name", "first_air_date", "origin_country"]
    summary = {key: item.get(key) for key in keys}
    summary["media_type"] = kind
    summary["genre_ids"] = [genre["id"] for genre in item.get("genres", [])]
    return summary


# --- sample titles, in TMDB's shapes ----------------------------------------------------------

def _translation(country: str, language: str, name: str, title_key: str, title: str, overview: str) -> dict:
    return {"iso_3166_1": country, "iso_639_1": language, "name": name, "english_name": name,
            "data": {title_key: title, "overview": overview, "homepage": "", "tagline": ""}}


def sample_movie() -> dict[str, Any]:
    """A movie as /movie/{id} returns it (English base), with what can be appended."""
    return {
        "id": 27205, "adult": False, "backdrop_path": "/8ZTVqvKDQ8emSGUEMjsS4yHAwrp.jpg",
        "budget": 160000000, "genres": [{"id": 28, "name": "Action"}, {"id": 878, "name": "Science Fiction"}],
        "homepage": "", "imdb_id": "tt1375666", "original_language": "en", "original_title": "Inception",
        "overview": "Cobb, a skilled thief who commits corporate espionage...", "popularity": 83.9,
        "poster_path": "/oYuLEt3zVCKq57qu2F8dT7NIa6f.jpg",
        "production_companies": [{"id": 923, "logo_path": None, "name": "Legendary Pictures", "origin_country": "US"}],
        "production_countries": [{"iso_3166_1": "GB", "name": "United Kingdom"},
                                 {"iso_3166_1": "US", "name": "United States of America"}],
        "release_date": "2010-07-15", "revenue": 825532764, "runtime": 148,
        "spoken_languages": [{"english_name": "English", "iso_639_1": "en", "name": "English"},
                             {"english_name": "Japanese", "iso_639_1": "ja", "name": "日本語"}],
        "status": "Released", "tagline": "Your mind is the scene of the crime.", "title": "Inception",
        "video": False, "vote_average": 8.369, "vote_count": 35000,
        "external_ids": {"imdb_id": "tt1375666", "wikidata_id": "Q25188", "facebook_id": "inception",
                         "instagram_id": None, "twitter_id": None},
        "credits": {
            "cast": [
                {"adult": False, "gender": 2, "id": 24045, "known_for_department": "Acting", "name": "Joseph Gordon-Levitt",
                 "original_name": "Joseph Gordon-Levitt", "popularity": 20.0, "profile_path": None, "cast_id": 2,
                 "character": "Arthur", "credit_id": "52fe4534c3a368484e04de03", "order": 1},
                {"adult": False, "gender": 2, "id": 6193, "known_for_department": "Acting", "name": "Leonardo DiCaprio",
                 "original_name": "Leonardo DiCaprio", "popularity": 60.0, "profile_path": None, "cast_id": 1,
                 "character": "Dom Cobb", "credit_id": "52fe4534c3a368484e04ddfd", "order": 0},
                {"adult": False, "gender": 1, "id": 27578, "known_for_department": "Acting", "name": "Elliot Page",
                 "original_name": "Elliot Page", "popularity": 15.0, "profile_path": None, "cast_id": 3,
                 "character": "Ariadne", "credit_id": "52fe4534c3a368484e04de07", "order": 2},
            ],
            "crew": [
                {"adult": False, "gender": 2, "id": 525, "known_for_department": "Directing", "name": "Christopher Nolan",
                 "original_name": "Christopher Nolan", "credit_id": "52fe4534c3a368484e04de5d",
                 "department": "Directing", "job": "Director"},
                {"adult": False, "gender": 2, "id": 525, "known_for_department": "Directing", "name": "Christopher Nolan",
                 "original_name": "Christopher Nolan", "credit_id": "52fe4534c3a368484e04de63",
                 "department": "Writing", "job": "Screenplay"},
                {"adult": False, "gender": 2, "id": 947, "known_for_department": "Sound", "name": "Hans Zimmer",
                 "original_name": "Hans Zimmer", "credit_id": "52fe4534c3a368484e04de6f",
                 "department": "Sound", "job": "Original Music Composer"},
            ],
        },
        "release_dates": {"results": [
            {"iso_3166_1": "US", "release_dates": [
                {"certification": "PG-13", "iso_639_1": "", "note": "Los Angeles premiere",
                 "release_date": "2010-07-13T00:00:00.000Z", "type": 1},
                {"certification": "PG-13", "iso_639_1": "", "note": "", "release_date": "2010-07-16T00:00:00.000Z",
                 "type": 3}]},
            {"iso_3166_1": "CN", "release_dates": [
                {"certification": "", "iso_639_1": "", "note": "", "release_date": "2010-09-01T00:00:00.000Z",
                 "type": 3}]},
        ]},
        "translations": {"translations": [
            _translation("US", "en", "English", "title", "", "Cobb, a skilled thief who commits corporate espionage..."),
            _translation("GB", "en", "English", "title", "", ""),
            _translation("CN", "zh", "普通话", "title", "盗梦空间", "道姆·柯布与同事阿瑟和纳什在一次针对日本能源大亨齐藤的盗梦行动中失败……"),
        ]},
    }


def sample_show(seasons: int = 2, episodes: int = 3) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A TV show as /tv/{id} returns it, and its seasons as /tv/{id}/season/{n} return them
    (season 0, specials, and 1..`seasons`)."""
    season_bodies = []
    for number in range(0, seasons + 1):
        count = 1 if number == 0 else episodes
        season_bodies.append({
            "_id": f"5256c8{number:02d}", "air_date": f"{2010 + max(number, 1)}-04-17",
            "name": "特别篇" if number == 0 else f"第 {number} 季", "overview": "", "id": 3620 + number,
            "poster_path": f"/season{number}.jpg", "season_number": number, "vote_average": 8.0,
            "episodes": [
                {"air_date": f"{2010 + max(number, 1)}-04-{17 + index:02d}", "episode_number": index + 1,
                 "episode_type": "standard", "id": 63000 + number * 100 + index, "name": f"S{number}E{index + 1} 标题",
                 "overview": "", "production_code": "", "runtime": 55 + index, "season_number": number,
                 "show_id": 1399, "still_path": None, "vote_average": 7.9, "vote_count": 200,
                 "crew": [], "guest_stars": []}
                for index in range(count)],
        })
    show = {
        "id": 1399, "adult": False, "backdrop_path": "/suopoADq0k8YZr4dQXcU6pToj6s.jpg",
        "created_by": [{"id": 9813, "credit_id": "5256c8c219c2956ff604858a", "name": "David Benioff",
                        "original_name": "David Benioff", "gender": 2, "profile_path": None}],
        "episode_run_time": [], "first_air_date": "2011-04-17",
        "genres": [{"id": 10765, "name": "Sci-Fi & Fantasy"}, {"id": 18, "name": "Drama"}],
        "homepage": "", "in_production": False, "languages": ["en"], "last_air_date": "2019-05-19",
        "name": "Game of Thrones", "networks": [{"id": 49, "name": "HBO", "origin_country": "US"}],
        "number_of_episodes": 73, "number_of_seasons": seasons, "origin_country": ["US"], "original_language": "en",
        "original_name": "Game of Thrones", "overview": "Seven noble families fight for control...",
        "popularity": 300.5, "poster_path": "/1XS1oqL89opfnbLl8WnZY1O1uJx.jpg",
        "production_countries": [{"iso_3166_1": "GB", "name": "United Kingdom"},
                                 {"iso_3166_1": "US", "name": "United States of America"}],
        "seasons": [{"air_date": body["air_date"], "episode_count": len(body["episodes"]), "id": body["id"],
                     "name": body["name"], "overview": "", "poster_path": body["poster_path"],
                     "season_number": body["season_number"], "vote_average": 8.0} for body in season_bodies],
        "spoken_languages": [{"english_name": "English", "iso_639_1": "en", "name": "English"}],
        "status": "Ended", "tagline": "Winter Is Coming", "type": "Scripted",
        "vote_average": 8.456, "vote_count": 24000,
        "external_ids": {"imdb_id": "tt0944947", "freebase_mid": "/m/0524b41", "freebase_id": None,
                         "tvdb_id": 121361, "tvrage_id": 24493, "wikidata_id": "Q23572", "facebook_id": None,
                         "instagram_id": None, "twitter_id": None},
        "credits": {
            "cast": [
                {"adult": False, "gender": 2, "id": 22970, "name": "Peter Dinklage", "original_name": "Peter Dinklage",
                 "character": "Tyrion Lannister", "credit_id": "5256c8b219c2956ff6047cd8", "order": 0,
                 "known_for_department": "Acting", "popularity": 30.0, "profile_path": None},
                {"adult": False, "gender": 1, "id": 1223786, "name": "Emilia Clarke", "original_name": "Emilia Clarke",
                 "character": "Daenerys Targaryen", "credit_id": "5256c8af19c2956ff60479f6", "order": 1,
                 "known_for_department": "Acting", "popularity": 25.0, "profile_path": None},
            ],
            "crew": [
                {"adult": False, "gender": 2, "id": 9813, "name": "David Benioff", "original_name": "David Benioff",
                 "credit_id": "591ee8a79251414a6b0013d2", "department": "Writing", "job": "Writer",
                 "known_for_department": "Writing", "popularity": 5.0, "profile_path": None},
            ],
        },
        "translations": {"translations": [
            _translation("US", "en", "English", "name", "Game of Thrones", "Seven noble families fight for control..."),
            _translation("CN", "zh", "普通话", "name", "权力的游戏", "故事背景是一个虚构的世界……"),
        ]},
    }
    return show, season_bodies


V3_KEY = "0123456789abcdef0123456789abcdef"
V4_TOKEN = ("eyJhbGciOiJIUzI1NiJ9.eyJhdWQiOiIwMTIzNDU2Nzg5YWJjZGVmIiwic3ViIjoiNjAwMCIsInNjb3BlcyI6WyJhcGlfcmVhZCJd"
            "LCJ2ZXJzaW9uIjoxfQ.c2lnbmF0dXJlLW9mLXRoZS1yZWFkLXRva2VuLTEyMzQ")
