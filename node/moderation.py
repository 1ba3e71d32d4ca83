"""The operator's moderation: blocks (with purges) and peer bans, on a store.

``commons admin`` runs these directly on the store when no node runs, and a running node runs
them (in a worker thread) behind ``/api/v1/admin/...``, then applies the new policy and bans
at once. The rule itself (what a block refuses) is :mod:`node.policy`; what is stored is
:mod:`node.store.moderation`. Blocks and bans live in the store, so they survive a restart
and travel with a backup of the home.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from node.clock import now_ms
from node.policy import Policy, parse_author, parse_project
from node.store.moderation import BlockKind
from node.store.sqlite import Store
from protocol.signing import peer_id

__all__ = [
    "BlockOutcome",
    "ModerationError",
    "add_ban",
    "bans_json",
    "block",
    "blocks_json",
    "check_not_configured",
    "check_peer",
    "effective_policy",
    "parse_duration",
    "parse_key",
    "unblock",
]

#: The longest ban ``--for`` accepts (ten years), in seconds.
MAX_BAN_SECONDS = 10 * 365 * 86_400
_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}


class ModerationError(ValueError):
    """A block or ban that cannot be made: a bad key, a block config.toml holds, a bad time;
    ``status`` is the API's answer (422, or 404 for lifting what is not there)."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class BlockOutcome:
    """What a block or unblock did, and the policy in force after it."""

    policy: Policy
    changed: bool  # False: it was already so
    records: int  # purged (block) or released for reconciliation (unblock)

    def to_json(self, kind: BlockKind, key: bytes, *, blocked: bool) -> dict[str, Any]:
        counted = "purged" if blocked else "released"
        return {
            "kind": kind,
            "key": _show(kind, key),
            "blocked": blocked,
            "changed": self.changed,
            counted: self.records,
        }


def parse_key(kind: str, text: str) -> tuple[BlockKind, bytes]:
    """A block's kind and key: a project id (64 hex digits) or an author's peer id."""
    if kind not in ("project", "author"):
        raise ModerationError(f"kind must be project or author, not {kind[:40]!r}")
    try:
        if kind == "project":
            return "project", parse_project(text)
        return "author", parse_author(text)
    except ValueError as exc:
        raise ModerationError(str(exc)) from None


def effective_policy(configured: Policy, store: Store) -> Policy:
    """config.toml's policy with the operator's stored blocks added."""
    return configured.with_blocks((kind, key) for kind, key, _ in store.blocks())


def block(
    store: Store, policy: Policy, kind: BlockKind, key: bytes, *, purge: bool
) -> BlockOutcome:
    """Block a project or an author from now on; ``purge`` deletes what is held of it too."""
    try:
        added = store.add_block(kind, key)
    except ValueError as exc:
        raise ModerationError(str(exc)) from None
    purged = store.purge(kind, key) if purge else 0
    return BlockOutcome(policy.with_block(kind, key, True), added, purged)


def check_not_configured(policy: Policy, kind: BlockKind, key: bytes) -> None:
    """Refuse to lift a block config.toml holds: only an edit of the file lifts it."""
    if (kind, key) in policy.configured:
        raise ModerationError(
            f"{_show(kind, key)} is blocked in config.toml ([policy] block_{kind}s): remove it"
            " there and restart the node"
        )


def unblock(store: Store, policy: Policy, kind: BlockKind, key: bytes) -> BlockOutcome:
    """Lift a block made with ``commons admin``; the refused ids the new policy allows are
    forgotten, so reconciliation brings those records back."""
    check_not_configured(policy, kind, key)
    removed = store.remove_block(kind, key)
    new = policy.with_block(kind, key, False)
    released = store.release_refused(new.still_refused) if removed else 0
    return BlockOutcome(new, removed, released)


def blocks_json(store: Store, policy: Policy) -> list[dict[str, Any]]:
    """Every block in force: config.toml's, then the stored ones, oldest first."""
    out: list[dict[str, Any]] = [
        {"kind": kind, "key": _show(kind, key), "source": "config", "since": None}
        for kind, key in sorted(policy.configured)
    ]
    for kind, key, at in store.blocks():
        if (kind, key) not in policy.configured:
            out.append({"kind": kind, "key": _show(kind, key), "source": "admin", "since": at})
    return out


def parse_duration(text: str | None) -> float | None:
    """``--for``: a number of seconds, or one with a unit (``90s``, ``30m``, ``12h``, ``7d``,
    ``2w``); None (no text) is for ever."""
    if text is None:
        return None
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit is not None else text
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise ModerationError(
            f"{text[:40]!r} is not a duration (e.g. 3600, 30m, 12h, 7d)"
        ) from None
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_BAN_SECONDS:
        raise ModerationError(f"a ban lasts more than 0 s and at most {MAX_BAN_SECONDS} s")
    return seconds


def check_peer(text: str) -> str:
    """A peer id to ban, checked (the transport keys bans by it)."""
    text = text.strip()
    try:
        parse_author(text)
    except ValueError as exc:
        raise ModerationError(str(exc)) from None
    return text


def add_ban(store: Store, peer: str, seconds: float | None) -> int | None:
    """Ban ``peer`` for ``seconds`` (None: for ever) in the store; returns until when (ms)."""
    now = now_ms()
    until = None if seconds is None else now + int(seconds * 1000)
    try:
        store.add_ban(peer, until, now_ms=now)
    except ValueError as exc:
        raise ModerationError(str(exc)) from None
    return until


def bans_json(store: Store) -> list[dict[str, Any]]:
    return [{"peer": peer, "until": until} for peer, until in store.bans()]


def _show(kind: str, key: bytes) -> str:
    return key.hex() if kind == "project" else peer_id(key)
