"""Pages of the film sync (staff): the history of runs, one run live, and the "Sync now" POST.
Thin: the runs come from catalog.sync's `run_event` (the same shape the websocket pushes),
every start goes through `sync.sync_start`."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from catalog import sync
from catalog.models import SyncRun

RUNS_PER_PAGE = 50
ERRORS_SHOWN = 200


@staff_member_required
@require_safe
def sync_runs(request):
    page = Paginator(SyncRun.objects.order_by("-created_at", "-id"), RUNS_PER_PAGE).get_page(request.GET.get("page"))
    sources = [{"name": source.name, "label": source.label, "url": reverse("catalog:sync-start", args=[source.name]),
                "changes": hasattr(source, "changes")} for source in sync.enabled_sources()]
    return render(request, "catalog/sync/runs.html", {"page": page, "runs": page.object_list, "sources": sources})


@staff_member_required
@require_safe
def sync_run(request, run_id: int):
    run = get_object_or_404(SyncRun, pk=run_id)
    event = sync.run_event(run)
    event["errors"] = run.errors[-ERRORS_SHOWN:]
    config = {"runId": run.pk, "socket": f"/ws/catalog/sync/{run.pk}/", "run": event}
    return render(request, "catalog/sync/run.html", {"run": run, "event": event, "sync_config": config})


@staff_member_required
@require_POST
def sync_start(request, source: str):
    """Start a run of `source` (POST kind=newest|changes|refresh, newest by default) and show
    it; a source already running shows the running run."""
    try:
        run, started = sync.sync_start(source=source, kind=request.POST.get("kind") or SyncRun.Kind.NEWEST,
                                       trigger=SyncRun.Trigger.MANUAL, user=request.user)
    except sync.UnknownService:
        raise Http404(f"No catalog source called {source[:50]!r}.") from None
    except sync.SyncRefused as exc:
        messages.error(request, exc.message)
        return redirect("catalog:sync-runs")
    if not started:
        messages.info(request, f"{run.source} is already syncing: this is the run in progress.")
    return redirect(run)
