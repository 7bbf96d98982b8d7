"""Merging what a source says about a title (catalog.clients.TitleDetails) into the catalog's
`Title`, its people, genres, countries, languages, releases, seasons and external ids.

Which title: the one holding the source's external id (source, kind, id); else the one with
the same IMDb id (Douban and TMDB describing one film become one title); else a new one.

Which source writes a field: the per-field priority below (first = strongest). A source
writes a field when the field is empty, or when the value there came from this source or a
weaker one (`Title.field_sources` records who wrote each field). So a source fills empty
fields and refreshes its own values, and never overwrites a stronger source's. Douban comes
first for what a Chinese catalog reads (title, rating, votes, synopsis, credits, genres ...);
TMDB first for what Douban lacks or has worse (the original title, the English title in
other_titles, episode counts, seasons and episodes). `other_titles` is the union of every
source's names. A field named in `Title.locked_fields` (edited by hand) is never written.

All of one title is written in one transaction (`merge_title`), with the title's row locked:
a crash or a refused value leaves nothing half-written. Names (genres, countries, languages,
people) are get_or_create against unique columns, so two workers merging at once share the
rows; two workers creating the same new title collide on the external id's (or IMDb id's)
unique constraint and the loser merges into the winner's title (`merge_title` tries again).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog.clients import TitleDetails
from catalog.keys import KEY_LENGTH, search_key
from catalog.models import (
    Country,
    Credit,
    Episode,
    ExternalId,
    Genre,
    Language,
    Person,
    Release,
    Season,
    Title,
)

logger = logging.getLogger(__name__)

DEFAULT_PRIORITY = ("douban", "tmdb")
# Field -> sources, strongest first; a source not named ranks after those named.
PRIORITY: dict[str, tuple[str, ...]] = {
    "title": ("douban", "tmdb"),
    "original_title": ("tmdb", "douban"),
    "year": ("douban", "tmdb"),
    "rating": ("douban", "tmdb"),
    "votes": ("douban", "tmdb"),
    "synopsis": ("douban", "tmdb"),
    "cover": ("douban", "tmdb"),
    "release_date": ("douban", "tmdb"),
    "releases": ("douban", "tmdb"),
    "runtime_min": ("douban", "tmdb"),
    "imdb_id": ("douban", "tmdb"),
    "genres": ("douban", "tmdb"),
    "countries": ("douban", "tmdb"),
    "languages": ("douban", "tmdb"),
    "credits": ("douban", "tmdb"),
    "season_number": ("douban", "tmdb"),
    "episode_count": ("tmdb", "douban"),
    "episode_runtime_min": ("tmdb", "douban"),
    "seasons": ("tmdb", "douban"),
}
SCALARS = ("title", "original_title", "year", "rating", "votes", "synopsis", "release_date", "runtime_min",
           "imdb_id", "episode_count", "episode_runtime_min", "season_number")
MAX_LENGTHS = {"title": 500, "original_title": 500, "imdb_id": 16}
ATTEMPTS = 3  # a create that lost a race merges into the winner on the next try


@dataclass
class MergeResult:
    title: Title
    created: bool
    changed: list[str] = field(default_factory=list)  # the fields this merge wrote with a new value
    notes: list[str] = field(default_factory=list)  # what was left out, for the run's errors


def rank(field_name: str, source: str) -> int:
    order = PRIORITY.get(field_name, DEFAULT_PRIORITY)
    return order.index(source) if source in order else len(order)


def may_write(title: Title, field_name: str, source: str, *, empty: bool) -> bool:
    """Whether `source` may write `field_name` of `title` (see the module docstring)."""
    if title.is_locked(field_name):
        return False
    if empty:
        return True
    holder = (title.field_sources or {}).get(field_name)
    return holder is None or rank(field_name, source) <= rank(field_name, holder)


def find_title(*, source: str, kind: str, source_id: str, imdb_id: str = "") -> Title | None:
    """The title this source's entry is: by its external id, else by IMDb id."""
    external = ExternalId.objects.select_related("title").filter(source=source, kind=kind, value=source_id).first()
    if external is not None:
        return external.title
    if imdb_id:
        return Title.objects.filter(imdb_id=imdb_id).first()
    return None


def merge_title(*, details: list[TitleDetails], cover: str = "", cover_source: str = "",
                cover_url: str = "") -> MergeResult:
    """Merge one or more sources' details of one title (the first is the one listed; the
    others, e.g. TMDB's for a Douban title, enrich it) in one transaction. `cover` is the
    stored cover's path under MEDIA_ROOT, written as `cover_source`'s."""
    for attempt in range(ATTEMPTS):
        try:
            with transaction.atomic():
                return _merge_once(details, cover=cover, cover_source=cover_source, cover_url=cover_url)
        except IntegrityError:
            if attempt + 1 >= ATTEMPTS:
                raise
            logger.info("title merge raced another worker; merging again", extra={"source_id": details[0].source_id})
    raise AssertionError("unreachable")


