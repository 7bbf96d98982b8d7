"""How JSON API lists are paged (NINJA_PAGINATION_CLASS): ninja's limit/offset, with the
offset bounded too. Without a bound, `offset=10**28` reached SQL and failed there (OFFSET is
a 64-bit integer) with a 500; now it is a 422 naming `offset`."""

from ninja import Field, Schema
from ninja.conf import settings as ninja_settings
from ninja.pagination import LimitOffsetPagination

from project.inputs import MAX_SAFE_INTEGER


class LimitOffset(LimitOffsetPagination):
    class Input(Schema):
        limit: int = Field(ninja_settings.PAGINATION_PER_PAGE, ge=1, le=ninja_settings.PAGINATION_MAX_LIMIT)
        offset: int = Field(0, ge=0, le=MAX_SAFE_INTEGER)
