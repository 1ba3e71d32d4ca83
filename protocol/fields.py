"""The field rules of docs/RECORD-FORMAT.md section 4, shared by every record kind.

Each check raises :class:`protocol.errors.InvalidRecord` with the code of the rule it enforces
(``bad-type:X``, ``field-too-long:X``, ...), where ``X`` is the field's path as error codes show
it (``title``, ``set.name``, ``artifacts.uri``). They live apart from the kinds themselves so
that the original six kinds (:mod:`protocol.record`) and the identity kinds
(:mod:`protocol.identity_records`) apply exactly the same rules.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Final

from protocol import codec
from protocol.errors import InvalidRecord
from protocol.signing import PUBLIC_KEY_SIZE

ID_SIZE: Final = 32

# --------------------------------------------------------------------------------------------
# Characters of text fields (docs/RECORD-FORMAT.md section 4, "Characters"). Every text a record
# carries ends up on someone's terminal, so no field may hold what a terminal acts on instead
# of showing: C0 controls (U+0000-001F), DEL (U+007F) and C1 controls (U+0080-009F), which
# include ESC and the 8-bit CSI that start escape sequences; the line and paragraph separators
# U+2028/2029; and the bidi embeddings, overrides and isolates (U+202A-202E, U+2066-2069),
# which reorder the text displayed after them ("Trojan Source"). A multi-line field
# (descriptions, ``about``, ``comment``, ``reason``) may also hold newline (U+000A) and tab
# (U+0009); no other line break (CR, VT, FF, NEL, U+2028/2029) is allowed anywhere.

_BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_LINE_BREAKS: Final = frozenset("\n\x0b\x0c\r\x85\u2028\u2029")
_REFUSED_IN_LINE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_REFUSED_IN_TEXT: Final = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_CHARACTER_NAMES: Final = {
    "\x00": "NUL",
    "\t": "tab",
    "\n": "newline",
    "\x0b": "vertical tab",
    "\x0c": "form feed",
    "\r": "carriage return",
    "\x1b": "escape",
    "\x7f": "delete",
    "\x85": "next line",
    "\x9b": "control sequence introducer",
}
#: False while :func:`decode_trusted` reads back this node's own store: records stored before
#: the character rule existed may break it, and must still read back (output escapes them).
CHECK_CHARACTERS: ContextVar[bool] = ContextVar("commons_check_characters", default=True)


def characters(name: str, value: str, multiline: bool) -> None:
    """Refuse a character a terminal would act on: ``bidi-control:X``, ``line-break:X``
    (a newline in a single-line field, or any line break but newline) or ``control-char:X``."""
    found = (_REFUSED_IN_TEXT if multiline else _REFUSED_IN_LINE).search(value)
    if found is None or not CHECK_CHARACTERS.get():
        return
    ch = found.group()
    label = _CHARACTER_NAMES.get(ch) or unicodedata.name(ch, "").lower() or "a control character"
    where = f"{name} holds U+{ord(ch):04X} ({label}) at character {found.start() + 1}"
    if ch in _BIDI_CONTROLS:
        raise InvalidRecord(f"bidi-control:{name}", f"{where}: bidi controls are not allowed")
    if ch in _LINE_BREAKS:
        rule = "only newline may end a line" if multiline else "it must be a single line"
        raise InvalidRecord(f"line-break:{name}", f"{where}: {rule}")
    allowed = "newline and tab are the only" if multiline else "no"
    raise InvalidRecord(f"control-char:{name}", f"{where}: {allowed} control characters allowed")


# --------------------------------------------------------------------------------------------
# Field checks. ``name`` is the field's path as it appears in error codes (``title``,
# ``set.name``, ``artifacts.uri``).


def text(name: str, value: object, lo: int, hi: int, *, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(f"bad-type:{name}", f"{name} must be text")
    try:
        n = len(value.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a surrogate-escaped argv
        raise InvalidRecord("bad-utf8", f"{name} is not valid Unicode text") from None
    if n < lo:
        raise InvalidRecord(f"field-too-short:{name}", f"{name} must not be empty")
    if n > hi:
        raise InvalidRecord(f"field-too-long:{name}", f"{name} is {n} bytes, at most {hi}")
    characters(name, value, multiline)
    return value


def opt_text(name: str, value: object, lo: int, hi: int, *, multiline: bool = False) -> None:
    if value is not None:
        text(name, value, lo, hi, multiline=multiline)


def list_of(name: str, value: object, hi: int) -> tuple[object, ...]:
    if not isinstance(value, tuple):
        raise InvalidRecord(f"bad-type:{name}", f"{name} must be a list")
    if not value:
        raise InvalidRecord(f"empty-list:{name}", f"{name} must not be empty when present")
    if len(value) > hi:
        raise InvalidRecord(f"too-many:{name}", f"{name} has {len(value)} items, at most {hi}")
    return value


def opt_text_list(name: str, value: object, hi: int, lo_item: int, hi_item: int) -> None:
    if value is not None:
        for item in list_of(name, value, hi):
            text(name, item, lo_item, hi_item)


def key(name: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidRecord(f"bad-type:{name}", f"{name} must be bytes")
    if len(value) != PUBLIC_KEY_SIZE:
        raise InvalidRecord(f"bad-length:{name}", f"{name} must be 32 bytes, not {len(value)}")
    return value


def opt_key_list(name: str, value: object, hi: int) -> None:
    if value is None:
        return
    keys = [key(name, item) for item in list_of(name, value, hi)]
    if len(set(keys)) != len(keys):
        raise InvalidRecord(f"duplicate:{name}", f"{name} lists the same key twice")


def opt_int(name: str, value: object, lo: int, hi: int) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRecord(f"bad-type:{name}", f"{name} must be an integer")
    if not lo <= value <= hi:
        raise InvalidRecord(f"out-of-range:{name}", f"{name} is {value}, must be {lo}..{hi}")


def id_field(name: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidRecord(f"bad-type:{name}", f"{name} must be bytes")
    if len(value) != ID_SIZE:
        raise InvalidRecord(f"bad-length:{name}", f"{name} must be 32 bytes, not {len(value)}")
    return value


def fields_from(
    name: str, value: codec.Value, allowed: Iterable[str], required: Iterable[str] = ()
) -> dict[str, object]:
    """Turn a decoded map into constructor keywords: lists become tuples, keys are checked."""
    if not isinstance(value, dict):
        raise InvalidRecord(f"bad-type:{name}", f"{name} must be a map")
    allowed_set = _allowed(tuple(allowed))
    if not allowed_set.issuperset(value):
        prefix = "" if name == "body" else f"{name}."
        key = next(k for k in value if k not in allowed_set)
        raise InvalidRecord(f"unknown-field:{prefix}{key}", f"{prefix}{key} is not allowed")
    for key in required:
        if key not in value:
            prefix = "" if name == "body" else f"{name}."
            raise InvalidRecord(f"missing-field:{prefix}{key}", f"{prefix}{key} is required")
    return {key: tuple(item) if isinstance(item, list) else item for key, item in value.items()}


@functools.lru_cache(maxsize=64)
def _allowed(keys: tuple[str, ...]) -> frozenset[str]:
    return frozenset(keys)
