"""When to provide and look up projects in the DHT, and which providers to dial: pure, like
:mod:`node.service` (which holds one and feeds it); :mod:`node.net.dht` carries it out.

- **Provide** each followed project's key (:func:`protocol.peers.provider_key`) when it is
  first followed, then every ``provide_interval`` seconds (6 h; DHT servers keep a record
  48 h, so three re-provides may fail before it lapses).
- **Look up** each followed project's providers when it is first followed, then every
  ``lookup_interval`` seconds (10 min): followers who arrive later are found by their own
  lookup, and this one finds those who provided after us.
- **Retry** a provide that reached no DHT server, or a lookup that found nobody to dial
  (at start the node may not be connected to any server yet), after ``retry`` seconds,
  doubling up to the interval.
- **Budget**: ``ops_per_minute`` provides and lookups together (bursts of that many); what is
  due beyond it waits for the next tick, lookups first (they connect us; a provide only
  makes us findable), and is counted once in ``deferred``. At most ``max_projects``
  projects are handled (the service caps subscriptions the same way).
- **Skip** a due lookup when the node already shares the project's gossip mesh with
  ``provider_dials`` peers or more (:meth:`ProviderPlan.skip_lookup`): it would only find
  followers it has, at some 20 DHT messages a lookup; its budget token is given back.
- **Dial** at most ``provider_dials`` providers a lookup, not counting ourselves and peers
  already connected: gossip and reconciliation take it from there. The service dials them
  even when it holds ``target_peers`` connections (else a well-connected node would never
  meet the only other follower of a niche project), up to ``max_peers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from protocol.peers import provider_key

__all__ = ["DhtConfig", "FindProviders", "Provide", "ProviderPlan"]


@dataclass(frozen=True, kw_only=True)
class DhtConfig:
    provide_interval: float = 6 * 3600.0
    lookup_interval: float = 600.0
    ops_per_minute: int = 12
    provider_dials: int = 3
    max_projects: int = 250
    retry: float = 5.0

    def __post_init__(self) -> None:
        if min(self.provide_interval, self.lookup_interval, self.ops_per_minute) <= 0:
            raise ValueError("provide_interval, lookup_interval and ops_per_minute must be > 0")


@dataclass(frozen=True)
class Provide:
    """Announce in the DHT that we hold ``project`` (``key`` is its provider key)."""

    project: bytes
    key: bytes


@dataclass(frozen=True)
class FindProviders:
    """Look up up to ``count`` providers of ``project``, then report ``providers_found``."""

    project: bytes
    key: bytes
    count: int


@dataclass
class _Project:
    key: bytes
    next_provide: float | None = None  # None: at once
    next_lookup: float | None = None
    provide_retry: float = 0.0  # the last retry delay; 0: the last one succeeded
    lookup_retry: float = 0.0


@dataclass
class ProviderPlan:
    config: DhtConfig
    #: Lookups and provides that had to wait for the budget (each counted once), by op.
    deferred: dict[str, int] = field(default_factory=dict)
    #: Re-lookups skipped because enough followers of the project were connected.
    skipped: int = 0
    _projects: dict[bytes, _Project] = field(default_factory=dict)
    _tokens: float = -1.0  # the budget's bucket; negative: not started
    _last: float = 0.0
    _waiting: set[tuple[str, bytes]] = field(default_factory=set)  # deferred, not yet run

    def follow(self, project: bytes) -> None:
        """``project`` is followed: provide it and look it up at the next tick."""
        if project not in self._projects and len(self._projects) < self.config.max_projects:
            self._projects[project] = _Project(provider_key(project))

    def due(self, now: float) -> list[Provide | FindProviders]:
        """The provides and lookups to start now, within the budget."""
        c = self.config
        rate = c.ops_per_minute / 60.0
        if self._tokens < 0:
            self._tokens = float(c.ops_per_minute)
        self._tokens = min(float(c.ops_per_minute), self._tokens + (now - self._last) * rate)
        self._last = now
        effects: list[Provide | FindProviders] = []
        for project, p in sorted(self._projects.items()):
            if (p.next_lookup is None or p.next_lookup <= now) and self._spend("lookup", project):
                p.next_lookup = now + c.lookup_interval
                effects.append(FindProviders(project, p.key, c.provider_dials + 4))
        for project, p in sorted(self._projects.items()):
            if (p.next_provide is None or p.next_provide <= now) and self._spend(
                "provide", project
            ):
                p.next_provide = now + c.provide_interval
                effects.append(Provide(project, p.key))
        return effects

    def _spend(self, op: str, project: bytes) -> bool:
        """Take a token for ``op`` on ``project``, or note that it waits for one."""
        if self._tokens < 1.0:
            if (op, project) not in self._waiting:
                self._waiting.add((op, project))
                self.deferred[op] = self.deferred.get(op, 0) + 1
            return False
        self._tokens -= 1.0
        self._waiting.discard((op, project))
        return True

    def skip_lookup(self, project: bytes, followers_connected: int) -> bool:
        """Whether a due lookup of ``project`` is needless: ``followers_connected`` peers
        (those we share its gossip mesh with) are enough. Its token is given back."""
        p = self._projects.get(project)
        if p is None or followers_connected < self.config.provider_dials:
            return False
        p.lookup_retry = 0.0
        self.skipped += 1
        self._tokens = min(float(self.config.ops_per_minute), self._tokens + 1.0)
        return True

    def provided(self, project: bytes, ok: bool, now: float) -> None:
        """A provide ended; ``ok``: at least one DHT server took the record."""
        p = self._projects.get(project)
        if p is not None:
            p.provide_retry = 0.0 if ok else self._backoff(p.provide_retry)
            if not ok:
                p.next_provide = now + p.provide_retry

    def found(
        self,
        project: bytes,
        providers: Iterable[tuple[str, Sequence[str]]],
        ours: str,
        connected: set[str],
        now: float,
    ) -> list[str]:
        """The addresses to learn (and dial) from a lookup's ``providers``: those of the
        first ``provider_dials`` that are neither us nor connected."""
        addrs: list[str] = []
        taken = 0
        for peer, peer_addrs in providers:
            if taken >= self.config.provider_dials:
                break
            if peer == ours or peer in connected or not peer_addrs:
                continue
            taken += 1
            addrs.extend(peer_addrs)
        p = self._projects.get(project)
        if p is not None:
            p.lookup_retry = 0.0 if addrs else self._backoff(p.lookup_retry)
            if not addrs:
                p.next_lookup = now + p.lookup_retry
        return addrs

    def _backoff(self, last: float) -> float:
        c = self.config
        return min(c.lookup_interval, c.provide_interval, max(c.retry, 2 * last))
