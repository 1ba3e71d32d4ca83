"""Local policy: which records this node hosts, as a pure rule (no I/O, no clock).

An operator (of a community's seed, say) decides what the node holds: ``host`` (every project,
or an allow list, applied as the node's follow list), and block lists of projects and of
authors. :meth:`Policy.refusal` answers "is this record blocked here?" from the record alone,
and every path a record can take into the node asks it: gossip admission
(:class:`node.service.NodeService`), sync and API ingest (:class:`node.sync.ingest.Ingestor`)
and ``commons import``. A blocked record is refused with the code ``blocked`` ("blocked by
local policy"), which is not an invalid record: the peer that forwarded it is not blamed,
since its own policy may differ.

Limits: ``max_store_mb`` (the store's size) and ``max_project_records`` (records held per
project). :meth:`Policy.over_quota` judges a new record against the store's current figures,
which the caller reads; a node at a limit keeps everything it holds and serves it, and
refuses what is new with the code ``over-quota``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Final, Literal, Protocol

from protocol.errors import ProtocolError
from protocol.record import Record
from protocol.signing import peer_id, public_key_from_peer_id

__all__ = [
    "BLOCKED",
    "OVER_QUOTA",
    "Policy",
    "PolicyError",
    "from_config",
    "hosted",
    "parse_author",
    "parse_project",
    "policy_from_config",
    "project_of",
]

#: The refusal codes of local policy (each refusal is ``"<code>: <message>"``).
BLOCKED: Final = "blocked"
OVER_QUOTA: Final = "over-quota"
_MIB: Final = 1 << 20


class PolicyError(ValueError):
    """A policy entry that is not a project id or an author's peer id."""


def parse_project(text: str) -> bytes:
    """A project id: 64 hex digits (the genesis record's id)."""
    text = text.strip().lower()
    if len(text) != 64:
        raise PolicyError(f"{text[:80]!r} is not a project id (64 hex digits)")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise PolicyError(f"{text[:80]!r} is not a project id (64 hex digits)") from None


def parse_author(text: str) -> bytes:
    """An author's public key, from its peer id (as every command shows authors)."""
    try:
        return public_key_from_peer_id(text)
    except ProtocolError as exc:
        raise PolicyError(exc.message) from None


def project_of(record: Record) -> bytes | None:
    """The project a record concerns: its ``project`` key; a genesis concerns itself."""
    return record.id if record.kind == "project" else record.project


