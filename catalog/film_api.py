"""The film and TV catalog over HTTP (/api/catalog/): titles, people, seasons, favourites,
watch progress and danmaku. The same selectors and services as the pages; a refusal is a
4xx naming the field (docs/protocol.md, "Film catalog: pages, API and danmaku")."""


import functools
import math
from datetime import date, datetime
from typing import Literal

from django.http import JsonResponse
from django.urls import reverse
from ninja import Field, Query, Router, Schema, Status
from ninja.pagination import paginate

from catalog import film_selectors as selectors
from catalog import film_services as services
from catalog.film_services import FilmError
from catalog.models import Credit, Title
from project import schemas
from project.inputs import MAX_SAFE_INTEGER

router = Router(tags=["catalog"])

Kind = Literal["movie", "tv", "recording"]
Sort = Literal["newest", "rating", "title", "added"]


class ErrorOut(schemas.ErrorOut):
    retry_after_s: float | None = Field(None, description="429: when the next post is allowed.")


ERRORS = {400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 429: ErrorOut, 503: ErrorOut}


def _refusals_answered(view):
    """A FilmError raised by the view (or a service it calls) becomes its JSON answer."""

    @functools.wraps(view)
    def answer(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except FilmError as exc:
            body = {"error": exc.code, "message": exc.message}
            if exc.field is not None:
                body["field"] = exc.field
            if exc.retry_after_s is not None:
                body["retry_after_s"] = round(exc.retry_after_s, 3)
                response = JsonResponse(body, status=exc.http_status)
                response["Retry-After"] = str(math.ceil(exc.retry_after_s))
                return response
            return Status(exc.http_status, body)

    return answer


def cover_url(title: Title) -> str | None:
    return reverse("catalog:cover", args=[title.cover]) if title.cover else None


class TitleSummaryOut(Schema):
    id: int
    title: str
    original_title: str
    kind: str
    year: int | None
    rating: float | None
    votes: int | None
    release_date: date | None
    genres: list[str]
    cover_url: str | None
    url: str

    @staticmethod
    def resolve_genres(obj: Title) -> list[str]:
        return [genre.name for genre in obj.genres.all()]

    @staticmethod
    def resolve_cover_url(obj: Title) -> str | None:
        return cover_url(obj)

    @staticmethod
    def resolve_url(obj: Title) -> str:
        return obj.get_absolute_url()


class ReleaseOut(Schema):
    date: date
    region: str
    precision: str


class CreditOut(Schema):
    person_id: int
    name: str
    role: str
    order: int
    character: str


class VideoOut(Schema):
    id: int
    episode_id: int | None
    duration_s: float | None
    width: int | None
    height: int | None
    mime_type: str
    stream_url: str


class TitleOut(Schema):
    id: int
    title: str
    original_title: str
    other_titles: list[str]
    kind: str
    year: int | None
    rating: float | None
    votes: int | None
    directors: list[str]
    writers: list[str]
    cast: list[str]
    credits: list[CreditOut]
    genres: list[str]
    countries: list[str]
    languages: list[str]
    release_date: date | None = Field(description="The earliest release (first air date for TV).")
    releases: list[ReleaseOut]
    runtime_min: int | None
    imdb_id: str | None
    synopsis: str
    episode_count: int | None
    episode_runtime_min: int | None
    season_number: int | None
    external_ids: dict[str, str] = Field(description='{"douban": "3541415", "tmdb": "27205"}')
    cover_url: str | None
    videos: list[VideoOut]
    url: str
    websocket: str


def _title_out(title: Title) -> dict:
    roles = selectors.credits_by_role(title)
    names = {role: [credit.person.name for credit in roles.get(role, [])] for role in Credit.Role.values}
    return {
        "id": title.pk, "title": title.title, "original_title": title.original_title,
        "other_titles": [str(name) for name in title.other_titles or []], "kind": title.kind, "year": title.year,
        "rating": title.rating, "votes": title.votes,
        "directors": names["director"], "writers": names["writer"], "cast": names["actor"],
        "credits": [{"person_id": c.person_id, "name": c.person.name, "role": c.role, "order": c.order,
                     "character": c.character} for c in title.credits.all()],
        "genres": [g.name for g in title.genres.all()], "countries": [c.name for c in title.countries.all()],
        "languages": [lang.name for lang in title.languages.all()],
        "release_date": title.release_date,
        "releases": [{"date": r.date, "region": r.region, "precision": r.precision} for r in title.releases.all()],
        "runtime_min": title.runtime_min, "imdb_id": title.imdb_id or None, "synopsis": title.synopsis,
        "episode_count": title.episode_count, "episode_runtime_min": title.episode_runtime_min,
        "season_number": title.season_number,
        "external_ids": {x.source: x.value for x in title.external_ids.all()},
        "cover_url": cover_url(title),
        "videos": [_video_out(v) for v in title.own_videos],
        "url": title.get_absolute_url(), "websocket": f"/ws/catalog/titles/{title.pk}/",
    }


def _video_out(video) -> dict:
    return {"id": video.pk, "episode_id": video.episode_id, "duration_s": video.duration_s, "width": video.width,
            "height": video.height, "mime_type": video.mime_type, "stream_url": video.get_stream_url()}


class TitleQuery(Schema):
    q: str = Field("", max_length=200, description="Any of a title's names, or a person credited on it.")
    kind: Kind | None = None
    genre: str = Field("", max_length=100)
    country: str = Field("", max_length=100)
    year: int | None = Field(None, ge=1800, le=2200)
    rating_min: float | None = Field(None, ge=0, le=10, allow_inf_nan=False)
    sort: Sort = "newest"


@router.get("/titles", response=list[TitleSummaryOut], summary="Search and filter titles (paginated)")
@paginate
def list_titles(request, filters: Query[TitleQuery]):
    return selectors.title_search(filters=selectors.TitleFilters(
        q=filters.q.strip(), kind=filters.kind or "", genre=filters.genre, country=filters.country,
        year=filters.year, rating_min=filters.rating_min, sort=filters.sort))


def _title(title_id: int) -> Title:
    services.title_get(title_id=title_id)  # refuses ids out of range and unknown ones, naming title_id
    return selectors.title_detail(title_id=title_id)


@router.get("/titles/{title_id}", response={200: TitleOut, **ERRORS}, summary="A title with everything known of it")
@_refusals_answered
def get_title(request, title_id: int):
    return _title_out(_title(title_id))


class EpisodeOut(Schema):
    id: int
    number: int
    name: str
    air_date: date | None
    runtime_min: int | None
    videos: list[VideoOut]
    position: float | None
    finished: bool


class SeasonOut(Schema):
    id: int
    number: int
    name: str
    air_date: date | None
    episodes: list[EpisodeOut]


@router.get("/titles/{title_id}/seasons", response={200: list[SeasonOut], **ERRORS},
            summary="Seasons and episodes, with videos and your progress in each episode")
@_refusals_answered
def title_seasons(request, title_id: int):
    title = _title(title_id)
    progress = selectors.progress_for(user=request.user, title=title)
    return [
        {"id": s.pk, "number": s.number, "name": s.name, "air_date": s.air_date, "episodes": [
            {"id": e.pk, "number": e.number, "name": e.name, "air_date": e.air_date, "runtime_min": e.runtime_min,
             "videos": [_video_out(v) for v in e.videos.all()],
             "position": progress[e.pk].position_s if e.pk in progress else None,
             "finished": progress[e.pk].finished if e.pk in progress else False}
            for e in s.episodes.all()]}
        for s in title.seasons.all()
    ]


class PersonOut(Schema):
    id: int
    name: str
    external_ids: dict
    credits: list[dict]


@router.get("/people/{person_id}", response={200: PersonOut, **ERRORS}, summary="A person and every credit")
@_refusals_answered
def get_person(request, person_id: int):
    if not 0 < person_id <= MAX_SAFE_INTEGER:
        raise FilmError("invalid", "person_id must be a person's id.", field="person_id")
    person = selectors.person_detail(person_id=person_id)
    if person is None:
        raise FilmError("not_found", f"No person {person_id}.", field="person_id")
    return {"id": person.pk, "name": person.name, "external_ids": person.external_ids, "credits": [
        {"title_id": c.title_id, "title": c.title.title, "year": c.title.year, "kind": c.title.kind, "role": c.role,
         "order": c.order, "character": c.character, "url": c.title.get_absolute_url()} for c in person.credits.all()]}


# --- favourites -----------------------------------------------------------------------------


@router.get("/favorites", response=list[TitleSummaryOut], summary="Your favourite titles, the latest first (paginated)")
@paginate
def list_favorites(request):
    return selectors.user_favorites(user=request.user).prefetch_related("genres")


class FavoriteOut(Schema):
    title_id: int
    favorite: bool
    changed: bool


@router.put("/titles/{title_id}/favorite", response={200: FavoriteOut, **ERRORS}, summary="Add to your favourites (idempotent)")
@_refusals_answered
def favorite_add(request, title_id: int):
    title = services.title_get(title_id=title_id)
    return {"title_id": title.pk, "favorite": True, "changed": services.favorite_add(user=request.user, title=title)}


@router.delete("/titles/{title_id}/favorite", response={200: FavoriteOut, **ERRORS},
               summary="Remove from your favourites (idempotent)")
@_refusals_answered
def favorite_remove(request, title_id: int):
    title = services.title_get(title_id=title_id)
    return {"title_id": title.pk, "favorite": False,
            "changed": services.favorite_remove(user=request.user, title=title)}


# --- progress -------------------------------------------------------------------------------


class ProgressIn(Schema):
    position: float = Field(strict=True, description="Seconds from the start; not past the end.")
    episode_id: int | None = Field(None, strict=True)
    finished: bool | None = Field(None, strict=True, description="Default: true in the last 5 %.")


class ProgressOut(Schema):
    title_id: int
    episode_id: int | None
    position: float
    finished: bool
    updated_at: datetime | None


class EpisodeQuery(Schema):
    episode_id: int | None = None


def _progress_out(title: Title, episode_id, progress) -> dict:
    if progress is None:
        return {"title_id": title.pk, "episode_id": episode_id, "position": 0.0, "finished": False, "updated_at": None}
    return {"title_id": title.pk, "episode_id": progress.episode_id, "position": progress.position_s,
            "finished": progress.finished, "updated_at": progress.updated_at}


@router.get("/titles/{title_id}/progress", response={200: ProgressOut, **ERRORS},
            summary="Where you are in the title (or in one episode)")
@_refusals_answered
def progress_get(request, title_id: int, query: Query[EpisodeQuery]):
    title = services.title_get(title_id=title_id)
    episode = services.episode_of(title=title, episode_id=query.episode_id)
    row = selectors.progress_for(user=request.user, title=title).get(episode.pk if episode else None)
    return _progress_out(title, query.episode_id, row)


@router.put("/titles/{title_id}/progress", response={200: ProgressOut, **ERRORS}, summary="Save where you are")
@_refusals_answered
def progress_put(request, title_id: int, payload: ProgressIn):
    title = services.title_get(title_id=title_id)
    row = services.progress_save(user=request.user, title=title, position=payload.position,
                                 episode_id=payload.episode_id, finished=payload.finished)
    return _progress_out(title, payload.episode_id, row)


# --- danmaku --------------------------------------------------------------------------------


class DanmakuOut(Schema):
    id: int
    title_id: int
    episode_id: int | None
    offset_ms: int
    text: str
    color: str
    mode: str
    user: str | None
    created_at: datetime


class DanmakuIn(Schema):
    text: str = Field(strict=True, description="1 to 100 characters, one line.")
    offset_ms: int = Field(strict=True, description="Milliseconds from the start; not past the end.")
    episode_id: int | None = Field(None, strict=True)
    color: str = Field("#ffffff", strict=True, description="#rrggbb")
    mode: Literal["scroll", "top", "bottom"] = "scroll"


class DanmakuQuery(Schema):
    from_ms: int = 0
    to_ms: int = services.LONGEST_S * 1000
    episode_id: int | None = None


@router.get("/titles/{title_id}/danmaku", response={200: list[DanmakuOut], **ERRORS},
            summary="The danmaku between two offsets (at most 1000, in time order)")
@_refusals_answered
def danmaku_list(request, title_id: int, query: Query[DanmakuQuery]):
    title = services.title_get(title_id=title_id)
    episode = services.episode_of(title=title, episode_id=query.episode_id)
    start, end = services.window_bounds(from_ms=query.from_ms, to_ms=query.to_ms)
    rows = selectors.danmaku_window(title=title, episode=episode, from_ms=start, to_ms=end)
    return [services.danmaku_json(row) for row in rows]


@router.post("/titles/{title_id}/danmaku", response={201: DanmakuOut, **ERRORS},
             summary="Post a danmaku at an offset: everyone watching sees it (at most 5 in 10 s)")
@_refusals_answered
def danmaku_post(request, title_id: int, payload: DanmakuIn):
    title = services.title_get(title_id=title_id)
    row = services.danmaku_post(user=request.user, title=title, text=payload.text, offset_ms=payload.offset_ms,
                                episode_id=payload.episode_id, color=payload.color, mode=payload.mode)
    return Status(201, services.danmaku_json(row))
