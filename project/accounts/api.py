from ninja import Router, Schema

router = Router(tags=["account"])


class MeOut(Schema):
    id: int
    username: str
    is_staff: bool


@router.get("/me", response=MeOut, summary="The account the token belongs to")
def me(request):
    return request.user
