from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods, require_POST

from project.accounts import selectors, services
from project.accounts.forms import InviteCreateForm, SignupForm, TokenCreateForm


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    mode = services.signup_mode()
    invite_token = (request.GET.get("invite") or "").strip() or None
    if mode == "closed":
        return render(request, "registration/signup_unavailable.html", {"mode": mode}, status=403)
    if mode == "invite":
        try:
            services.invite_check(raw=invite_token)
        except ValidationError as exc:
            return render(request, "registration/signup_unavailable.html",
                          {"mode": mode, "reason": exc.messages[0], "had_invite": bool(invite_token)}, status=403)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.account_signup(
                username=form.cleaned_data["username"], password=form.cleaned_data["password1"],
                invite_token=invite_token if mode == "invite" else None,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to Chorus, {user.username}.")
            return redirect("home")
    action = reverse("signup") + (f"?{urlencode({'invite': invite_token})}" if mode == "invite" else "")
    return render(request, "registration/signup.html", {"form": form, "action": action},
                  status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def invites(request):
    """Staff: create invite links (shown once) and withdraw them."""
    if not request.user.is_staff:
        raise PermissionDenied("Only staff can manage invites.")
    form = InviteCreateForm(request.POST or None)
    new_link = None
    if request.method == "POST" and form.is_valid():
        try:
            _invite, raw = services.invite_create(created_by=request.user, **form.cleaned_data)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            new_link = request.build_absolute_uri(reverse("signup") + "?" + urlencode({"invite": raw}))
            messages.success(request, "Invite created. Copy the link now: it is not shown again.")
            form = InviteCreateForm()
    context = {"form": form, "invites": selectors.invite_list(), "new_link": new_link,
               "signup_mode": services.signup_mode()}
    return render(request, "accounts/invites.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def invite_revoke(request, invite_id: int):
    try:
        invite = services.invite_revoke(actor=request.user, invite_id=invite_id)
    except ValidationError:
        messages.error(request, "No such invite.")
        return redirect("invites")
    messages.success(request, f"Invite {invite.prefix}… withdrawn: its link no longer works.")
    return redirect("invites")


@login_required
@require_http_methods(["GET", "POST"])
def account_settings(request):
    form = TokenCreateForm(request.POST or None)
    new_token = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                token, new_token = services.token_create(user=request.user, name=form.cleaned_data["name"])
            except ValidationError as exc:
                form.add_error("name", exc)
            else:
                messages.success(request, f"Token “{token.name}” created. Copy it now: it is not shown again.")
                form = TokenCreateForm()
        if form.errors:
            status = 400
    context = {"form": form, "tokens": selectors.token_list(user=request.user), "new_token": new_token}
    return render(request, "accounts/settings.html", context, status=status)


@login_required
@require_POST
def token_revoke(request, token_id: int):
    try:
        token = services.token_revoke(user=request.user, token_id=token_id)
    except (ValidationError, PermissionDenied):
        messages.error(request, "No such token among yours.")
        return redirect("account-settings")
    messages.success(request, f"Token “{token.name}” revoked. Programs using it are now refused and disconnected.")
    return redirect("account-settings")
