"""The demo titles' covers, drawn here as PNG images: no image library, no font file.

A cover is a poster-shaped (270 x 400, Douban's s_ratio_poster size) vertical gradient in the
title's own colours, a lighter band across it, the initials of its English name in large
block letters and its year below them, both within the middle of the width (so they survive a
page cropping the cover to a narrower shape). Everything comes from the title, so a cover is the same
on every machine and every start (the demo server draws each once, on first request).

The PNG writer is the smallest that browsers and the sync's image check accept: 8-bit RGB,
one IDAT chunk, filter 0 on every row, CRCs from zlib.
"""

from __future__ import annotations

import colorsys
import hashlib
import struct
import zlib

WIDTH = 270
HEIGHT = 400
TEXT_MAX_WIDTH = 170
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# 5 x 7 block letters: each row a string of five cells, "#" drawn.
GLYPHS: dict[str, tuple[str, ...]] = {
    "A": (" ### ", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "B": ("#### ", "#   #", "#   #", "#### ", "#   #", "#   #", "#### "),
    "C": (" ### ", "#   #", "#    ", "#    ", "#    ", "#   #", " ### "),
    "D": ("#### ", "#   #", "#   #", "#   #", "#   #", "#   #", "#### "),
    "E": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#####"),
    "F": ("#####", "#    ", "#    ", "#### ", "#    ", "#    ", "#    "),
    "G": (" ### ", "#   #", "#    ", "# ###", "#   #", "#   #", " ####"),
    "H": ("#   #", "#   #", "#   #", "#####", "#   #", "#   #", "#   #"),
    "I": (" ### ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "J": ("  ###", "   # ", "   # ", "   # ", "   # ", "#  # ", " ##  "),
    "K": ("#   #", "#  # ", "# #  ", "##   ", "# #  ", "#  # ", "#   #"),
    "L": ("#    ", "#    ", "#    ", "#    ", "#    ", "#    ", "#####"),
    "M": ("#   #", "## ##", "# # #", "# # #", "#   #", "#   #", "#   #"),
    "N": ("#   #", "##  #", "# # #", "#  ##", "#   #", "#   #", "#   #"),
    "O": (" ### ", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "P": ("#### ", "#   #", "#   #", "#### ", "#    ", "#    ", "#    "),
    "Q": (" ### ", "#   #", "#   #", "#   #", "# # #", "#  # ", " ## #"),
    "R": ("#### ", "#   #", "#   #", "#### ", "# #  ", "#  # ", "#   #"),
    "S": (" ####", "#    ", "#    ", " ### ", "    #", "    #", "#### "),
    "T": ("#####", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  "),
    "U": ("#   #", "#   #", "#   #", "#   #", "#   #", "#   #", " ### "),
    "V": ("#   #", "#   #", "#   #", "#   #", "#   #", " # # ", "  #  "),
    "W": ("#   #", "#   #", "#   #", "# # #", "# # #", "# # #", " # # "),
    "X": ("#   #", "#   #", " # # ", "  #  ", " # # ", "#   #", "#   #"),
    "Y": ("#   #", "#   #", " # # ", "  #  ", "  #  ", "  #  ", "  #  "),
    "Z": ("#####", "    #", "   # ", "  #  ", " #   ", "#    ", "#####"),
    "0": (" ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### "),
    "1": ("  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### "),
    "2": (" ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####"),
    "3": ("#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### "),
    "4": ("   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # "),
    "5": ("#####", "#    ", "#### ", "    #", "    #", "#   #", " ### "),
    "6": ("  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### "),
    "7": ("#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   "),
    "8": (" ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### "),
    "9": (" ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  "),
}

Color = tuple[int, int, int]


def initials(name: str, *, most: int = 3) -> str:
    """"The Salt Road" -> "TSR": the first letter of each word that starts with a letter or digit
    this font draws (other words are skipped), at most `most` of them."""
    letters = [word[0].upper() for word in name.replace("-", " ").split() if word[:1].upper() in GLYPHS]
    return "".join(letters[:most])


def palette(key: str) -> tuple[Color, Color]:
    """Two colours (top, bottom) for a title, from its id: a hue of its own, dark to darker."""
    hue = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4]) / 2**32
    top = colorsys.hls_to_rgb(hue, 0.42, 0.55)
    bottom = colorsys.hls_to_rgb((hue + 0.08) % 1, 0.16, 0.6)
    return _rgb(top), _rgb(bottom)


def cover_png(*, key: str, name: str, year: int | None) -> bytes:
    """The cover of one title as PNG bytes (`key`: its id, for the colours; `name`: for the
    initials; `year` written under them)."""
    top, bottom = palette(key)
    rows = [bytearray(_mix(top, bottom, y / (HEIGHT - 1)) * WIDTH) for y in range(HEIGHT)]
    band_top, band_bottom = 150, 262
    for y in range(band_top, band_bottom):
        rows[y] = bytearray(_mix(bytes(rows[y][:3]), (255, 255, 255), 0.12) * WIDTH)
    _text(rows, initials(name) or "?", scale=14, center_y=(band_top + band_bottom) // 2, color=(255, 255, 255),
          shadow=(20, 20, 20))
    if year:
        _text(rows, str(year), scale=4, center_y=330, color=(235, 235, 235), shadow=None)
    return png(rows, width=WIDTH, height=HEIGHT)


def png(rows: list[bytearray], *, width: int, height: int) -> bytes:
    """Rows of RGB bytes (width * 3 each) as a PNG file."""
    raw = b"".join(b"\x00" + bytes(row) for row in rows)  # filter type 0 (none) on every row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit, RGB, deflate, no interlace
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _text(rows: list[bytearray], text: str, *, scale: int, center_y: int, color: Color, shadow: Color | None) -> None:
    """Draw `text` centred across the image, each cell of a glyph a `scale`-sized square."""
    glyphs = [GLYPHS[char] for char in text if char in GLYPHS]
    gap = scale
    # Kept inside the middle TEXT_MAX_WIDTH: a page that crops the poster to another shape keeps the text.
    while len(glyphs) * 5 * scale + (len(glyphs) - 1) * gap > TEXT_MAX_WIDTH and scale > 2:
        scale -= 1
        gap = scale
    width = len(glyphs) * 5 * scale + max(len(glyphs) - 1, 0) * gap
    left, top = (WIDTH - width) // 2, center_y - 7 * scale // 2
    offset = max(scale // 5, 1)
    for dx, dy, paint in ((offset, offset, shadow), (0, 0, color)):
        if paint is None:
            continue
        for index, glyph in enumerate(glyphs):
            x0 = left + index * (5 * scale + gap) + dx
            for gy, line in enumerate(glyph):
                for gx, cell in enumerate(line):
                    if cell == "#":
                        _square(rows, x0 + gx * scale, top + dy + gy * scale, scale, paint)


def _square(rows: list[bytearray], x: int, y: int, size: int, color: Color) -> None:
    x_end = min(x + size, WIDTH)
    if x_end <= x:
        return
    run = bytes(color) * (x_end - x)
    for row in rows[max(y, 0):min(y + size, HEIGHT)]:
        row[x * 3:x_end * 3] = run


def _mix(a, b, t: float) -> bytes:
    return bytes(round(a[i] + (b[i] - a[i]) * t) for i in range(3))


def _rgb(color: tuple[float, float, float]) -> Color:
    return tuple(round(channel * 255) for channel in color)  # type: ignore[return-value]
