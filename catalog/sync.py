"""Film catalog sync: one run of one source (catalog/clients) lists titles, decides per title
whether to fetch it, fetches, merges (catalog/merge.py) and records everything on the run.

    sync_start(source="douban", kind="newest", trigger="manual", user=staff) -> (run, started)
    sync_execute(run_id=run.pk)        # the work (catalog.tasks.sync_run calls it)

The protocol, and what a crash at each step does:

1. `sync_start` makes a QUEUED run, at most one in flight per source (a unique constraint),
   and enqueues the task after commit. A trigger while one is in flight gets that run (and
   enqueues its task again when nobody holds it: a worker died, or the task was lost). A run
   the source BLOCKED is continued by the next trigger once its `retry_at` has passed.
2. `sync_execute` claims the run's lease: a conditional update on `lease_until` compared
   with the database's clock (the holder's token in `lease_owner`). Nobody else runs it while
   the lease holds; the holder renews it with every title it commits. A worker killed with -9
   stops renewing; after CATALOG_SYNC_LEASE_S the next claim takes the run over.
3. Listing (only while the run has no items): the source's newest films and TV (`newest`),
   TMDB's changed ids that the catalog knows (`changes`), or the titles whose tier says they
   are due (`refresh`). Every entry becomes one SyncItem (unique per run), written with the
   counts in one transaction; entries that need no request are decided there (skipped: the
   tier says not yet; unchanged: the list shows what is stored). Killed before that commit,
   the run lists again.
4. Each pending item: details fetched (TMDB's too for a Douban title with an IMDb id, when
   TMDB is set up), the cover downloaded, then one transaction merges the title, settles the
   item and adds to the run's counts, checking the lease under the run's row lock. Killed
   before that commit, the item is still pending and the next holder does it again: nothing
   is counted or written twice.
5. `Blocked` (the anti-bot page) stops the run: BLOCKED, the reason, `retry_at`; the items
   left stay pending. `GiveUp` on an item is recorded on it and the run goes on;
   `RetryLater` is tried CATALOG_SYNC_ITEM_RETRIES more times with backoff, then recorded.

Tiered refresh (`refresh_due`): a title's details are never fetched again within 12 hours;
after that a title released in the last 30 days at most daily, 30-180 days ago weekly, older
(or never dated) monthly. A listed entry whose list data (title, rating) equals what is
stored is not fetched at all. A second run within 8 hours therefore fetches nothing.

Progress goes out on the realtime path (`sync_group(run_id)`, event `catalog.sync_run`) after
each commit, at most PROGRESS_EVERY_S apart, and always when the run's state changes.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import DateTimeField, ExpressionWrapper, F, Q
from django.db.models.functions import Coalesce, Now
from django.utils import timezone

from catalog import covers, merge
from catalog.clients import MOVIE, TV, Blocked, CatalogSource, RetryLater, TitleDetails, registry
from catalog.models import ExternalId, SyncItem, SyncRun, Title
from project import metrics, outside
from project.outside import OutsideError, UnknownService
from project.realtime import broadcast_on_commit
from project.refusals import Refusal

logger = logging.getLogger(__name__)

__all__ = ["SyncRefused", "UnknownService", "enabled_sources", "refresh_due", "run_event", "sync_execute",
           "sync_group", "sync_start"]

NEVER_WITHIN = timedelta(hours=12)
TIERS = ((timedelta(days=30), timedelta(days=1)), (timedelta(days=180), timedelta(days=7)))
OLDER = timedelta(days=30)
PROGRESS_EVERY_S = 0.25
ERRORS_KEPT = 200
REASON_MAX = 500
DEFAULT_BLOCKED_BACKOFF_S = 1800.0
DISABLED_HINTS = {"tmdb": "set CATALOG_TMDB_API_KEY to a TMDB API key or read access token"}


class SyncRefused(Refusal):
    """A trigger this server refuses: `code` is the kind (forbidden, invalid, disabled,
    blocked), the message says why and what to do."""

    HTTP_STATUS = {"forbidden": 403, "invalid": 400, "disabled": 409, "blocked": 409}


class LeaseLost(Exception):
    """Another worker holds the run now (this one was too slow or taken for dead)."""


def enabled_sources() -> list[type[CatalogSource]]:
    """The sources the settings let run, in the registry's order."""
    return [source for source in registry if source.enabled()]


def sync_group(run_id: int) -> str:
    """The realtime topic of one run (websocket /ws/catalog/sync/<run_id>/)."""
    return f"catalog.sync.{run_id}"


