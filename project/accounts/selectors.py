from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from project.accounts.models import ApiToken


def token_list(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("revoked_at", "-created_at")
