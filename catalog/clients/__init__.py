"""Clients for the film and TV sources, one module per source (`douban.py`, `tmdb.py`), the
shape they return (`ListedTitle`, `TitleDetails` and the parts of it) and the registry that
lists them (`registry`, see project/outside.py for the registry and the error classes).

A source knows one site's protocol and nothing about the database: it lists what is new
(`newest`), fetches one title's details (`details`), and, where the site offers it, what
changed (`changes`) or a title by another site's id (`find_by_imdb`). The sync (catalog's
services) merges what they return into titles, honouring field locks, and records each run.

Every field a page or an answer does not have is left empty (None, "" or an empty list),
never guessed. Failures are project/outside.py's: `RetryLater` (network trouble, timeouts,
429, 5xx, and `Blocked`: the site answered with its anti-bot or login page, so the run stops
politely and backs off), `GiveUp` (a bad key, a title that does not exist, an answer that
is not what the site sends; the run records it with the item and goes on).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import ClassVar

from project.outside import GiveUp, Registry, RetryLater, UnknownService

__all__ = ["Blocked", "CatalogSource", "Credit", "Episode", "GiveUp", "ListedTitle", "Release", "RetryLater",
           "Season", "TitleDetails", "UnknownService", "registry"]

MOVIE = "movie"
TV = "tv"


class Blocked(RetryLater):
    """The site answered with its anti-bot, captcha or login page (Douban's sec.douban.com,
    "异常请求"): nothing on it is data. Stop the run and try again after `retry_after_s`."""


@dataclass(frozen=True, slots=True)
class ListedTitle:
    """One entry of a source's list of newest titles."""

    source_id: str
    title: str
    kind: str  # MOVIE or TV
    rating: float | None = None
    url: str = ""
    cover_url: str = ""


@dataclass(frozen=True, slots=True)
class Credit:
    name: str
    role: str  # "director", "writer" or "actor"
    order: int  # the page's order within the role, from 0
    character: str = ""
    source_person_id: str = ""


@dataclass(frozen=True, slots=True)
class Release:
    date: date
    region: str = ""  # as the page names it ("中国大陆", "US", "戛纳电影节"); "" when it names none
    precision: str = "day"  # "day", "month" or "year": Douban writes "2023-05" or "2023" too


@dataclass(frozen=True, slots=True)
class Episode:
    number: int
    title: str = ""
    air_date: date | None = None
    runtime_min: int | None = None


@dataclass(frozen=True, slots=True)
class Season:
    number: int
    title: str = ""
    air_date: date | None = None
    episodes: tuple[Episode, ...] = ()


@dataclass(slots=True)
class TitleDetails:
    """Everything one source says about one title; empty where it says nothing."""

    source: str
    source_id: str
    kind: str  # MOVIE or TV
    title: str = ""
    original_title: str = ""
    other_titles: list[str] = field(default_factory=list)  # aka / 又名, and the other language's title
    year: int | None = None
    rating: float | None = None  # the source's own scale (Douban and TMDB: 0-10)
    votes: int | None = None
    synopsis: str = ""
    cover_url: str = ""
    releases: list[Release] = field(default_factory=list)  # every dated release, in the page's order
    runtime_min: int | None = None
    imdb_id: str = ""  # "tt1234567"
    genres: list[str] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    languages: list[str] = field(default_factory=list)
    credits: list[Credit] = field(default_factory=list)
    episode_count: int | None = None  # TV
    episode_runtime_min: int | None = None  # TV
    season_number: int | None = None  # TV: the season this page is about (Douban lists seasons as titles)
    seasons: list[Season] = field(default_factory=list)  # TV, when the source lists them (TMDB)
    external_ids: dict[str, str] = field(default_factory=dict)  # other sources' ids: {"imdb": ..., "tmdb": ...}

    @property
    def release_date(self) -> date | None:
        """The earliest release (a first air date for TV)."""
        return min((release.date for release in self.releases), default=None)


class CatalogSource:
    """One site. Instances are cheap; a sync makes one per run."""

    name: ClassVar[str]  # stored in ExternalId.source and SyncRun.source
    label: ClassVar[str]

    @classmethod
    def enabled(cls) -> bool:
        """Whether the settings let this source run (TMDB needs a key)."""
        return True

    def newest(self, *, kind: str) -> list[ListedTitle]:
        raise NotImplementedError

    def details(self, source_id: str, *, kind: str) -> TitleDetails:
        raise NotImplementedError

    def close(self) -> None:
        """Close the client's HTTP connections."""


registry: Registry[type[CatalogSource]] = Registry(
    "catalog source", modules=("catalog.clients.douban", "catalog.clients.tmdb"))