def run_event(run: SyncRun) -> dict:
    """The run as the run page, the websocket and the API show it."""
    now = timezone.now()
    elapsed_s = ((run.finished_at or now) - run.started_at).total_seconds() if run.started_at else 0.0
    return {
        "type": "catalog.sync_run",
        "id": run.pk, "source": run.source, "kind": run.kind, "trigger": run.trigger, "state": run.state,
        "listed": run.listed, "done": run.done, "new": run.new, "updated": run.updated, "unchanged": run.unchanged,
        "skipped": run.skipped, "failed": run.failed, "detail_requests": run.detail_requests,
        "percent": run.percent, "current_item": run.current_item,
        "rate_per_min": round(run.done * 60 / elapsed_s, 1) if elapsed_s >= 1 else None,
        "error": run.error or None, "errors": run.errors[-50:], "errors_total": len(run.errors),
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "retry_at": run.retry_at.isoformat() if run.retry_at else None,
        "url": run.get_absolute_url(),
    }


def _broadcast(run_id: int) -> None:
    broadcast_on_commit(sync_group(run_id), lambda: run_event(SyncRun.objects.get(pk=run_id)))


# --- the tiers ----------------------------------------------------------------------------

def refresh_due(title: Title, *, now: datetime | None = None) -> bool:
    """Whether the tier lets the title's details be fetched again now (module docstring)."""
    if title.details_fetched_at is None:
        return True
    now = now or timezone.now()
    age = now - title.details_fetched_at
    if age < NEVER_WITHIN:
        return False
    return age >= _tier_interval(title.release_date, now.date())


def _tier_interval(released: date | None, today: date) -> timedelta:
    if released is None:
        return OLDER
    since = today - released
    for within, interval in TIERS:
        if since <= within:
            return interval
    return OLDER


# --- starting -----------------------------------------------------------------------------

def sync_start(*, source: str, kind: str = SyncRun.Kind.NEWEST, trigger: str, user=None,
               enqueue: bool = True) -> tuple[SyncRun, bool]:
    """(run, started): a new run of `source`, or the one in flight (started False). A run the
    source blocked is continued (started True) once its retry time has passed; before that,
    SyncRefused("blocked"). Unknown source: UnknownService; disabled: SyncRefused."""
    source_class = registry.get(source)
    if user is not None and not user.is_staff:
        raise SyncRefused("forbidden", "Only staff can start a catalog sync.")
    if kind not in SyncRun.Kind.values:
        raise SyncRefused("invalid", f"kind: {str(kind)[:20]!r} is not one of {', '.join(SyncRun.Kind.values)}.",
                          field="kind")
    if trigger not in SyncRun.Trigger.values:
        raise SyncRefused("invalid", f"trigger: {str(trigger)[:20]!r} is not one of "
                          f"{', '.join(SyncRun.Trigger.values)}.", field="trigger")
    if kind == SyncRun.Kind.CHANGES and not hasattr(source_class, "changes"):
        raise SyncRefused("invalid", f"kind: {source_class.label} has no list of changes; use newest or refresh.",
                          field="kind")
    if not source_class.enabled():
        hint = DISABLED_HINTS.get(source, "enable it in the settings")
        raise SyncRefused("disabled", f"{source_class.label} is not set up on this server: {hint}.")
    with transaction.atomic():
        run, started = _start_locked(source_class, kind=kind, trigger=trigger, user=user)
        if enqueue and (started or _unheld(run)):
            transaction.on_commit(lambda: _enqueue(run.pk), robust=True)
        if started:
            _broadcast(run.pk)
    return run, started


def _start_locked(source_class: type[CatalogSource], *, kind: str, trigger: str, user) -> tuple[SyncRun, bool]:
    source = source_class.name
    running = SyncRun.objects.filter(source=source, state__in=SyncRun.IN_FLIGHT).first()
    if running is not None:
        return running, False
    latest = SyncRun.objects.filter(source=source).order_by("-created_at", "-id").first()
    if latest is not None and latest.state == SyncRun.State.BLOCKED:
        if latest.retry_at and latest.retry_at > timezone.now():
            raise SyncRefused("blocked", f"{source_class.label} refused us ({latest.error[:200]}); "
                              f"run {latest.pk} continues after {latest.retry_at.isoformat(timespec='seconds')}.")
        try:
            with transaction.atomic():
                if SyncRun.objects.filter(pk=latest.pk, state=SyncRun.State.BLOCKED).update(
                        state=SyncRun.State.QUEUED, retry_at=None, error=""):
                    logger.info("catalog sync continues a blocked run", extra={"run_id": latest.pk, "source": source})
                    return SyncRun.objects.get(pk=latest.pk), True
        except IntegrityError:  # another trigger made a run in flight meanwhile
            pass
    try:
        with transaction.atomic():
            run = SyncRun.objects.create(source=source, kind=kind, trigger=trigger,
                                         requested_by=user if user is not None and user.is_authenticated else None)
    except IntegrityError:  # another trigger at the same moment: its run is the one
        return SyncRun.objects.get(source=source, state__in=SyncRun.IN_FLIGHT), False
    logger.info("catalog sync queued", extra={"run_id": run.pk, "source": source, "kind": kind, "trigger": trigger})
    return run, True


