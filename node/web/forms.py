"""The dashboard's forms: what each one sends, turned into the fields the API takes.

A form posts ``application/x-www-form-urlencoded`` text; :func:`fields_of` turns it into
the mapping :func:`node.authoring.prepare` reads (the API's JSON fields), so a write from the
browser is judged by the same code, with the same messages, as one from the CLI or the API.
List fields (links, tags, maintainers, artifacts, coauthors) take one item a line. A
value that cannot be read at all (a weight that is not a number) is refused here, beside its
field; every other refusal is the authoring code's, placed beside the field it names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

__all__ = ["FORMS", "MAX_FORM_BODY", "field_of", "fields_of", "parse_form"]

#: The largest form body read, in bytes (a record is at most 64 KiB).
MAX_FORM_BODY = 128 * 1024
MAX_FORM_FIELDS = 64

#: Each form's fields: name to kind (``text``, ``lines``, ``int``, ``number``, ``flag``).
FORMS: dict[str, dict[str, str]] = {
    "project": {
        "name": "text",
        "description": "text",
        "license": "text",
        "links": "lines",
        "tags": "lines",
        "maintainers": "lines",
    },
    "update": {
        "name": "text",
        "description": "text",
        "license": "text",
        "links": "lines",
        "tags": "lines",
        "add_maintainers": "lines",
        "remove_maintainers": "lines",
        "force": "flag",
    },
    "contribution": {
        "type": "text",
        "title": "text",
        "description": "text",
        "minutes": "int",
        "hours": "number",
        "artifacts": "lines",
        "coauthors": "lines",
    },
    "endorsement": {"weight": "int", "comment": "text", "force": "flag"},
    "retraction": {"reason": "text", "force": "flag"},
    "profile": {"name": "text", "about": "text", "links": "lines"},
}


def parse_form(body: bytes) -> dict[str, str]:
    """A urlencoded body as a mapping (the last value of a repeated name); ``ValueError``
    for one that is not UTF-8 or has too many fields."""
    text = body.decode("utf-8")
    pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    return dict(pairs)


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def fields_of(action: str, form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The API fields of a submitted form, and the fields that could not be read (by name:
    why). Empty inputs are left out, as an option not given on the command line."""
    fields: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, kind in FORMS[action].items():
        raw = form.get(name, "")
        value = raw.strip()
        if kind == "flag":
            if value:
                fields[name] = True
            continue
        if not value:
            continue
        if kind == "text":
            fields[name] = value.strip()
        elif kind == "lines":
            fields[name] = _lines(value)
        elif kind == "int":
            if not re.fullmatch(r"[0-9]{1,9}", value):
                errors[name] = f"{name} must be a whole number"
            else:
                fields[name] = int(value)
        elif kind == "number":
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                errors[name] = f"{name} must be a number, like 1.5"
            else:
                fields[name] = int(number) if number.is_integer() else number
    return fields, errors


#: Words in an authoring message that name a form field other than by the field's own name.
_ALIASES = {"effort_minutes": "minutes", "artifact": "artifacts", "coauthor": "coauthors"}


def field_of(message: str, action: str) -> str:
    """The field a refusal is about: the form field named first in ``message``, else
    ``""`` (the message then shows at the top of the form)."""
    candidates = {name: name for name in FORMS[action]} | {
        alias: name for alias, name in _ALIASES.items() if name in FORMS[action]
    }
    best: tuple[int, str] | None = None
    for word, name in candidates.items():
        found = re.search(rf"(?<![a-z_]){re.escape(word)}(?![a-z_])", message)
        if found and (best is None or found.start() < best[0]):
            best = (found.start(), name)
    return best[1] if best else ""
