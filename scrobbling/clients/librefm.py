"""Libre.fm (https://libre.fm), which speaks the Last.fm API 2.0: the Last.fm client with
its own API root, keys and web-auth page (LIBREFM_API_ROOT, LIBREFM_API_KEY,
LIBREFM_API_SECRET, LIBREFM_AUTH_URL)."""

from __future__ import annotations

from scrobbling.clients import registry
from scrobbling.clients.lastfm import LastfmClient


@registry.register
class LibrefmClient(LastfmClient):
    name = "librefm"
    label = "Libre.fm"
    settings_prefix = "LIBREFM"