def _unheld(run: SyncRun) -> bool:
    """In flight with nobody on it, so its task must be sent again: running with its lease
    expired (the worker died), or queued for longer than a lease (the task was lost)."""
    now = timezone.now()
    if run.state == SyncRun.State.RUNNING:
        return run.lease_until is None or run.lease_until <= now
    return run.state == SyncRun.State.QUEUED and run.created_at <= now - timedelta(seconds=settings.CATALOG_SYNC_LEASE_S)


def _enqueue(run_id: int) -> None:
    from catalog.tasks import sync_run

    sync_run.delay(run_id=run_id)


# --- running ------------------------------------------------------------------------------

def _expiry():
    return ExpressionWrapper(Now() + timedelta(seconds=settings.CATALOG_SYNC_LEASE_S), output_field=DateTimeField())


def sync_execute(*, run_id: int) -> SyncRun:
    """Run (or continue) the run, if its lease can be taken; the run as it is afterwards.
    Idempotent: a finished run, or one another worker holds, is returned untouched."""
    token = secrets.token_hex(16)
    claimed = SyncRun.objects.filter(pk=run_id, state__in=SyncRun.IN_FLIGHT).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lte=Now())).update(
        state=SyncRun.State.RUNNING, lease_owner=token, lease_until=_expiry(),
        started_at=Coalesce(F("started_at"), Now()))
    if not claimed:
        return SyncRun.objects.get(pk=run_id)
    run = SyncRun.objects.get(pk=run_id)
    logger.info("catalog sync running", extra={"run_id": run_id, "source": run.source, "kind": run.kind})
    _broadcast(run_id)
    _Runner(run, token).run()
    return SyncRun.objects.get(pk=run_id)


@dataclass
class _Listed:
    source_id: str
    kind: str
    label: str
    title: Title | None = None
    state: str = SyncItem.State.PENDING
    reason: str = ""


@dataclass
class _Outcome:
    details: list[TitleDetails] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    requests: int = 0
    cover: str = ""
    cover_url: str = ""
    cover_source: str = ""