@dataclass(frozen=True)
class Policy:
    """What this node refuses to hold. Frozen: a change makes a new policy, which the node
    swaps in whole, so worker threads judging a batch see one policy or the other."""

    blocked_projects: frozenset[bytes] = frozenset()
    blocked_authors: frozenset[bytes] = frozenset()
    #: The store's size (bytes) beyond which new records are refused; None: no limit.
    max_store_bytes: int | None = None
    #: Records one project may hold (its genesis included); None: no limit.
    max_project_records: int | None = None
    #: Blocks from config.toml: they cannot be lifted by ``commons admin unblock-*``.
    configured: frozenset[tuple[str, bytes]] = field(default=frozenset(), compare=False)

    def blocks(self, project: bytes | None, author: bytes) -> str | None:
        """Why a record of ``project`` (None for a profile) by ``author`` is blocked, or None."""
        if project is not None and project in self.blocked_projects:
            return f"{BLOCKED}: blocked by local policy (project {project.hex()[:16]})"
        if author in self.blocked_authors:
            return f"{BLOCKED}: blocked by local policy (author {peer_id(author)})"
        return None

    def refusal(self, record: Record) -> str | None:
        """Why ``record`` is blocked here, or None."""
        return self.blocks(project_of(record), record.author)

    def still_refused(self, project: bytes | None, author: bytes) -> bool:
        """Whether a record of (project, author) is still blocked (for the refused ids)."""
        return self.blocks(project, author) is not None

    def served(self, project: bytes | None, author: bytes) -> bool:
        """Whether a held record of (project, author) may be served to peers."""
        return self.blocks(project, author) is None

    def filter_served(self) -> Callable[[bytes | None, bytes], bool] | None:
        """:meth:`served`, or None when it is True of every record (nothing is blocked), so
        that a sync server need not look up each record's project and author."""
        return self.served if self.blocked_projects or self.blocked_authors else None

    @property
    def has_quota(self) -> bool:
        return self.max_store_bytes is not None or self.max_project_records is not None

    def over_quota(self, record: Record, *, store_bytes: int, project_records: int) -> str | None:
        """Why a new ``record`` does not fit, given the store's size and the number of
        records its project holds (including those admitted before it in the batch)."""
        if self.max_store_bytes is not None and store_bytes >= self.max_store_bytes:
            limit = self.max_store_bytes // _MIB
            return f"{OVER_QUOTA}: the store reached its size limit ({limit} MiB)"
        project = project_of(record)
        cap = self.max_project_records
        if cap is not None and project is not None and project_records >= cap:
            return f"{OVER_QUOTA}: project {project.hex()[:16]} reached its limit of {cap} records"
        return None

    def with_block(self, kind: Literal["project", "author"], key: bytes, on: bool) -> Policy:
        """This policy with ``key`` added to (``on``) or taken from a block list."""
        if kind == "project":
            projects = self.blocked_projects | {key} if on else self.blocked_projects - {key}
            return replace(self, blocked_projects=projects)
        authors = self.blocked_authors | {key} if on else self.blocked_authors - {key}
        return replace(self, blocked_authors=authors)

    def with_blocks(self, blocks: Iterable[tuple[str, bytes]]) -> Policy:
        """This policy with the operator's stored blocks added."""
        policy = self
        for kind, key in blocks:
            policy = policy.with_block("project" if kind == "project" else "author", key, True)
        return policy


def from_config(
    *,
    block_projects: Iterable[str] = (),
    block_authors: Iterable[str] = (),
    max_store_mb: int = 0,
    max_project_records: int = 0,
) -> Policy:
    """The policy config.toml's ``[policy]`` describes (0: no limit); raises PolicyError
    naming the key of a bad entry."""
    try:
        projects = frozenset(parse_project(p) for p in block_projects)
    except PolicyError as exc:
        raise PolicyError(f"policy.block_projects: {exc}") from None
    try:
        authors = frozenset(parse_author(a) for a in block_authors)
    except PolicyError as exc:
        raise PolicyError(f"policy.block_authors: {exc}") from None
    configured = {("project", p) for p in projects} | {("author", a) for a in authors}
    return Policy(
        blocked_projects=projects,
        blocked_authors=authors,
        max_store_bytes=max_store_mb * _MIB if max_store_mb > 0 else None,
        max_project_records=max_project_records if max_project_records > 0 else None,
        configured=frozenset(configured),
    )


def hosted(host: str | Iterable[str]) -> frozenset[bytes] | None:
    """``policy.host``: None for ``"all"``, else the project ids hosted; raises PolicyError."""
    if isinstance(host, str):
        if host != "all":
            raise PolicyError(f'policy.host is "all" or a list of project ids, not {host[:40]!r}')
        return None
    try:
        return frozenset(parse_project(p) for p in host)
    except PolicyError as exc:
        raise PolicyError(f"policy.host: {exc}") from None


class _PolicyConfig(Protocol):
    """The ``[policy]`` keys of :class:`node.home.Config`."""

    block_projects: list[str]
    block_authors: list[str]
    max_store_mb: int
    max_project_records: int


def policy_from_config(config: _PolicyConfig) -> Policy:
    """:func:`from_config` of a parsed config.toml."""
    return from_config(
        block_projects=config.block_projects,
        block_authors=config.block_authors,
        max_store_mb=config.max_store_mb,
        max_project_records=config.max_project_records,
    )