def _merge_once(details: list[TitleDetails], *, cover: str, cover_source: str, cover_url: str) -> MergeResult:
    first = details[0]
    imdb_id = next((d.imdb_id for d in details if d.imdb_id), "")
    found = None
    for item in details:
        found = find_title(source=item.source, kind=item.kind, source_id=item.source_id)
        if found is not None:
            break
    if found is None and imdb_id:
        # The same IMDb id, unless that title is already another entry of this source (Douban
        # lists each season of a show as a subject, some with the show's IMDb id).
        candidate = Title.objects.filter(imdb_id=imdb_id).first()
        if candidate is not None and not ExternalId.objects.filter(title=candidate, source=first.source).exclude(
                kind=first.kind, value=first.source_id).exists():
            found = candidate
    if found is None:
        title = Title.objects.create(kind=first.kind, title=_cut(first.title or first.original_title, "title"),
                                     field_sources={})
        created = True
        title.field_sources = {}
        title.title = ""  # written below like every field, so that field_sources says who wrote it
    else:
        title = Title.objects.select_for_update().get(pk=found.pk)
        created = False
    result = MergeResult(title=title, created=created)
    for item in details:
        _merge_source(title, item, result)
    _merge_other_titles(title, details, result)
    if cover and may_write(title, "cover", cover_source, empty=not title.cover):
        if title.cover != cover or title.cover_source_url != cover_url:
            title.cover, title.cover_source_url = cover, cover_url
            result.changed.append("cover")
        title.field_sources["cover"] = cover_source
    if not title.title:  # every source lacked a title: keep a name rather than an empty row
        title.title = _cut(first.original_title or f"{first.source} {first.source_id}", "title")
    title.details_fetched_at = timezone.now()
    title.save()
    return result


def _merge_source(title: Title, details: TitleDetails, result: MergeResult) -> None:
    source = details.source
    _link(title, source=source, kind=details.kind, value=details.source_id, result=result, own=True)
    for other_source, value in details.external_ids.items():
        if other_source != "imdb" and value:
            _link(title, source=other_source, kind=details.kind, value=str(value)[:64], result=result, own=False)
    values = {name: getattr(details, name) for name in SCALARS}
    values["release_date"] = details.release_date
    if values["rating"] is not None and not 0 <= values["rating"] <= 10:
        values["rating"] = None
    for name in ("year", "votes", "runtime_min", "episode_count", "episode_runtime_min", "season_number"):
        if values[name] is not None and not 0 <= values[name] <= 32767:
            values[name] = None
    if values["imdb_id"] and Title.objects.filter(imdb_id=values["imdb_id"]).exclude(pk=title.pk).exists():
        result.notes.append(f"IMDb id {values['imdb_id']} is another title's; not copied")
        values["imdb_id"] = ""
    for name, value in values.items():
        if value in (None, ""):
            continue
        value = _cut(value, name) if isinstance(value, str) else value
        current = getattr(title, name)
        if may_write(title, name, source, empty=current in (None, "")):
            if current != value:
                setattr(title, name, value)
                result.changed.append(name)
            title.field_sources[name] = source
    for name, model in (("genres", Genre), ("countries", Country), ("languages", Language)):
        _merge_names(title, name, model, getattr(details, name), source, result)
    _merge_releases(title, details, result)
    _merge_credits(title, details, result)
    _merge_seasons(title, details, result)


def _link(title: Title, *, source: str, kind: str, value: str, result: MergeResult, own: bool) -> None:
    """The title's id at `source`. A source's own id is part of the key and must hold (a
    clash is a race: IntegrityError, the merge is tried again); another site's id that a
    source mentions (TMDB's tvdb/wikidata) is kept only where it clashes with nothing."""
    existing = ExternalId.objects.filter(title=title, source=source).first()
    if existing is not None:
        if own and (existing.kind, existing.value) != (kind, value):
            result.notes.append(f"{source} id {value} left out: this title is already {source} {existing.value}")
        return
    if own:
        if ExternalId.objects.filter(source=source, kind=kind, value=value).exclude(title=title).exists():
            result.notes.append(f"{source} {kind} {value} is another title's; not linked")
            return
        ExternalId.objects.create(title=title, source=source, kind=kind, value=value)
        result.changed.append(f"external_ids.{source}")
        return
    try:
        with transaction.atomic():
            ExternalId.objects.create(title=title, source=source, kind=kind, value=value)
    except IntegrityError:
        pass


