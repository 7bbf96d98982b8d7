"""Film catalog sync over HTTP (/api/catalog/sync/), for staff: start a run, list the runs,
follow one. The same service as the pages (catalog.sync); a refusal is a 4xx naming why.

`POST /api/catalog/sync/{source}` answers 202 at once with the run (the work runs in a
worker). A source already syncing is not started twice: the answer is the same 202 with the
run in progress and `already_running: true`, so a client can follow it either way."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Literal

from ninja import Field, Query, Router, Schema, Status

from catalog import sync
from catalog.models import SyncRun
from catalog.sync import SyncRefused
from project.inputs import MAX_SAFE_INTEGER
from project.outside import UnknownService
from project.schemas import ErrorOut

router = Router(tags=["catalog sync"])
RUNS_LIMIT_MAX = 200


class RunError(Schema):
    item: str
    reason: str
    source_id: str | None = None
    kind: str | None = None


class SyncRunOut(Schema):
    id: int
    source: str
    kind: Literal["newest", "changes", "refresh"]
    trigger: Literal["schedule", "manual", "api"]
    state: Literal["queued", "running", "done", "failed", "blocked"]
    listed: int
    done: int
    new: int
    updated: int
    unchanged: int
    skipped: int
    failed: int
    detail_requests: int
    percent: int
    current_item: str
    rate_per_min: float | None = Field(None, description="Titles settled per minute since the run started.")
    error: str | None = Field(None, description="Why the run stopped, when it did (failed or blocked).")
    errors: list[RunError] = Field(description="The last 50 items that failed or were left incomplete, with why.")
    errors_total: int
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    retry_at: datetime | None = Field(None, description="Blocked: the next trigger continues the run after this.")
    url: str = Field(description="The run's page.")


class StartedOut(SyncRunOut):
    already_running: bool = Field(description="True: the source was already syncing; this is that run.")


class RunsQuery(Schema):
    source: str | None = None
    state: Literal["queued", "running", "done", "failed", "blocked"] | None = None
    limit: int = Field(50, ge=1, le=RUNS_LIMIT_MAX)


ERRORS = {400: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut}


def _staff_only(view):
    """Staff only (403 otherwise); a SyncRefused becomes its JSON answer."""

    @functools.wraps(view)
    def answer(request, *args, **kwargs):
        if not request.user.is_staff:
            return Status(403, {"error": "forbidden", "message": "Only staff can see and start catalog syncs."})
        try:
            return view(request, *args, **kwargs)
        except SyncRefused as exc:
            error = {403: "forbidden", 409: "conflict"}.get(exc.http_status, "invalid")
            body = {"error": error, "message": exc.message}
            if exc.field is not None:
                body["field"] = exc.field
            return Status(exc.http_status, body)

    return answer


@router.get("/runs", response={200: list[SyncRunOut], **ERRORS}, summary="Sync runs, newest first")
@_staff_only
def runs(request, filters: Query[RunsQuery]):
    found = SyncRun.objects.order_by("-created_at", "-id")
    if filters.source:
        found = found.filter(source=filters.source)
    if filters.state:
        found = found.filter(state=filters.state)
    return [sync.run_event(run) for run in found[:filters.limit]]


@router.get("/runs/{run_id}", response={200: SyncRunOut, **ERRORS}, summary="One sync run: state, counts, errors")
@_staff_only
def run_detail(request, run_id: int):
    run = SyncRun.objects.filter(pk=run_id).first() if 0 < run_id <= MAX_SAFE_INTEGER else None
    if run is None:
        return Status(404, {"error": "not_found", "message": f"No sync run {run_id}."})
    return sync.run_event(run)


@router.post("/{source}", response={202: StartedOut, **ERRORS}, summary="Start a sync of one source",
             description="`?kind=newest` (default), `changes` or `refresh`. Answers 202 at once with the run; the sync runs in a worker. A source already syncing "
                         "answers 202 with that run and `already_running: true`. An unknown source is 404, a "
                         "source not set up (TMDB without a key) or one that blocked us and is backing off is 409.")
@_staff_only
def start(request, source: str, kind: Literal["newest", "changes", "refresh"] = "newest"):
    try:
        run, started = sync.sync_start(source=source, kind=kind, trigger=SyncRun.Trigger.API, user=request.user)
    except UnknownService:
        known = ", ".join(sync.registry.names())
        return Status(404, {"error": "not_found", "field": "source",
                            "message": f"No catalog source called {source[:50]!r}; the sources are {known}."})
    return Status(202, {**sync.run_event(run), "already_running": not started})
