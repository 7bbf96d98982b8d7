"""Reads of the film and TV catalog: search, filters and sorting for the grid, a title with
everything its page and the API show (in a fixed number of queries, whatever its size), a
person with their credits, and what one user keeps: favourites, watch progress.

Search folds the query as titles and people are folded when saved (catalog.keys.search_key),
so "Amelie" finds "Amélie", and "张艺谋" finds his films.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Exists, F, OuterRef, Prefetch, Q, QuerySet

from catalog.keys import search_key
from catalog.models import Credit, Danmaku, Episode, Favorite, Person, Season, Title, Video, WatchProgress

MAX_QUERY_CHARS = 200

# name -> ordering; each ends with -id so that pages never repeat or skip a title.
SORTS = {
    "newest": (F("release_date").desc(nulls_last=True), F("year").desc(nulls_last=True), "-id"),
    "rating": (F("rating").desc(nulls_last=True), F("votes").desc(nulls_last=True), "-id"),
    "title": ("title", "-id"),
    "added": ("-created_at", "-id"),
}
SORT_LABELS = {"newest": "Newest release", "rating": "Rating", "title": "Title", "added": "Recently added"}
DEFAULT_SORT = "newest"


@dataclass(frozen=True)
class TitleFilters:
    """What the grid (and GET /api/catalog/titles) is narrowed to; all optional."""

    q: str = ""
    kind: str = ""
    genre: str = ""
    country: str = ""
    year: int | None = None
    rating_min: float | None = None
    sort: str = DEFAULT_SORT

    @property
    def active(self) -> bool:
        return bool(self.q or self.kind or self.genre or self.country or self.year is not None
                    or self.rating_min is not None)


def title_search(*, filters: TitleFilters) -> QuerySet[Title]:
    """Titles matching every filter, sorted. `q` matches any of a title's names (Chinese,
    original, other titles) or the name of anyone credited on it."""
    titles = Title.objects.all()
    query = search_key(filters.q[:MAX_QUERY_CHARS]) if filters.q else ""
    if query:
        credited = Credit.objects.filter(title=OuterRef("pk"), person__search_key__contains=query)
        titles = titles.filter(Q(search_key__contains=query) | Exists(credited))
    if filters.kind:
        titles = titles.filter(kind=filters.kind)
    if filters.genre:
        titles = titles.filter(Exists(Title.genres.through.objects.filter(title=OuterRef("pk"), genre__name=filters.genre)))
    if filters.country:
        titles = titles.filter(Exists(Title.countries.through.objects.filter(title=OuterRef("pk"),
                                                                              country__name=filters.country)))
    if filters.year is not None:
        titles = titles.filter(year=filters.year)
    if filters.rating_min is not None:
        titles = titles.filter(rating__gte=filters.rating_min)
    return titles.order_by(*SORTS.get(filters.sort, SORTS[DEFAULT_SORT])).prefetch_related("genres")


def filter_choices() -> dict[str, list]:
    """The genres, countries and years that titles have, for the filter menus."""
    from catalog.models import Country, Genre

    years = (Title.objects.exclude(year__isnull=True).order_by("-year").values_list("year", flat=True).distinct())
    return {
        "genres": list(Genre.objects.filter(titles__isnull=False).distinct().values_list("name", flat=True)),
        "countries": list(Country.objects.filter(titles__isnull=False).distinct().values_list("name", flat=True)),
        "years": list(years[:80]),
    }


def title_detail(*, title_id: int) -> Title | None:
    """A title with its genres, countries, languages, releases, external ids, credits (with
    people), seasons with episodes and videos, and its own videos: a constant number of
    queries, however many credits or episodes it has."""
    episodes = Episode.objects.prefetch_related(Prefetch("videos", queryset=Video.objects.order_by("id")))
    return (
        Title.objects.filter(pk=title_id)
        .prefetch_related(
            "genres", "countries", "languages", "releases", "external_ids",
            Prefetch("credits", queryset=Credit.objects.select_related("person").order_by("role", "order", "id")),
            Prefetch("seasons", queryset=Season.objects.order_by("number").prefetch_related(
                Prefetch("episodes", queryset=episodes.order_by("number")))),
            Prefetch("videos", queryset=Video.objects.filter(episode__isnull=True).order_by("id"), to_attr="own_videos"),
        )
        .first()
    )


def credits_by_role(title: Title) -> dict[str, list[Credit]]:
    """{"director": [...], "writer": [...], "actor": [...]} in the source's order (prefetched)."""
    roles: dict[str, list[Credit]] = {role: [] for role in Credit.Role.values}
    for credit in title.credits.all():
        roles.setdefault(credit.role, []).append(credit)
    return roles


def person_detail(*, person_id: int) -> Person | None:
    """A person with every credit and its title, newest release first."""
    credits = Credit.objects.select_related("title").order_by(
        F("title__release_date").desc(nulls_last=True), "title__id", "role")
    return Person.objects.filter(pk=person_id).prefetch_related(Prefetch("credits", queryset=credits)).first()


def user_favorites(*, user) -> QuerySet[Title]:
    """The user's favourite titles, the latest favourite first."""
    return Title.objects.filter(favorites__user=user).order_by("-favorites__created_at", "-id")


def is_favorite(*, user, title: Title) -> bool:
    return Favorite.objects.filter(user=user, title=title).exists()


def continue_watching(*, user, limit: int = 12) -> list[WatchProgress]:
    """Titles the user started and has not finished, the most recently watched first; one
    entry per title (a series shows its latest episode)."""
    rows = (WatchProgress.objects.filter(user=user, finished=False, position_s__gt=0)
            .select_related("title", "episode__season").order_by("-updated_at", "-id"))
    seen: set[int] = set()
    entries = []
    for progress in rows[: limit * 5]:
        if progress.title_id in seen:
            continue
        seen.add(progress.title_id)
        entries.append(progress)
        if len(entries) == limit:
            break
    durations = {(v.title_id, v.episode_id): v.duration_s for v in Video.objects.filter(
        title_id__in=seen, duration_s__isnull=False).only("title_id", "episode_id", "duration_s")}
    for progress in entries:
        length = durations.get((progress.title_id, progress.episode_id))
        if length is None:
            minutes = ((progress.episode.runtime_min or progress.title.episode_runtime_min) if progress.episode
                       else progress.title.runtime_min)
            length = minutes * 60 if minutes else None
        progress.percent = min(100, round(100 * progress.position_s / length)) if length else 0
    return entries


def progress_for(*, user, title: Title) -> dict[int | None, WatchProgress]:
    """The user's progress in a title: {None: the film's, episode id: the episode's}."""
    return {row.episode_id: row for row in WatchProgress.objects.filter(user=user, title=title)}


def danmaku_window(*, title: Title, episode: Episode | None, from_ms: int, to_ms: int,
                   limit: int = 1000) -> list[Danmaku]:
    """The danmaku of a film (or of one episode) between two offsets, in time order."""
    rows = (Danmaku.objects.filter(title=title, episode=episode, offset_ms__gte=from_ms, offset_ms__lte=to_ms)
            .select_related("user").order_by("offset_ms", "id"))
    return list(rows[:limit])
