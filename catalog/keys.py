"""How catalog names are folded into keys: what makes two names the same, what a search
matches, and how a play known only by artist and title finds a library track. Catalog's
models store these keys; other apps (scrobbling) match with the same rules through here."""

from __future__ import annotations

import unicodedata

UNKNOWN_ARTIST = "Unknown Artist"


def fold(text: str) -> str:
    """Case- and accent-insensitive form of a name, for matching ("Ünïcode" -> "unicode")."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().strip())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())


# Longest stored key: folding can lengthen a name ("ß" -> "ss", "ﬃ" -> "ffi").
KEY_LENGTH = 400


def name_key(text: str) -> str:
    """What makes two artist names (or two album titles of an artist) the same: Unicode
    compatibility form, case-folded, spaces collapsed ("ÜNÏCODE  ÄRTIST" = "Ünïcode Ärtist",
    "STRASSE" = "Straße"). Accents count ("Café" and "Cafe" stay two). Computed here, in
    Python, and stored, so that uniqueness holds alike on PostgreSQL and SQLite (whose
    LOWER() and LIKE fold ASCII letters only)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return " ".join(folded.split())[:KEY_LENGTH]


def search_key(text: str) -> str:
    """What a search matches: `fold`, also accent-insensitive ("unicode" finds "Ünïcode")."""
    return fold(text)[:KEY_LENGTH]


def match_key(artist: str, title: str) -> str:
    """How a play from elsewhere (artist and title only) finds a library track."""
    return f"{fold(artist)}\x1f{fold(title)}"[:400]
