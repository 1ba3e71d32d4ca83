"""What a view call answers from: a fold's answers and the protocol both kinds keep, and the
JSON the views write (``json_body``, ``record_json``); split from :mod:`node.views.cache`,
which holds and refreshes them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from node.views.months import SortedTimes, Times
from node.views.tallied import Tallied, json_body
from protocol.identity_records import IDENTITY_KINDS
from protocol.ledger import ProjectView
from protocol.record import Record
from protocol.signing import peer_id

__all__ = ["Answers", "Fold", "LedgerPage", "ViewError", "json_body", "made", "record_json"]


@dataclass(frozen=True, slots=True)
class LedgerPage:
    """One page of a ledger: its entries, how many match in all, and the cursor of the next
    page (the id of this page's last entry) or None when this page is the last."""

    entries: list[dict[str, Any]]
    total: int
    next_cursor: str | None
    #: ``entries`` as the API sends them (:func:`json_body`) when encoded ahead, else None.
    body: bytes | None = None


class ViewError(Exception):
    """A view cannot be shown: unknown or ambiguous id, bad filter. ``status`` for HTTP."""

    def __init__(self, message: str, status: int = 404) -> None:
        super().__init__(message)
        self.status = status


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def record_json(record: Record) -> dict[str, Any]:
    """``commons record show --json``: the record decoded, bytes as hex, author as peer id."""
    body = _json_value(record.body.to_value())
    for key in ("maintainers", "coauthors"):
        if key in body:
            body[key] = [peer_id(bytes.fromhex(k)) for k in body[key]]
    if record.kind in IDENTITY_KINDS:  # the keys of a device act, as people read keys
        for key in ("person", "device"):
            if key in body:
                body[key] = peer_id(bytes.fromhex(body[key]))
        if "keep" in body:
            body["keep"] = [peer_id(bytes.fromhex(k)) for k in body["keep"]]
    if record.kind == "project-update":
        for key in ("add_maintainers", "remove_maintainers"):
            if key in body:
                body[key] = [peer_id(bytes.fromhex(k)) for k in body[key]]
    return {
        "id": record.id.hex(),
        "kind": record.kind,
        "author": peer_id(record.author),
        "ts": record.ts,
        "project": record.project.hex() if record.project is not None else None,
        "body": body,
    }


class Answers(Protocol):
    """What a view call needs of a project: a fold or the tallies answer alike."""

    def show(self) -> dict[str, Any]: ...

    def list_item(self) -> dict[str, Any]: ...

    def ledger(
        self,
        author: bytes | str | None,
        type: str | None,
        limit: int,
        after: tuple[int, bytes] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Live contributions newest first, filtered (participant, type), at most ``limit``
        of those that come after ``after`` (a ``(ts, id)`` in ledger order); and how many
        match the filters in all. ``author`` is a participant's key, or a handle (text): the
        contributions recorded on its behalf."""
        ...

    def shares(self) -> list[dict[str, Any]]: ...

    def times(self) -> Times:
        """When the live contributions were made (the contributions chart)."""
        ...


class Fold:
    """The answers of a fold: ``protocol.ledger``'s own results and ``to_json`` methods."""

    __slots__ = ("view",)

    def __init__(self, view: ProjectView) -> None:
        self.view = view

    def show(self) -> dict[str, Any]:
        return self.view.summary().to_json()

    def list_item(self) -> dict[str, Any]:
        return self.view.summary().to_list_json()

    def ledger(
        self,
        author: bytes | str | None,
        type: str | None,
        limit: int,
        after: tuple[int, bytes] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        if isinstance(author, str):
            entries = self.view.live_contributions(handle=author, type=type)
        else:
            entries = self.view.live_contributions(author=author, type=type)
        total = len(entries)
        if after is not None:
            entries = [e for e in entries if (e.record.ts, e.id) < after]
        return [e.to_json() for e in entries[:limit]], total

    def shares(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.view.shares()]

    def times(self) -> Times:
        return SortedTimes([e.record.ts for e in self.view.live_contributions()])


def made(page: tuple[Any, ...] | None = None) -> Callable[[Answers], bool]:
    """Whether answers hold what a call asks already made: the summary and the shares, and
    the ledger ``page`` when one is asked (a fold holds everything)."""

    def holds(answers: Answers) -> bool:
        return not isinstance(answers, Tallied) or answers.made(page)

    return holds
