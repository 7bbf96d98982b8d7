"""Covers, downloaded by the sync and stored under MEDIA_ROOT/covers/ (Douban's image hosts
refuse pages of other sites, so Chorus serves its own copy; see `catalog:cover`).

A download waits its turn in the same per-host limiter as the source's requests (Douban's
image host gets Douban's interval), has a timeout, sends Douban's own page as Referer, takes
only an `image/*` answer of at most CATALOG_COVER_MAX_BYTES, and is written to a temporary
file renamed into place: a cover is whole or absent. Failures are project/outside.py's
errors; the sync records them on the run's item and keeps the title.
"""

from __future__ import annotations

import mimetypes
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from project import outside, ratelimit
from project.outside import GiveUp

COVERS_DIR = "covers"
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif"}
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def rate_key(source: str, url: str) -> tuple[str, float]:
    """(limiter key, interval) of a cover's host: the same key the source's client uses for
    that host (Douban's "douban:<host>", TMDB's "<host>")."""
    host = urlsplit(url).netloc
    if source == "douban":
        return f"douban:{host}", settings.CATALOG_DOUBAN_MIN_INTERVAL_S
    return host, 1.0 / settings.CATALOG_TMDB_MAX_PER_S


def cover_name(source: str, source_id: str) -> str:
    """The stored file's name (without extension): one per source entry, so a re-run (or a
    run resumed after a crash) overwrites the same file."""
    return f"{_SAFE.sub('_', source)}-{_SAFE.sub('_', source_id)}"


def download_cover(*, url: str, source: str, source_id: str, http: httpx.Client | None = None) -> str:
    """Download `url` into MEDIA_ROOT/covers/; the stored path relative to MEDIA_ROOT
    ("covers/douban-3541415.jpg")."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise GiveUp(f"cover: {url[:100]!r} is not an http(s) address")
    key, interval_s = rate_key(source, url)
    timeout_s = settings.CATALOG_DOUBAN_TIMEOUT_S if source == "douban" else settings.CATALOG_TMDB_TIMEOUT_S
    limit = settings.CATALOG_COVER_MAX_BYTES
    headers = {"Accept": "image/*"}
    if source == "douban":
        headers["Referer"] = settings.CATALOG_DOUBAN_ROOT.rstrip("/") + "/"
    client = http or outside.http_client(timeout_s=timeout_s)
    folder = Path(settings.MEDIA_ROOT) / COVERS_DIR
    try:
        ratelimit.wait_turn(key, min_interval_s=interval_s, timeout_s=settings.CATALOG_DOUBAN_WAIT_MAX_S)
        what = f"cover {url[:100]}"
        with outside.mapped_errors(url, what=what, timeout_s=timeout_s), client.stream(
                "GET", url, headers=headers, timeout=timeout_s, follow_redirects=True) as response:
            outside.raise_if_busy(response, f"{what}: the image host is busy (HTTP {response.status_code})")
            if response.status_code != 200:
                raise GiveUp(f"{what}: HTTP {response.status_code}", status=response.status_code)
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not content_type.startswith("image/"):
                raise GiveUp(f"{what}: not an image ({content_type or 'no Content-Type'})")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise GiveUp(f"{what}: {int(declared)} bytes, more than the {limit} accepted")
            extension = EXTENSIONS.get(content_type) or mimetypes.guess_extension(content_type) or ".img"
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / (cover_name(source, source_id) + extension)
            partial = final.with_name(final.name + f".{os.getpid()}.part")
            size = 0
            try:
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(64 * 1024):
                        size += len(chunk)
                        if size > limit:
                            raise GiveUp(f"{what}: more than the {limit} bytes accepted")
                        out.write(chunk)
                if not size:
                    raise GiveUp(f"{what}: the image is empty")
                os.replace(partial, final)
            finally:
                partial.unlink(missing_ok=True)
    finally:
        if http is None:
            client.close()
    return f"{COVERS_DIR}/{final.name}"
