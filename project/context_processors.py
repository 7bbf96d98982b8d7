from django.urls import reverse

NAV_ITEMS = (
    ("library", "Library", "catalog:home"),
    ("rooms", "Rooms", "rooms:index"),
    ("scrobbles", "Scrobbles", "scrobbling:index"),
    ("catalog", "Catalog", "catalog:films"),
    ("live", "Live", "livefeed:index"),
)


def navigation(request):
    """The main navigation with the current section marked."""
    path = request.path
    items = []
    for key, label, url_name in NAV_ITEMS:
        url = reverse(url_name)
        items.append({"key": key, "label": label, "url": url, "active": path.startswith(url)})
    # closed | invite | open: whether to offer "Sign up", and how the login page says to get an account.
    from django.conf import settings

    return {"nav_items": items, "signup_mode": settings.SIGNUP}
