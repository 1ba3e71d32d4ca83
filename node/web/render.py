"""Templates and the rules that keep peer text inert in a browser.

Every string a record holds was chosen by whoever signed it, so three rules apply to all
of them, in one place rather than at each use:

- Jinja autoescapes every value, so ``<script>`` is text;
- the environment's ``finalize`` passes every string through :func:`node.textout.terminal_safe`
  (control characters and the bidi overrides and isolates become visible escapes, as in the
  CLI), so a title cannot reorder the text around it;
- a link is made only from an ``http``/``https`` URL (:func:`safe_href`); anything else
  (``javascript:``, ``data:``) is shown as text.

Each answer carries a Content-Security-Policy of ``default-src 'self'`` with no inline
script or style allowed, so even a mistake in the rules above could not run script.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from fractions import Fraction
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.responses import HTMLResponse

from node.textout import fmt_number, short_peer, terminal_safe

__all__ = ["SECURITY_HEADERS", "environment", "render", "safe_href"]

#: Sent with every dashboard answer. ``form-action``, ``frame-ancestors`` and ``base-uri``
#: do not fall back to ``default-src``, so they are named too.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: The longest URL made into a link; a longer one is shown as text.
MAX_HREF = 2048


def safe_href(url: object) -> str | None:
    """``url`` when it is an absolute ``http(s)`` URL fit to be a link, else None."""
    if not isinstance(url, str) or len(url) > MAX_HREF:
        return None
    if any(ch.isspace() or ord(ch) < 0x20 or ch in "\"'<>`" for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url


def _finalize(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and not isinstance(value, Markup):
        return terminal_safe(value, multiline=True)
    return value


def _when(ts_ms: object) -> str:
    if not isinstance(ts_ms, int):
        return ""
    try:
        return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return str(ts_ms)


def _iso(ts_ms: object) -> str:
    if not isinstance(ts_ms, int):
        return ""
    try:
        return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return ""


def _percent(value: object) -> str:
    if isinstance(value, int | float | Fraction):
        return f"{float(value) * 100:.1f} %"
    return ""


def _number(value: object) -> str:
    return fmt_number(value) if isinstance(value, int | float | Fraction) else ""


def _hours(minutes: object) -> str:
    """Claimed minutes as hours and minutes (``2 h 05``), the way people count effort."""
    if not isinstance(minutes, int | float) or minutes < 0:
        return ""
    whole = int(minutes)
    return f"{whole // 60} h {whole % 60:02d}" if whole >= 60 else f"{whole} min"


def _json(value: object) -> str:
    """A number as ``--json`` prints it: the chart's data attributes equal the API's."""
    return json.dumps(value)


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("node.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=_when,
        iso=_iso,
        percent=_percent,
        number=_number,
        hours=_hours,
        href=safe_href,
        short=short_peer,
        json=_json,
    )
    return env


def render(template: str, context: dict[str, Any], *, status: int = 200) -> HTMLResponse:
    """The page ``template`` for ``context``, with the security headers."""
    # What base.html reads, for pages rendered before a session is known (a refused Host).
    context = {"path": "", "session": None, "me": None, **context}
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