def _merge_other_titles(title: Title, details: list[TitleDetails], result: MergeResult) -> None:
    """Every source's names that are not the title or the original title (a name a stronger
    source displaced, the other language's title) in other_titles, each once."""
    if title.is_locked("other_titles"):
        return
    names = list(title.other_titles or [])
    for name in [name for item in details for name in (*item.other_titles, item.title, item.original_title)]:
        name = str(name).strip()[:500]
        if name and name not in names and name not in (title.title, title.original_title):
            names.append(name)
    names = [name for name in names if name not in (title.title, title.original_title)]
    if names != list(title.other_titles or []):
        title.other_titles = names
        result.changed.append("other_titles")


def _merge_names(title: Title, name: str, model, values: list[str], source: str, result: MergeResult) -> None:
    names = list(dict.fromkeys(value.strip()[:100] for value in values if value and value.strip()))
    if not names or title.pk is None:
        return
    manager = getattr(title, name)
    current = list(manager.values_list("name", flat=True))
    if not may_write(title, name, source, empty=not current):
        return
    title.field_sources[name] = source
    if sorted(current) == sorted(names):
        return
    rows = [model.objects.get_or_create(name=value)[0] for value in names]
    manager.set(rows)
    result.changed.append(name)


def _merge_releases(title: Title, details: TitleDetails, result: MergeResult) -> None:
    wanted = {(release.date, release.region.strip()[:100], release.precision) for release in details.releases}
    if not wanted:
        return
    current = set(title.releases.values_list("date", "region", "precision"))
    if not may_write(title, "releases", details.source, empty=not current):
        return
    title.field_sources["releases"] = details.source
    if current == wanted:
        return
    title.releases.all().delete()
    # One row per (date, region): a page listing a day twice in one region keeps the first.
    unique = {(day, region): precision for day, region, precision in sorted(wanted, reverse=True)}
    Release.objects.bulk_create([Release(title=title, date=day, region=region, precision=precision)
                                 for (day, region), precision in sorted(unique.items())])
    result.changed.append("releases")


def person_key(name: str, *, source: str, source_person_id: str) -> str:
    """What makes two credits one person: the source's own id, else the folded name."""
    return f"{source}:{source_person_id}" if source_person_id else f"name:{search_key(name)}"[:KEY_LENGTH]


def _person(name: str, *, source: str, source_person_id: str) -> Person:
    key = person_key(name, source=source, source_person_id=source_person_id)
    ids = {source: source_person_id} if source_person_id else {}
    person, _ = Person.objects.get_or_create(key=key, defaults={"name": name[:300], "external_ids": ids})
    return person


def _merge_credits(title: Title, details: TitleDetails, result: MergeResult) -> None:
    if not details.credits:
        return
    current = {(c.person.key, c.role, c.order, c.character)
               for c in title.credits.select_related("person")}
    if not may_write(title, "credits", details.source, empty=not current):
        return
    title.field_sources["credits"] = details.source
    wanted: dict[tuple[str, str], tuple[str, int, str, str]] = {}
    for credit in details.credits:
        name = credit.name.strip()
        if not name or credit.role not in Credit.Role.values:
            continue
        key = person_key(name, source=details.source, source_person_id=credit.source_person_id)
        wanted.setdefault((key, credit.role), (name, credit.order, credit.character.strip()[:300],
                                               credit.source_person_id))
    if current == {(key, role, order, character) for (key, role), (_, order, character, _) in wanted.items()}:
        return
    title.credits.all().delete()
    Credit.objects.bulk_create([
        Credit(title=title, role=role, order=order, character=character,
               person=_person(name, source=details.source, source_person_id=person_id))
        for (_, role), (name, order, character, person_id) in wanted.items()])
    result.changed.append("credits")


def _merge_seasons(title: Title, details: TitleDetails, result: MergeResult) -> None:
    if not details.seasons or not may_write(title, "seasons", details.source, empty=not title.seasons.exists()):
        return
    title.field_sources["seasons"] = details.source
    changed = False
    for season in details.seasons:
        row, created = Season.objects.get_or_create(
            title=title, number=season.number, defaults={"name": season.title[:300], "air_date": season.air_date})
        if not created and (row.name, row.air_date) != (season.title[:300], season.air_date):
            row.name, row.air_date = season.title[:300], season.air_date
            row.save(update_fields=["name", "air_date"])
            changed = True
        changed = changed or created
        existing = {episode.number: episode for episode in row.episodes.all()}
        for episode in season.episodes:
            values = {"name": episode.title[:300], "air_date": episode.air_date, "runtime_min": episode.runtime_min}
            old = existing.get(episode.number)
            if old is None:
                Episode.objects.create(season=row, number=episode.number, **values)
                changed = True
            elif (old.name, old.air_date, old.runtime_min) != tuple(values.values()):
                Episode.objects.filter(pk=old.pk).update(**values)
                changed = True
    if changed:
        result.changed.append("seasons")


def _cut(value: str, name: str) -> str:
    limit = MAX_LENGTHS.get(name)
    return value.strip()[:limit] if limit else value.strip()
