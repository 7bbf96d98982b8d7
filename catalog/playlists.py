"""M3U playlists of tracks for media players (mpv, VLC, foobar2000, a phone app).

Extended M3U in UTF-8:

    #EXTM3U
    #PLAYLIST:Artist - Album
    #EXTINF:183,Artist - Title
    https://chorus.example.org/library/tracks/12/stream?token=chorus_...

Each URL carries the user's streams-only token (project.accounts.services.stream_token_get),
never the session cookie or an API token: a leaked playlist opens streams and nothing else,
and revoking that token on the settings page breaks every playlist made with it.
`?format=` and `?bitrate=` of the playlist request are passed on to every track URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.utils.http import content_disposition_header

from catalog import streaming
from catalog.models import Track
from project.accounts.services import stream_token_get

MAX_TRACKS = 2000
CONTENT_TYPE = "audio/x-mpegurl; charset=utf-8"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]+')


def _one_line(text: str) -> str:
    """A name as one M3U line: a newline in a title must not start a line of its own."""
    return _CONTROL.sub(" ", text).strip()


def m3u(*, tracks: Iterable[Track], url_of, title: str = "") -> str:
    """The playlist text; `url_of(track)` is the absolute URL a player opens."""
    lines = ["#EXTM3U"]
    if title:
        lines.append(f"#PLAYLIST:{_one_line(title)}")
    for track in tracks:
        lines.append(f"#EXTINF:{max(0, round(track.duration_s))},{_one_line(track.artist.name)} - {_one_line(track.title)}")
        lines.append(url_of(track))
    return "\n".join(lines) + "\n"


def playlist_response(request: HttpRequest, *, user, tracks: Iterable[Track], title: str) -> HttpResponse:
    """A .m3u download of `tracks` whose URLs work in a player as `user`.

    Raises streaming.StreamRequestError for a bad ?format= / ?bitrate=."""
    params = {}
    transcode = streaming.parse_transcode(request.GET)
    if transcode is not None:
        params = {"format": transcode[0].name, "bitrate": str(transcode[1])}
    query = urlencode({**params, "token": stream_token_get(user=user)})
    text = m3u(tracks=tracks, url_of=lambda t: f"{request.build_absolute_uri(t.get_stream_url())}?{query}", title=title)
    response = HttpResponse(text, content_type=CONTENT_TYPE)
    filename = _UNSAFE_FILENAME.sub(" ", title).strip()[:120] or "playlist"
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=f"{filename}.m3u")
    response["Cache-Control"] = "private, no-store"
    return response
