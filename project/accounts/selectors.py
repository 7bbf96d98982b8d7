from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from project.accounts.models import ApiToken, Invite


def token_list(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("revoked_at", "-created_at")


def invite_list() -> QuerySet[Invite]:
    return Invite.objects.select_related("created_by").order_by("-created_at")[:200]
