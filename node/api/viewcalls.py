"""The API's ``ledger`` and ``shares`` calls, answered the same way wherever they are served.

The node's API (:mod:`node.api.app`) and its front process (:mod:`node.api.front`), which
answers these two calls from a store connection of its own while the node syncs, both build
their answers here (:func:`view_answer`), so that a client gets the same status, headers and
bytes from either. This module imports neither the web framework, the networking nor the
dashboard: the front process starts without them (each is megabytes of memory).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode

import trio

from node.views.cache import ViewCache, ViewError, json_body

__all__ = [
    "JSON_TYPE",
    "MAX_LIMIT",
    "Answer",
    "ApiError",
    "view_answer",
    "viewed",
]

log = logging.getLogger("node.api.app")

#: The API's own bound on a ``limit`` query.
MAX_LIMIT = 100_000
#: The media type of every JSON answer (Starlette's ``JSONResponse``'s).
JSON_TYPE = "application/json"

T = TypeVar("T")


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.close = close  # the request body was left unread


@dataclass(frozen=True, slots=True)
class Answer:
    """A JSON answer: its status, its headers other than the body's type and length, and
    its body."""

    status: int
    headers: dict[str, str]
    body: bytes


def _error(status: int, message: str) -> Answer:
    return Answer(status, {}, json_body({"error": message}))


def _limit(query: dict[str, str]) -> int | None:
    text = query.get("limit")
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, "limit must be a whole number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise ApiError(400, f"limit must be 1..{MAX_LIMIT}")
    return value


async def viewed(views: ViewCache, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    """A view call: on the event loop when the views hold the answer in memory (a big
    project's, while a sync keeps worker threads busy), else in a worker thread."""
    answer = views.at_hand(fn, *args, **kw)
    if answer is not None:
        return answer
    result: T = await trio.to_thread.run_sync(partial(fn, *args, **kw))
    return result


def _next_link(path: str, pairs: list[tuple[str, str]], cursor: str) -> str:
    """The ``Link`` to the next page: the same query with ``cursor`` replaced (last), as
    Starlette's ``URL.include_query_params`` writes it."""
    kept = [(k, v) for k, v in pairs if k != "cursor"]
    return f'<{path}?{urlencode([*kept, ("cursor", cursor)])}>; rel="next"'


async def _ledger(views: ViewCache, pid: str, path: str, pairs: list[tuple[str, str]]) -> Answer:
    query = dict(pairs)  # the last of a repeated parameter counts, as in Starlette
    page = await viewed(
        views,
        views.ledger_page,
        pid,
        author=query.get("author") or None,
        type=query.get("type") or None,
        limit=_limit(query),
        cursor=query.get("cursor") or None,
    )
    # The body stays the list the contract promises; the paging is in headers.
    headers = {"X-Total-Count": str(page.total)}
    if page.next_cursor is not None:
        headers["X-Next-Cursor"] = page.next_cursor
        headers["Link"] = _next_link(path, pairs, page.next_cursor)
    body = page.body if page.body is not None else json_body(page.entries)
    return Answer(200, headers, body)


async def _shares(views: ViewCache, pid: str) -> Answer:
    # Encoded once per record set (20,000 lines are about 5 MB): sent as they are.
    return Answer(200, {}, await viewed(views, views.shares_body, pid))


async def view_answer(views: ViewCache, view: str, pid: str, path: str, query: bytes) -> Answer:
    """The answer to ``view`` (``ledger`` or ``shares``) of project ``pid``, asked at
    ``path`` (percent-decoded) with the raw query string ``query``; errors included, as the
    API maps them: a caller's mistake is a 4xx, anything else a logged 500."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    try:
        if view == "ledger":
            return await _ledger(views, pid, path, pairs)
        return await _shares(views, pid)
    except ApiError as exc:
        return _error(exc.status, str(exc))
    except ViewError as exc:
        return _error(exc.status, str(exc))
    except Exception:
        log.exception("API handler %s failed", path)
        return _error(500, "internal error (see the node's log)")
