from django.utils.functional import SimpleLazyObject

from scrobbling import inputs, selectors


def scrobbling(request):
    """`paused_links` for the banner in base.html: the user's paused links with the plays kept
    for each. Lazy, so a partial that never shows the banner never runs the query. And
    `scrobble_rule`, the play threshold the library player applies (the server's, not a copy)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"paused_links": []}
    return {"paused_links": SimpleLazyObject(lambda: selectors.paused_links_with_waiting(user=user)),
            "scrobble_rule": {"min_track_s": inputs.MIN_TRACK_S, "played_enough_s": inputs.PLAYED_ENOUGH_S}}
