"""Helpers for embedders' tests: deterministic keys and record factories.

Everything here is deterministic: keys come from a name (``key("alice")`` is the same key in
every run, in every language that hashes the same way: seed = SHA-256 of ``commons-test-key:``
and the name), and timestamps advance from a fixed epoch unless given. Never use these keys
for anything real: their seeds are public.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from protocol.attest import ClaimBody, ClaimConfirmationBody
from protocol.identity_records import DeviceLinkBody, DeviceRevokeBody, join_body
from protocol.record import (
    Artifact,
    ContributionBody,
    EndorsementBody,
    ProfileBody,
    ProjectBody,
    ProjectFields,
    ProjectUpdateBody,
    Record,
    RetractionBody,
    sign_record,
)
from protocol.signing import SigningKey
from protocol.sshsig import claim_message, key_fingerprint, sign_proof

__all__ = ["EPOCH_MS", "RecordFactory", "key", "seed"]

#: 2025-01-01T00:00:00Z, the default first timestamp of a factory.
EPOCH_MS = 1_735_689_600_000


def seed(name: str) -> bytes:
    """The 32-byte test seed for ``name``: SHA-256(b"commons-test-key:" + name)."""
    return hashlib.sha256(b"commons-test-key:" + name.encode("utf-8")).digest()


def key(name: str) -> SigningKey:
    """A deterministic signing key named ``name``."""
    return SigningKey(seed(name))


@dataclass
class RecordFactory:
    """Builds signed records with increasing timestamps (1 ms apart by default).

    >>> f = RecordFactory()
    >>> p = f.project("alice", name="Wikispeed")
    >>> c = f.contribution("bob", p, title="Chassis CAD", minutes=120)
    >>> e = f.endorsement("alice", c, weight=3)
    """

    now_ms: int = EPOCH_MS
    step_ms: int = 1
    _keys: dict[str, SigningKey] = field(default_factory=dict)

    def key(self, who: str | SigningKey) -> SigningKey:
        if isinstance(who, SigningKey):
            return who
        if who not in self._keys:
            self._keys[who] = key(who)
        return self._keys[who]

    def pub(self, who: str | SigningKey) -> bytes:
        return self.key(who).public_key

    def _ts(self, ts: int | None) -> int:
        if ts is not None:
            return ts
        self.now_ms += self.step_ms
        return self.now_ms

    def project(
        self,
        who: str | SigningKey,
        *,
        name: str = "Project",
        maintainers: tuple[str | SigningKey, ...] = (),
        ts: int | None = None,
        **fields: object,
    ) -> Record:
        body = ProjectBody(
            name=name,
            maintainers=tuple(self.pub(m) for m in maintainers) or None,
            **fields,  # type: ignore[arg-type]
        )
        return sign_record(self.key(who), body=body, ts=self._ts(ts))

    def update(
        self,
        who: str | SigningKey,
        project: Record | bytes,
        *,
        add: tuple[str | SigningKey, ...] = (),
        remove: tuple[str | SigningKey, ...] = (),
        ts: int | None = None,
        **set_fields: object,
    ) -> Record:
        body = ProjectUpdateBody(
            set=ProjectFields(**set_fields) if set_fields else None,  # type: ignore[arg-type]
            add_maintainers=tuple(self.pub(m) for m in add) or None,
            remove_maintainers=tuple(self.pub(m) for m in remove) or None,
        )
        return sign_record(self.key(who), body=body, ts=self._ts(ts), project=_pid(project))

    def contribution(
        self,
        who: str | SigningKey,
        project: Record | bytes,
        *,
        title: str = "A contribution",
        type: str = "code",
        minutes: int | None = None,
        coauthors: tuple[str | SigningKey, ...] = (),
        artifacts: tuple[str, ...] = (),
        description: str | None = None,
        ts: int | None = None,
    ) -> Record:
        body = ContributionBody(
            type=type,
            title=title,
            description=description,
            effort_minutes=minutes,
            artifacts=tuple(Artifact(uri=u) for u in artifacts) or None,
            coauthors=tuple(self.pub(c) for c in coauthors) or None,
        )
        return sign_record(self.key(who), body=body, ts=self._ts(ts), project=_pid(project))

    def endorsement(
        self,
        who: str | SigningKey,
        target: Record,
        *,
        weight: int | None = None,
        comment: str | None = None,
        ts: int | None = None,
    ) -> Record:
        body = EndorsementBody(target=target.id, weight=weight, comment=comment)
        return sign_record(self.key(who), body=body, ts=self._ts(ts), project=target.project)

    def retraction(
        self,
        who: str | SigningKey,
        target: Record,
        *,
        reason: str | None = None,
        ts: int | None = None,
    ) -> Record:
        body = RetractionBody(target=target.id, reason=reason)
        return sign_record(self.key(who), body=body, ts=self._ts(ts), project=target.project)

    def profile(
        self, who: str | SigningKey, *, name: str, about: str | None = None, ts: int | None = None
    ) -> Record:
        body = ProfileBody(name=name, about=about)
        return sign_record(self.key(who), body=body, ts=self._ts(ts))

    def attested(
        self,
        who: str | SigningKey,
        project: Record | bytes,
        handles: tuple[str, ...],
        *,
        title: str = "A commit",
        minutes: int | None = None,
        ts: int | None = None,
        signed_by: str | SigningKey | None = None,
    ) -> Record:
        """A contribution ``who`` (a maintainer) attests on behalf of ``handles``; with
        ``signed_by``, of work signed by that Ed25519 SSH key (its fingerprint as ``ssh_key``)."""
        ssh_key = None if signed_by is None else key_fingerprint(self.pub(signed_by))
        body = ContributionBody(
            type="code", title=title, effort_minutes=minutes, on_behalf=handles, ssh_key=ssh_key
        )
        return sign_record(self.key(who), body=body, ts=self._ts(ts), project=_pid(project))

    def claim(
        self,
        who: str | SigningKey,
        project: Record | bytes,
        handle: str,
        ts: int | None = None,
        *,
        ssh: str | SigningKey | None = None,
    ) -> Record:
        """``who``'s claim of ``handle`` in ``project``; with ``ssh``, proven by a signature of
        that Ed25519 SSH key (protocol.sshsig)."""
        proof = None
        if ssh is not None:
            message = claim_message(self.pub(who), _pid(project), handle)
            proof = sign_proof(self.key(ssh), message)
        body = ClaimBody(handle=handle, proof=proof)
        return sign_record(self.key(who), body=body, ts=self._ts(ts), project=_pid(project))

    def confirm(self, who: str | SigningKey, claim: Record, ts: int | None = None) -> Record:
        """``who``'s confirmation of ``claim``, in the claim's project."""
        body = ClaimConfirmationBody(claim=claim.id)
        return sign_record(self.key(who), body=body, ts=self._ts(ts), project=claim.project)

    def link(
        self, who: str | SigningKey, person: str | bytes, ticket: str, *, ts: int | None = None
    ) -> Record:
        """A ``device-link`` by ``who`` for ``person``, whose ticket key is the test key
        named ``ticket`` (so that :meth:`join` can sign with it)."""
        body = DeviceLinkBody(person=self._person(person), ticket=self.pub(ticket))
        return sign_record(self.key(who), body=body, ts=self._ts(ts))

    def join(
        self, who: str | SigningKey, person: str | bytes, ticket: str, *, ts: int | None = None
    ) -> Record:
        """``who``'s ``device-join`` of ``person`` with the ticket named ``ticket``."""
        body = join_body(self._person(person), self.pub(who), self.key(ticket))
        return sign_record(self.key(who), body=body, ts=self._ts(ts))

    def revoke(
        self,
        who: str | SigningKey,
        person: str | bytes,
        device: str | SigningKey,
        *,
        cut: int | None = None,
        keep: tuple[str, ...] | None = None,
        ts: int | None = None,
    ) -> Record:
        """A ``device-revoke`` of ``device`` by ``who``; the cut is the record's ts unless
        given."""
        when = self._ts(ts)
        body = DeviceRevokeBody(
            person=self._person(person),
            device=self.pub(device),
            cut=when if cut is None else cut,
            keep=None if not keep else tuple(self.pub(k) for k in keep),
        )
        return sign_record(self.key(who), body=body, ts=when)

    def _person(self, person: str | bytes) -> bytes:
        return person if isinstance(person, bytes) else self.pub(person)

    def many_contributions(
        self, who: str | SigningKey, project: Record | bytes, count: int
    ) -> Iterator[Record]:
        """``count`` distinct contributions, for tests and benchmarks that need volume."""
        for i in range(count):
            yield self.contribution(who, project, title=f"Contribution {i}", minutes=i % 600)


def _pid(project: Record | bytes) -> bytes:
    return project.id if isinstance(project, Record) else project
