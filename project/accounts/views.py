from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from project.accounts import selectors, services
from project.accounts.forms import SignupForm, TokenCreateForm


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome to Chorus, {user.username}.")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)


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
    messages.success(request, f"Token “{token.name}” revoked. Programs using it are now refused.")
    return redirect("account-settings")
