"""The Scrobbles page (history and statistics) and the page that links the scrobbling services
(one card per registered service: scrobbling/clients)."""

from __future__ import annotations

import secrets
from datetime import datetime
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect

from scrobbling import charts, links, selectors
from scrobbling.clients import ScrobblingClient
from scrobbling.forms import ListenBrainzLinkForm
from scrobbling.inputs import ScrobbleError

HISTORY_PAGE = 50
TOP_LIMIT = 10
DEFAULT_PERIOD = "month"
PERIOD_TABS = [("week", "Week"), ("month", "Month"), ("year", "Year"), ("all", "All time")]


def _period(request) -> str:
    period = request.GET.get("period", DEFAULT_PERIOD)
    return period if period in selectors.PERIODS else DEFAULT_PERIOD


def _before(request) -> tuple[datetime | None, str]:
    """?before= (an ISO timestamp from the "Older" link): the time, or an error to show."""
    raw = request.GET.get("before", "").strip().replace(" ", "+")  # a "+" not URL-encoded arrives as a space
    if not raw:
        return None, ""
    try:
        before = datetime.fromisoformat(raw)
    except ValueError:
        before = None
    if before is None or before.tzinfo is None:
        return None, f"“{raw[:40]}” is not a date and time with a time zone; showing your newest plays."
    return before, ""


def _history(request, before: datetime | None) -> dict:
    plays = selectors.history(user=request.user, limit=HISTORY_PAGE, before=before)
    older = plays[-1].played_at.isoformat() if len(plays) == HISTORY_PAGE else None
    return {"plays": plays, "older": older, "before": before}


@login_required
@require_safe
def index(request):
    period = _period(request)
    before, before_error = _before(request)
    if before_error:
        messages.error(request, before_error)
    user = request.user
    context = {
        "summary": selectors.summary(user=user),
        "chart": charts.daily_bars(selectors.plays_per_day(user=user, days=90)),
        "period": period,
        "period_tabs": PERIOD_TABS,
        "top_artists": charts.with_shares(selectors.top_artists(user=user, period=period, limit=TOP_LIMIT)),
        "top_albums": charts.with_shares(selectors.top_albums(user=user, period=period, limit=TOP_LIMIT)),
        "top_tracks": charts.with_shares(selectors.top_tracks(user=user, period=period, limit=TOP_LIMIT)),
        "rooms": selectors.room_listening(user=user, period=period, limit=TOP_LIMIT),
        "statuses": selectors.link_statuses(user=user),
        "listenbrainz_root": _listenbrainz_root(request),
        **_history(request, before),
    }
    return render(request, "scrobbling/index.html", context, status=400 if before_error else 200)


def _listenbrainz_root(request) -> str:
    """The API root to give an outside scrobbler (it adds /1/submit-listens itself)."""
    return request.build_absolute_uri(reverse("listenbrainz-submit").removesuffix("/1/submit-listens"))


@login_required
@require_safe
def recent(request):
    """htmx, every 10 s: the newest plays."""
    return render(request, "scrobbling/_recent.html", {"period": _period(request), **_history(request, None)})


# --- services ------------------------------------------------------------------------


def _services_page(request, form: ListenBrainzLinkForm, *, status: int = 200):
    context = {
        "statuses": selectors.link_statuses(user=request.user),
        "lb_form": form,
        "listenbrainz_root": _listenbrainz_root(request),
    }
    return render(request, "scrobbling/services.html", context, status=status)


@login_required
@require_safe
def services_page(request):
    return _services_page(request, ListenBrainzLinkForm())


@login_required
@require_safe
def services_status(request):
    """htmx, every 5 s: the link cards (the ListenBrainz form in them is kept by hx-preserve)."""
    context = {"statuses": selectors.link_statuses(user=request.user), "lb_form": ListenBrainzLinkForm(),
               "preserve_form": True}
    return render(request, "scrobbling/_link_cards.html", context)


@login_required
@require_POST
def token_link(request, service: str):
    """Link a service the user pastes a token for (ListenBrainz or a compatible server)."""
    kind = _service(service)
    form = ListenBrainzLinkForm(request.POST)
    if form.is_valid():
        try:
            link = links.link_token(user=request.user, service=kind.name, token=form.cleaned_data["token"],
                                    api_root=form.cleaned_data["api_root"])
        except ScrobbleError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"{kind.label} linked as {link.account_name}.")
            return redirect("scrobbling:services")
    return _services_page(request, form, status=400)


def _service(service: str) -> type[ScrobblingClient]:
    try:
        return links.scrobbler(service)
    except ScrobbleError:
        raise Http404(f"No scrobbling service called “{service}”.") from None


def _on_link(request, service: str, action, said) -> HttpResponse:
    """Do `action` (a links service taking user and service) to one of the user's links and
    say what became of it (`said(kind, result)`), or why not; back to the services page."""
    kind = _service(service)
    try:
        result = action(user=request.user, service=kind.name)
    except ScrobbleError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, said(kind, result))
    return redirect("scrobbling:services")


def _unlinked(kind: type[ScrobblingClient], waiting: int) -> str:
    if not waiting:
        return f"{kind.label} unlinked. No plays were waiting for it."
    plays, them = ("1 play still waits", "it") if waiting == 1 else (f"{waiting} plays still wait", "them")
    return f"{kind.label} unlinked. {plays} for it: link it again to send {them}, or discard {them}."


@login_required
@require_POST
def unlink(request, service: str):
    return _on_link(request, service, links.link_remove, _unlinked)


@login_required
@require_POST
def discard(request, service: str):
    return _on_link(request, service, links.buffer_discard, lambda kind, deleted: (
        f"Discarded {charts.plays_label(deleted)} waiting for {kind.label}; your history keeps them."))


# --- web authentication (Last.fm and services of its kind) -----------------------------


def _state_key(service: str) -> str:
    return f"scrobbling:{service}_state"


@login_required
@require_safe
def web_connect(request, service: str):
    """Off to the service, which asks the user and comes back to web_callback with a token.
    A random state in the callback URL ties the answer to this session (no linking of
    somebody else's account through a crafted link)."""
    kind = _service(service)
    if request.htmx:
        return HttpResponseClientRedirect(request.get_full_path())  # leave the site as a full page
    state = secrets.token_urlsafe(16)
    request.session[_state_key(kind.name)] = state
    callback = request.build_absolute_uri(f"{reverse('scrobbling:callback', args=[kind.name])}?"
                                          f"{urlencode({'state': state})}")
    try:
        url = links.connect_url(service=kind.name, callback_url=callback)
    except ScrobbleError as exc:
        messages.error(request, exc.message)
        return redirect("scrobbling:services")
    return redirect(url)


@login_required
@require_safe
def web_callback(request, service: str):
    kind = _service(service)
    token = request.GET.get("token", "").strip()
    expected = request.session.pop(_state_key(kind.name), "")
    if not token:
        messages.error(request, f"{kind.label} sent no token back (was the connection cancelled?). "
                                "Try connecting again.")
    elif not expected or not constant_time_compare(expected, request.GET.get("state", "")):
        messages.error(request, f"This {kind.label} answer does not belong to a connection started here; "
                                f"press Connect {kind.label} again.")
    else:
        try:
            link = links.link_web(user=request.user, service=kind.name, token=token)
        except ScrobbleError as exc:
            messages.error(request, f"{kind.label} was not linked: {exc.message}")
        else:
            messages.success(request, f"{kind.label} linked as {link.account_name}.")
    return redirect("scrobbling:services")
