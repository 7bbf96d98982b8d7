"""Bilibili's WBI request signature (the `w_rid` and `wts` parameters some web API calls,
getDanmuInfo among them, must carry). The keys are the file names of the two images the nav
endpoint lists (`data.wbi_img`); they change daily."""

from __future__ import annotations

import hashlib
import time
from typing import Any
from urllib.parse import quote

MIXIN_KEY_ENC_TAB = (
    46, 47, 18, 2, 53, 8, 23, 32, 15, 50, 10, 31, 58, 3, 45, 35, 27, 43, 5, 49, 33, 9, 42, 19, 29, 28, 14,
    39, 12, 38, 41, 13, 37, 48, 7, 16, 24, 55, 40, 61, 26, 17, 0, 1, 60, 51, 30, 4, 22, 25, 54, 21, 56, 59,
    6, 63, 57, 62, 11, 36, 20, 34, 44, 52,
)


def mixin_key(img_key: str, sub_key: str) -> str:
    raw = img_key + sub_key
    return "".join(raw[i] for i in MIXIN_KEY_ENC_TAB if i < len(raw))[:32]


def wbi_sign(params: dict[str, Any], *, img_key: str, sub_key: str, wts: int | None = None) -> dict[str, str]:
    """`params` plus `wts` (unix seconds) and `w_rid`: md5 of the query sorted by name (values
    without !'()*, percent-encoded with upper-case hex and %20 for spaces) followed by the
    mixin key."""
    signed = {name: "".join(c for c in str(value) if c not in "!'()*") for name, value in params.items()}
    signed["wts"] = str(int(time.time()) if wts is None else wts)
    query = "&".join(f"{quote(name, safe='')}={quote(signed[name], safe='')}" for name in sorted(signed))
    digest = hashlib.md5((query + mixin_key(img_key, sub_key)).encode(), usedforsecurity=False).hexdigest()
    return {**signed, "w_rid": digest}
