from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect

from catalog import selectors as catalog_selectors
from rooms import events, selectors, services
from rooms.forms import RoomCreateForm, RoomSettingsForm
from rooms.models import Membership, Room
from rooms.services import RoomError


def _room_error_page(request, exc: RoomError):
    return render(request, "rooms/error.html", {"error": exc}, status=exc.http_status)


@login_required
@require_safe
def index(request):
    return render(request, "rooms/index.html", {"rooms": selectors.room_list(user=request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def create(request):
    form = RoomCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            room = services.room_create(owner=request.user, **form.cleaned_data)
        except RoomError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"Room “{room.name}” is ready. Add some tracks to its queue.")
            return redirect(room)
    return render(request, "rooms/create.html", {"form": form}, status=400 if form.errors else 200)


@login_required
@require_safe
def detail(request, slug: str):
    if request.htmx:
        # The room page runs its own player and socket: load it as a full page, not an htmx swap.
        return HttpResponseClientRedirect(request.get_full_path())
    try:
        room, membership = selectors.room_visible(slug=slug, user=request.user)
    except RoomError as exc:
        return _room_error_page(request, exc)
    is_host = membership is not None and membership.role == Membership.Role.HOST
    context = {
        "room": room,
        "membership": membership,
        "is_host": is_host,
        "can_control": membership is not None and services.can_control(room, membership),
        "settings_form": RoomSettingsForm(initial={"name": room.name, "visibility": room.visibility,
                                                   "control_policy": room.control_policy}) if is_host else None,
        "invite_url": request.build_absolute_uri(room.get_absolute_url() + f"invite/{room.invite_code}")
        if is_host or (room.visibility == Room.Visibility.PRIVATE and membership is not None) else None,
        "sync_config": {
            "seekThresholdMs": settings.ROOMS_SEEK_THRESHOLD_MS,
            "maxRateNudge": settings.ROOMS_MAX_RATE_NUDGE,
            "websocket": f"/ws/rooms/{room.slug}/",
            "userId": request.user.pk,
        },
        "memberships": Membership.objects.filter(room=room).select_related("user") if is_host else None,
    }
    return render(request, "rooms/detail.html", context)


@login_required
@require_safe
def invite(request, slug: str, code: str):
    room = Room.objects.filter(slug=slug).first()
    if room is None:
        return _room_error_page(request, RoomError("not_found", "That room no longer exists."))
    try:
        services.room_join(room=room, user=request.user, invite_code=code)
    except RoomError as exc:
        return _room_error_page(request, RoomError(exc.code, "That invite link is not valid (any more)."))
    messages.success(request, f"You joined “{room.name}”.")
    return redirect(room)


def _room_form_action(request, slug: str, act) -> HttpResponse:
    """A form posted from the room page: `act(room)` does it and returns the message to show
    there; a RoomError shows its message instead."""
    try:
        room, _ = selectors.room_visible(slug=slug, user=request.user)
        done = act(room)
    except RoomError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return redirect("rooms:detail", slug=slug)


@login_required
@require_POST
def update_settings(request, slug: str):
    def act(room: Room) -> str:
        form = RoomSettingsForm(request.POST)
        if not form.is_valid():
            raise RoomError("invalid", "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()))
        services.room_update(room=room, actor=request.user, **form.cleaned_data)
        return "Room settings saved."
    return _room_form_action(request, slug, act)


@login_required
@require_POST
def set_role(request, slug: str):
    def act(room: Room) -> str:
        services.member_set_role(room=room, actor=request.user, user_id=_int(request.POST.get("user_id")),
                                 role=request.POST.get("role", ""))
        return "Role changed."
    return _room_form_action(request, slug, act)


@login_required
@require_POST
def member_remove(request, slug: str):
    """The host removes a member: their open sockets and radio streams of the room close."""
    def act(room: Room) -> str:
        services.member_remove(room=room, actor=request.user, user_id=_int(request.POST.get("user_id")))
        note = " The invite link has changed: share the new one with whoever should still join." \
            if room.visibility == Room.Visibility.PRIVATE else ""
        return "Member removed." + note
    return _room_form_action(request, slug, act)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@login_required
@require_safe
def queue_search(request, slug: str):
    """htmx: library tracks matching ?q=, each with an Add button."""
    try:
        room, _ = selectors.room_visible(slug=slug, user=request.user)
    except RoomError as exc:
        return HttpResponse(exc.message, status=exc.http_status)
    query = request.GET.get("q", "").strip()[:200]
    tracks = catalog_selectors.track_search(query=query)[:20] if query else []
    return render(request, "rooms/_queue_search.html", {"room": room, "tracks": tracks, "query": query})


@login_required
@require_POST
def queue_edit(request, slug: str):
    """Add, remove or move queue entries (forms and htmx); JSON error with a message on failure."""
    op = request.POST.get("op")
    try:
        room, _ = selectors.room_visible(slug=slug, user=request.user)
        if op == "add":
            services.queue_add(room=room, actor=request.user, track_id=_int(request.POST.get("track_id")),
                               play_next=request.POST.get("play_next") == "1")
        elif op == "remove":
            services.queue_remove(room=room, actor=request.user, entry_id=_int(request.POST.get("entry_id")))
        elif op == "move":
            services.queue_move(room=room, actor=request.user, entry_id=_int(request.POST.get("entry_id")),
                                to_index=_int(request.POST.get("to_index")))
        elif op == "mode":
            repeat = request.POST.get("repeat") or None
            shuffle = request.POST.get("shuffle")
            services.room_update(room=room, actor=request.user, repeat=repeat,
                                 shuffle=None if shuffle is None else shuffle == "1")
        else:
            raise RoomError("invalid", "op must be add, remove, move or mode.")
    except RoomError as exc:
        if request.htmx:
            return JsonResponse({"error": exc.code, "message": exc.message}, status=exc.http_status)
        messages.error(request, exc.message)
        return redirect("rooms:detail", slug=slug)
    if request.htmx:
        return JsonResponse(events.queue_event(room))
    return redirect("rooms:detail", slug=slug)