class _Runner:
    def __init__(self, run: SyncRun, token: str):
        self.run_id = run.pk
        self.source = run.source
        self.kind = run.kind
        self.token = token
        self.started = time.monotonic()
        self.last_progress = 0.0
        self.client: CatalogSource | None = None
        self.enricher: CatalogSource | None = None

    # The run's outcome: DONE, BLOCKED (the source's anti-bot answer) or FAILED.
    def run(self) -> None:
        try:
            self.client = registry.get(self.source)()
            if not SyncItem.objects.filter(run_id=self.run_id).exists():
                self._list()
            while (item := SyncItem.objects.filter(run_id=self.run_id, state=SyncItem.State.PENDING)
                   .order_by("id").first()) is not None:
                self._item(item)
            self._finish(SyncRun.State.DONE)
        except Blocked as exc:
            self._finish(SyncRun.State.BLOCKED, error=str(exc), retry_after_s=exc.retry_after_s)
        except LeaseLost:
            logger.warning("catalog sync lease lost; another worker continues", extra={"run_id": self.run_id})
        except OutsideError as exc:  # the list itself failed for good
            self._finish(SyncRun.State.FAILED, error=str(exc))
        except Exception as exc:
            logger.exception("catalog sync failed", extra={"run_id": self.run_id})
            self._finish(SyncRun.State.FAILED, error=f"Internal error: {type(exc).__name__}: {exc}"[:REASON_MAX])
        finally:
            for client in (self.client, self.enricher):
                if client is not None:
                    client.close()

    # --- listing --------------------------------------------------------------------------

    def _list(self) -> None:
        self._progress(current="listing", force=True)
        if self.kind == SyncRun.Kind.REFRESH:
            entries = self._due_titles()
        else:
            entries = []
            for kind in (MOVIE, TV):
                if self.kind == SyncRun.Kind.CHANGES:
                    entries += self._changed(kind)
                else:
                    listed = self._call("list", lambda k=kind: self.client.newest(kind=k))
                    entries += [self._decide(_Listed(entry.source_id, entry.kind, entry.title[:500]), entry)
                                for entry in listed]
        seen: dict[tuple[str, str], _Listed] = {}
        for entry in entries:
            seen.setdefault((entry.kind, entry.source_id), entry)
        entries = list(seen.values())
        with transaction.atomic():
            self._check_lease()
            SyncItem.objects.bulk_create([
                SyncItem(run_id=self.run_id, source_id=entry.source_id, kind=entry.kind, label=entry.label,
                         state=entry.state, reason=entry.reason, title=entry.title)
                for entry in entries], ignore_conflicts=True)
            decided = [entry for entry in entries if entry.state != SyncItem.State.PENDING]
            counts = {state: sum(1 for entry in decided if entry.state == state)
                      for state in (SyncItem.State.SKIPPED, SyncItem.State.UNCHANGED)}
            SyncRun.objects.filter(pk=self.run_id).update(
                listed=len(entries), done=F("done") + len(decided), skipped=F("skipped") + counts["skipped"],
                unchanged=F("unchanged") + counts["unchanged"], lease_until=_expiry())
            self._progress(current="", force=True)
            for state, count in counts.items():
                transaction.on_commit(lambda s=state, n=count: metrics.catalog_titles.labels(self.source, s).inc(n))
        logger.info("catalog sync listed", extra={"run_id": self.run_id, "listed": len(entries),
                                                  "to_fetch": len(entries) - len(decided)})

    def _decide(self, entry: _Listed, listed=None) -> _Listed:
        """Skipped or unchanged without a request, or left pending (to fetch)."""
        title = merge.find_title(source=self.source, kind=entry.kind, source_id=entry.source_id)
        entry.title = title
        if title is None:
            return entry
        if not refresh_due(title):
            entry.state, entry.reason = SyncItem.State.SKIPPED, "fetched recently (tiered refresh)"
        elif listed is not None and title.details_fetched_at is not None and self._unchanged(title, listed):
            entry.state, entry.reason = SyncItem.State.UNCHANGED, "the list shows it unchanged"
        return entry

    def _unchanged(self, title: Title, listed) -> bool:
        """The list shows what this source stored (its title and rating). Where the stored
        values are another source's, the list cannot tell: not unchanged."""
        sources = title.field_sources or {}
        if sources.get("title") != self.source or sources.get("rating", self.source) != self.source:
            return False
        return listed.title.strip() == title.title and listed.rating == title.rating

    def _changed(self, kind: str) -> list[_Listed]:
        last = SyncRun.objects.filter(source=self.source, kind=SyncRun.Kind.CHANGES, state=SyncRun.State.DONE,
                                      started_at__isnull=False).exclude(pk=self.run_id).order_by("-started_at").first()
        since = last.started_at.date() if last else timezone.now().date() - timedelta(days=1)
        ids = self._call("list", lambda: self.client.changes(kind=kind, since=since))
        known = {external.value: external.title for external in ExternalId.objects.select_related("title").filter(
            source=self.source, kind=kind, value__in=ids)}
        return [self._decide(_Listed(source_id, kind, known[source_id].title[:500])) for source_id in ids
                if source_id in known]

    def _due_titles(self) -> list[_Listed]:
        stale = timezone.now() - NEVER_WITHIN
        externals = ExternalId.objects.select_related("title").filter(
            source=self.source, title__details_fetched_at__lte=stale).order_by("title__details_fetched_at", "id")
        due = []
        for external in externals.iterator(chunk_size=500):
            if refresh_due(external.title):
                due.append(_Listed(external.value, external.kind, external.title.title[:500], title=external.title))
                if len(due) >= settings.CATALOG_REFRESH_BATCH:
                    break
        return due

    # --- one item -------------------------------------------------------------------------

    def _item(self, item: SyncItem) -> None:
        self._progress(current=item.label or f"{item.kind} {item.source_id}")
        outcome = _Outcome()
        try:
            outcome.details.append(self._fetch(item, outcome))
        except Blocked:
            self._settle(item, outcome, state=SyncItem.State.PENDING, reason="")  # counts the requests made
            raise
        except OutsideError as exc:
            self._settle(item, outcome, state=SyncItem.State.FAILED, reason=str(exc))
            return
        except Exception as exc:  # a page the parser trips on: this title fails, the run goes on
            logger.exception("catalog title unreadable", extra={"run_id": self.run_id, "source_id": item.source_id})
            self._settle(item, outcome, state=SyncItem.State.FAILED, reason=f"unreadable: {type(exc).__name__}: {exc}")
            return
        self._enrich(outcome)
        self._cover(outcome)
        try:
            self._settle(item, outcome)
        except LeaseLost:
            raise
        except Exception as exc:  # a value the database refused: the title stays as it was
            logger.exception("catalog title merge failed", extra={"run_id": self.run_id, "source_id": item.source_id})
            self._settle(item, _Outcome(requests=outcome.requests), state=SyncItem.State.FAILED,
                         reason=f"not stored: {type(exc).__name__}: {exc}")

    def _fetch(self, item: SyncItem, outcome: _Outcome) -> TitleDetails:
        outcome.requests += 1
        return self._call("details", lambda: self.client.details(item.source_id, kind=item.kind),
                          on_retry=lambda: setattr(outcome, "requests", outcome.requests + 1))

    def _enrich(self, outcome: _Outcome) -> None:
        """TMDB's details of a Douban title, found by its IMDb id (when TMDB is set up)."""
        first = outcome.details[0]
        if first.source == "tmdb" or not first.imdb_id or "tmdb" not in registry or not registry.get("tmdb").enabled():
            return
        try:
            if self.enricher is None:
                self.enricher = registry.get("tmdb")()
            tmdb = self.enricher
            known = ExternalId.objects.filter(source="tmdb", kind=first.kind, title__imdb_id=first.imdb_id).first()
            if known is not None:
                tmdb_id = known.value
            else:
                outcome.requests += 1
                found = self._call("find", lambda: tmdb.find_by_imdb(first.imdb_id), source="tmdb")
                tmdb_id = next((tmdb_id for kind, tmdb_id in found if kind == first.kind), None)
                if tmdb_id is None:
                    return
            outcome.requests += 1
            outcome.details.append(self._call("details", lambda: tmdb.details(tmdb_id, kind=first.kind),
                                              source="tmdb"))
        except OutsideError as exc:
            outcome.notes.append(f"TMDB: {exc}")
        except Exception as exc:
            logger.exception("catalog TMDB enrichment failed", extra={"run_id": self.run_id, "imdb_id": first.imdb_id})
            outcome.notes.append(f"TMDB: unreadable: {type(exc).__name__}: {exc}")

    def _cover(self, outcome: _Outcome) -> None:
        """The cover of the strongest source that has one, unless the stored one is it."""
        with_cover = sorted((d for d in outcome.details if d.cover_url), key=lambda d: merge.rank("cover", d.source))
        if not with_cover:
            return
        chosen = with_cover[0]
        first = outcome.details[0]
        title = merge.find_title(source=first.source, kind=first.kind, source_id=first.source_id)
        if title is not None:
            if not merge.may_write(title, "cover", chosen.source, empty=not title.cover):
                return
            if title.cover and title.cover_source_url == chosen.cover_url:
                return
        try:
            outcome.cover = self._call("cover", lambda: covers.download_cover(
                url=chosen.cover_url, source=chosen.source, source_id=chosen.source_id), source=chosen.source)
            outcome.cover_url, outcome.cover_source = chosen.cover_url, chosen.source
        except (OutsideError, OSError) as exc:  # OSError: MEDIA_ROOT not writable, the disk full
            outcome.notes.append(f"cover not stored: {exc}")

    def _settle(self, item: SyncItem, outcome: _Outcome, *, state: str | None = None, reason: str = "") -> None:
        """One transaction: the title merged, the item settled, the run's counts, the lease."""
        with transaction.atomic():
            run = self._check_lease()
            title_id, changed = None, []
            if state is None:
                result = merge.merge_title(details=outcome.details, cover=outcome.cover,
                                           cover_source=outcome.cover_source, cover_url=outcome.cover_url)
                title_id = result.title.pk
                outcome.notes += result.notes
                state = (SyncItem.State.NEW if result.created else
                         SyncItem.State.UPDATED if result.changed else SyncItem.State.UNCHANGED)
                changed = result.changed
            reasons = [reason] if reason else []
            reasons += outcome.notes
            text = "; ".join(reasons)[:REASON_MAX]
            updates = {"detail_requests": F("detail_requests") + outcome.requests, "lease_until": _expiry()}
            errors = list(run.errors)
            if state != SyncItem.State.PENDING:
                if not SyncItem.objects.filter(pk=item.pk, state=SyncItem.State.PENDING).update(
                        state=state, reason=text, title_id=title_id or item.title_id):
                    return  # settled already (cannot happen under the lease; harmless if it did)
                updates["done"] = F("done") + 1
                updates[state] = F(state) + 1
                if reasons:
                    errors.append({"item": item.label or item.source_id, "source_id": item.source_id,
                                   "kind": item.kind, "reason": text})
                    updates["errors"] = errors[-ERRORS_KEPT:]
            SyncRun.objects.filter(pk=self.run_id).update(**updates)
            metric_state = {"new": "created"}.get(state, state)
            if state != SyncItem.State.PENDING:
                transaction.on_commit(lambda: metrics.catalog_titles.labels(self.source, metric_state).inc())
            self._progress()
        if changed:
            logger.info("catalog title merged", extra={"run_id": self.run_id, "title_id": title_id, "state": state,
                                                       "fields": ",".join(changed)[:300]})

    # --- calls, leases, progress ----------------------------------------------------------

    def _call(self, call: str, action, *, source: str | None = None, on_retry=None):
        """`action()` with RetryLater tried again (not Blocked: that stops the run); each
        outcome counted in chorus_catalog_requests."""
        source = source or self.source
        retries = settings.CATALOG_SYNC_ITEM_RETRIES
        for attempt in range(retries + 1):
            try:
                value = action()
            except Blocked:
                metrics.catalog_requests.labels(source, call, "blocked").inc()
                raise
            except RetryLater as exc:
                metrics.catalog_requests.labels(source, call, "retry_later").inc()
                if attempt >= retries:
                    raise
                wait_s = exc.retry_after_s if exc.retry_after_s is not None else outside.backoff_s(
                    attempt, first_s=settings.CATALOG_SYNC_RETRY_FIRST_S, max_s=settings.CATALOG_SYNC_LEASE_S / 4)
                time.sleep(min(wait_s, settings.CATALOG_SYNC_LEASE_S / 4))
                self._renew()
                if on_retry is not None:
                    on_retry()
                continue
            except OutsideError:
                metrics.catalog_requests.labels(source, call, "give_up").inc()
                raise
            metrics.catalog_requests.labels(source, call, "ok").inc()
            return value
        raise AssertionError("unreachable")

    def _check_lease(self) -> SyncRun:
        """The run's row, locked, if this worker still holds it (inside a transaction)."""
        run = SyncRun.objects.select_for_update().filter(pk=self.run_id, lease_owner=self.token,
                                                          state=SyncRun.State.RUNNING).first()
        if run is None:
            raise LeaseLost(self.run_id)
        return run

    def _renew(self) -> None:
        if not SyncRun.objects.filter(pk=self.run_id, lease_owner=self.token, state=SyncRun.State.RUNNING).update(
                lease_until=_expiry()):
            raise LeaseLost(self.run_id)

    def _progress(self, *, current: str | None = None, force: bool = False) -> None:
        if current is not None:
            SyncRun.objects.filter(pk=self.run_id, lease_owner=self.token).update(current_item=current[:500])
        now = time.monotonic()
        if force or now - self.last_progress >= PROGRESS_EVERY_S:
            self.last_progress = now
            _broadcast(self.run_id)

    def _finish(self, state: str, *, error: str = "", retry_after_s: float | None = None) -> None:
        changes = {"state": state, "error": error[:2000], "current_item": "", "lease_owner": "", "lease_until": None}
        if state == SyncRun.State.BLOCKED:
            changes["retry_at"] = timezone.now() + timedelta(seconds=retry_after_s or DEFAULT_BLOCKED_BACKOFF_S)
        else:
            changes["finished_at"] = Now()
        with transaction.atomic():
            try:
                run = self._check_lease()
            except LeaseLost:
                logger.warning("catalog sync finished without its lease", extra={"run_id": self.run_id})
                return
            if error:
                changes["errors"] = [*run.errors, {"item": run.current_item or "run", "reason": error[:REASON_MAX]}][
                    -ERRORS_KEPT:]
            SyncRun.objects.filter(pk=self.run_id).update(**changes)
            _broadcast(self.run_id)
        metrics.catalog_sync_duration_seconds.labels(self.source, self.kind, state).observe(time.monotonic() - self.started)
        logger.info("catalog sync %s", state, extra={"run_id": self.run_id, "source": self.source, "error": error[:200]})
