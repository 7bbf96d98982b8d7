"""Values that come from outside (websocket frames, JSON bodies), checked before anything uses them.

JSON is parsed strictly, because Python's `json` is lenient where the rest of the system is not:

- `NaN`, `Infinity` and numbers too large for a double (`1e400` parses as infinity) are refused:
  JSON has no such numbers, a browser cannot parse a frame that carries them, and one stored
  NaN makes every comparison after it false (a room "waiting" for good, a 500 on `int(nan)`).
- Whole numbers must lie within +/- 2**53 - 1, the range a JSON number keeps exactly in every
  client (I-JSON, RFC 7493); `10**400` would otherwise reach `float()` (OverflowError) or SQL
  (out of range for bigint).
- At most `MAX_DEPTH` levels of nesting: `"[" * 20000` would otherwise stop the parser with a
  RecursionError, and a document a few hundred levels deep would stop whatever walks it next.
- Strings (keys too) must not hold NUL or lone surrogates: PostgreSQL text cannot store NUL,
  and a lone surrogate (`"\\ud800"`) cannot be encoded as UTF-8 to be stored or sent.
- A size limit counts UTF-8 bytes, not characters.

Every refusal is an `InputError` whose `field` is the path to the bad value (`rtt_ms`,
`items[3].played_s`) and whose message says what is acceptable. Callers turn it into their own
error: a websocket `error` event, a 400 answer.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32
MAX_SAFE_INTEGER = 2**53 - 1
# Digits of a JSON integer beyond which it is refused without converting it (2**53 has 16).
_MAX_INTEGER_DIGITS = 20


class InputError(Exception):
    """A value from outside that is refused; `field` names it (None: the whole document)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class _NotJsonNumber:
    """What the parser leaves for NaN, Infinity, -Infinity and over-long integers, so that
    the check after parsing can say where it was."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text


class _HugeInteger(_NotJsonNumber):
    __slots__ = ()


def _parse_int(text: str):
    return int(text) if len(text) <= _MAX_INTEGER_DIGITS else _HugeInteger(text)


def utf8_size(text: str) -> int:
    """The size of `text` in UTF-8 bytes (lone surrogates counted as three, as they would be sent)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def is_larger_than(text: str, limit_bytes: int) -> bool:
    """Whether `text` takes more than `limit_bytes` in UTF-8, without encoding it when the
    number of characters already answers (every character takes 1 to 4 bytes)."""
    if len(text) > limit_bytes:
        return True
    if len(text) * 4 <= limit_bytes:
        return False
    return utf8_size(text) > limit_bytes


def json_loads(data: str | bytes, *, max_bytes: int | None = None, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a JSON document strictly (see the module docstring) or raise InputError."""
    if max_bytes is not None:
        size = len(data) if isinstance(data, bytes | bytearray) else utf8_size(data)
        if size > max_bytes:
            raise InputError(f"The message is {size} bytes; at most {max_bytes} are accepted.")
    try:
        value = json.loads(data, parse_constant=_NotJsonNumber, parse_int=_parse_int)
    except RecursionError:
        raise InputError(f"The JSON is nested too deeply: at most {max_depth} levels.") from None
    except UnicodeDecodeError:
        raise InputError("The body is not UTF-8 text.") from None
    except ValueError as exc:  # json.JSONDecodeError among others
        raise InputError(f"That is not valid JSON ({_short_reason(exc)}).") from None
    check_json_value(value, max_depth=max_depth)
    return value


def _short_reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at character {exc.pos}"
    return str(exc)[:100]


def check_json_value(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Walk a parsed document (iteratively) and refuse what the module docstring lists."""
    # A path is (parent path, key) or (): cheap to extend, spelled out only for an error.
    stack: list[tuple[Any, tuple, int]] = [(value, (), 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                top = _outermost(path)
                raise InputError(f"{top or 'The document'} is nested too deeply: at most {max_depth} levels.",
                                 field=top or None)
            if isinstance(item, dict):
                for key, child in item.items():
                    _check_string(key, (path, key))
                    stack.append((child, (path, key), depth + 1))
            else:
                stack.extend((child, (path, index), depth + 1) for index, child in enumerate(item))
        elif isinstance(item, str):
            _check_string(item, path)
        elif isinstance(item, _HugeInteger) or (
            isinstance(item, int) and not isinstance(item, bool) and abs(item) > MAX_SAFE_INTEGER
        ):
            raise InputError(f"{field_name(path) or 'The value'} is out of range: whole numbers go up to "
                             f"{MAX_SAFE_INTEGER}.", field=field_name(path) or None)
        elif isinstance(item, _NotJsonNumber):
            raise InputError(f"{field_name(path) or 'The value'} must be a finite number; "
                             f"{item.text[:20]} is not one JSON allows.", field=field_name(path) or None)
        elif isinstance(item, float) and not math.isfinite(item):
            raise InputError(f"{field_name(path) or 'The value'} is too large a number.",
                             field=field_name(path) or None)


def _check_string(text: str, path: tuple) -> None:
    if "\x00" in text:
        raise InputError(f"{field_name(path) or 'The text'} contains a NUL character.", field=field_name(path) or None)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{field_name(path) or 'The text'} contains a lone surrogate (not Unicode text).",
                             field=field_name(path) or None) from None


def _outermost(path: tuple) -> str:
    """What a depth error names: the path up to the last object key, i.e. the field whose
    value is nested too deeply (`payload[0].listened_at`, not forty more `[0]`)."""
    while path and not isinstance(path[1], str):
        path = path[0]
    return field_name(path)


def field_name(path: tuple) -> str:
    """(((), "items"), 3), "played_s") -> "items[3].played_s"."""
    parts = []
    while path:
        path, key = path
        parts.append(key)
    name = ""
    for part in reversed(parts):
        if isinstance(part, int):
            name += f"[{part}]"
        else:
            # A key may itself be the bad text: keep the name printable and encodable.
            text = "".join(c if c.isprintable() else "?" for c in str(part)[:50])
            name += f".{text}" if name else text
    return name if len(name) <= 120 else name[:119] + "…"


# --- single values -----------------------------------------------------------------------


def number(value: Any, *, field: str, minimum: float | None = None, maximum: float | None = None) -> float:
    """A finite JSON number (int or float, not bool) within [minimum, maximum], as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{field} must be a number.", field=field)
    if isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER:
        raise InputError(_range_message(field, minimum, maximum), field=field)
    value = float(value)
    if not math.isfinite(value):
        raise InputError(f"{field} must be a finite number.", field=field)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise InputError(_range_message(field, minimum, maximum), field=field)
    return value


def whole_number(value: Any, *, field: str, minimum: int = 0, maximum: int = MAX_SAFE_INTEGER) -> int:
    """A JSON whole number (not bool, not 1.0) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{field} must be a whole number.", field=field)
    if not minimum <= value <= maximum:
        raise InputError(_range_message(field, minimum, maximum), field=field)
    return value


def _range_message(field: str, minimum: float | None, maximum: float | None) -> str:
    def show(bound: float) -> str:
        return f"{bound:g}" if isinstance(bound, float) else str(bound)

    if minimum is not None and maximum is not None:
        return f"{field} must be from {show(minimum)} to {show(maximum)}."
    if minimum is not None:
        return f"{field} must be at least {show(minimum)}."
    return f"{field} must be at most {show(maximum)}."
