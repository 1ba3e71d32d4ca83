"""Attested contributions and claims of handles (docs/RECORD-FORMAT.md sections 4.10, 4.11, 5.10).

A project's history predates its ledger: the people who did the work have no key yet. A
maintainer records such work *on behalf of* external **handles** (a git author email, a forge
username, an ORCID), in a ``contribution`` whose ``on_behalf`` lists them. Such a contribution
is signed by the maintainer, is marked *attested* by that field, and credits the handles, never
its signer. A person later **claims** a handle with their own key (a ``claim`` record), and a
maintainer of the project **confirms** the claim (a ``claim-confirmation``); from then on the
handle's credit in that project goes to the claiming key. Withdrawing is a ``retraction``: the
maintainer retracts their confirmation, the claimant their claim.

Everything here is pure. The body classes are registered as record kinds by
:mod:`protocol.record`; :func:`fold_claims` is the rule the views apply (``protocol.ledger``
calls it when it folds a project).

The rules, as :func:`fold_claims` applies them to one project's records:

* A **claim** is live when its author has not retracted it.
* A **confirmation counts** when its author has not retracted it, it names a live claim of the
  same project, its author is a maintainer in the project's *current* state (as endorsements
  are judged), and its author is not the claimant (nobody confirms their own claim).
* A claim is **confirmed** when at least one confirmation counts for it.
* A live claim is **proven** when its ``proof`` (an SSH signature, :mod:`protocol.sshsig`,
  verified when the record was accepted) is by a key whose fingerprint a current maintainer
  other than the claimant recorded, as ``ssh_key`` of a live attested contribution, for the
  claimed handle (the contribution's first handle: the author who signed the commit).
* The **holders** of a handle are the persons of its confirmed claims, or, when it has none,
  of its proven claims: a maintainer's confirmation outranks a proof, since the recorded key
  is itself a maintainer's word.
* A handle **resolves** to a person when it has exactly one holder. With two or more, the
  handle is **disputed**: it resolves to nobody and its credit stays with the handle, until
  the maintainers settle it (withdrawing confirmations down to one holder, or confirming one
  of two provers). Several claims of one handle by the *same* person are no dispute.
* Everything is per project: a confirmation in one project says nothing about another, so a
  false claim confirmed by one project's maintainer moves no credit anywhere else.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final, cast

from protocol import codec
from protocol.errors import InvalidRecord
from protocol.sshsig import fingerprint_text, parse_proof

if TYPE_CHECKING:
    from protocol.record import Record

__all__ = [
    "HANDLE_SCHEMES",
    "MAX_HANDLE",
    "MAX_ON_BEHALF",
    "ClaimBody",
    "ClaimConfirmationBody",
    "ClaimState",
    "check_handle",
    "credited",
    "email_handle",
    "fold_claims",
    "handle_from_text",
    "handle_key",
    "names_handle",
]

#: The longest handle, in UTF-8 bytes.
MAX_HANDLE: Final = 200
#: An attested contribution names its author and up to 32 co-authors, as ``coauthors`` does.
MAX_ON_BEHALF: Final = 33
HANDLE_SCHEMES: Final = ("email", "forge", "orcid")
_HANDLE_PREFIXES: Final = tuple(f"{scheme}:" for scheme in HANDLE_SCHEMES)
#: Hashed with the email so that the hash is of no use for anything but Commons handles.
EMAIL_DOMAIN: Final = b"commons-email-v1\x00"
#: Hashed with a handle to make the 32-byte participant that stands for it in the views.
HANDLE_DOMAIN: Final = b"commons-handle-v1\x00"

_EMAIL: Final = re.compile(r"email:[0-9a-f]{64}")
_FORGE: Final = re.compile(r"forge:[a-z0-9]([a-z0-9.-]{0,98}[a-z0-9])?/[A-Za-z0-9._-]{1,100}")
_ORCID: Final = re.compile(r"orcid:(\d{4}-){3}\d{3}[\dX]")


def _orcid_checksum_ok(digits: str) -> bool:
    """ISO 7064 MOD 11-2, the check character of an ORCID iD (its last one)."""
    total = 0
    for ch in digits[:-1]:
        total = (total + int(ch)) * 2
    check = (12 - total % 11) % 11
    return digits[-1] == ("X" if check == 10 else str(check))


def check_handle(name: str, value: object) -> str:
    """Refuse a handle that is not one of the three forms: ``bad-type:X``, ``bad-value:X``.

    ``email:`` and 64 lowercase hex digits (:func:`email_handle`); ``forge:`` a lowercase host,
    ``/`` and a username of letters, digits, ``.``, ``_`` and ``-``; ``orcid:`` an ORCID iD
    whose check character is right.
    """
    if not isinstance(value, str):
        raise InvalidRecord(f"bad-type:{name}", f"{name} must be text")
    if len(value) > MAX_HANDLE:
        raise InvalidRecord(f"field-too-long:{name}", f"{name} is longer than {MAX_HANDLE}")
    if _EMAIL.fullmatch(value) or _FORGE.fullmatch(value):
        return value
    if _ORCID.fullmatch(value) and _orcid_checksum_ok(value[6:].replace("-", "")):
        return value
    raise InvalidRecord(
        f"bad-value:{name}",
        f"{value[:60]!r} is not a handle (email:<sha-256 hex>, forge:<host>/<user>, orcid:<iD>)",
    )


def check_on_behalf(value: object) -> None:
    """The ``on_behalf`` list of a contribution: 1..33 handles, none twice."""
    if not isinstance(value, tuple):
        raise InvalidRecord("bad-type:on_behalf", "on_behalf must be a list")
    if not value:
        raise InvalidRecord("empty-list:on_behalf", "on_behalf must not be empty when present")
    if len(value) > MAX_ON_BEHALF:
        raise InvalidRecord(
            "too-many:on_behalf", f"on_behalf has {len(value)} items, at most {MAX_ON_BEHALF}"
        )
    for item in value:
        check_handle("on_behalf", item)
    if len(set(value)) != len(value):
        raise InvalidRecord("duplicate:on_behalf", "on_behalf names the same handle twice")


def email_handle(email: bytes | str) -> str:
    """The handle of an email address: ``email:`` and hex SHA-256 of the domain string and
    the address with surrounding whitespace removed and ASCII letters lowered.

    Bytes are hashed as given (git stores addresses as bytes, not always UTF-8); text is
    encoded as UTF-8 first. Lowering only ASCII keeps the rule byte-exact in every language.
    """
    raw = email.encode("utf-8", "surrogateescape") if isinstance(email, str) else email
    return "email:" + hashlib.sha256(EMAIL_DOMAIN + raw.strip().lower()).hexdigest()


def handle_from_text(text: str) -> str:
    """A handle as a person types it: ``email:ADDRESS`` is hashed (an address has an ``@``),
    every other form must already be a handle. Raises ``InvalidRecord("bad-value:handle")``."""
    if text.startswith("email:") and "@" in text:
        return email_handle(text[len("email:") :])
    return check_handle("handle", text)


def names_handle(text: str) -> bool:
    """Whether ``text``, given where a peer id or a handle may stand, names a handle: it starts
    with one of :data:`HANDLE_SCHEMES` and a colon (a peer id has no colon). Whether it is a
    valid handle is :func:`check_handle`'s question."""
    return text.startswith(_HANDLE_PREFIXES)


def handle_key(handle: str) -> bytes:
    """The 32 bytes that stand for an unclaimed handle among a view's participants.

    Views count participants by 32-byte keys; a handle gets the SHA-256 of a domain string and
    its text (bytes nobody holds a private key for, so no record is ever signed by them), and
    the views show it as its text.
    """
    return hashlib.sha256(HANDLE_DOMAIN + handle.encode()).digest()


# --------------------------------------------------------------------------------------------
# The two record kinds


def _id32(name: str, value: object) -> bytes:
    if not isinstance(value, bytes):
        raise InvalidRecord(f"bad-type:{name}", f"{name} must be bytes")
    if len(value) != 32:
        raise InvalidRecord(f"bad-length:{name}", f"{name} must be 32 bytes, not {len(value)}")
    return value


def _only(value: codec.Value, key: str) -> codec.Value:
    """The one field of a one-field body map; ``unknown-field``/``missing-field`` otherwise."""
    if not isinstance(value, dict):
        raise InvalidRecord("bad-type:body", "body must be a map")
    for other in value:
        if other != key:
            raise InvalidRecord(f"unknown-field:{other}", f"{other} is not allowed")
    if key not in value:
        raise InvalidRecord(f"missing-field:{key}", f"{key} is required")
    return value[key]


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimBody:
    """A key's claim that it is the person behind ``handle``, in one project; ``proof``, when
    present, is an SSH signature (protocol.sshsig) by a key that signed the handle's work."""

    KIND: ClassVar[str] = "claim"
    handle: str
    proof: bytes | None = None

    def __post_init__(self) -> None:
        check_handle("handle", self.handle)
        if self.proof is not None:
            parse_proof(self.proof)

    @property
    def proof_key(self) -> bytes | None:
        """The fingerprint of the key that made ``proof``, or None without one."""
        return None if self.proof is None else parse_proof(self.proof).fingerprint

    def to_value(self) -> dict[str, codec.Value]:
        out: dict[str, codec.Value] = {"handle": self.handle}
        if self.proof is not None:
            out["proof"] = self.proof
        return out

    @classmethod
    def from_value(cls, value: codec.Value) -> ClaimBody:
        if not isinstance(value, dict):
            raise InvalidRecord("bad-type:body", "body must be a map")
        for other in value:
            if other not in ("handle", "proof"):
                raise InvalidRecord(f"unknown-field:{other}", f"{other} is not allowed")
        if "handle" not in value:
            raise InvalidRecord("missing-field:handle", "handle is required")
        return cls(handle=value["handle"], proof=value.get("proof"))  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimConfirmationBody:
    """A maintainer's confirmation of the claim whose id is ``claim``, in the same project."""

    KIND: ClassVar[str] = "claim-confirmation"
    claim: bytes

    def __post_init__(self) -> None:
        _id32("claim", self.claim)

    def to_value(self) -> dict[str, codec.Value]:
        return {"claim": self.claim}

    @classmethod
    def from_value(cls, value: codec.Value) -> ClaimConfirmationBody:
        return cls(claim=_only(value, "claim"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The fold


#: A claim's status in :meth:`ClaimState.status`, as the claims listing shows it.
CLAIM_STATUSES: Final = ("pending", "confirmed", "proven", "disputed", "overruled", "withdrawn")


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimState:
    """Where each claimed handle's credit goes in one project.

    ``resolved``: handle -> the one person holding it. ``disputed``: handle -> the persons
    (ascending) holding it, two or more. ``confirmed``: the ids of the confirmed claims;
    ``proven``: of the proven ones. ``claims``: every claim of the project, withdrawn ones
    included, by id; ``withdrawn``: the ids of those retracted; ``confirmers``: claim id ->
    the persons whose confirmations of it count; ``claimant``: claim id -> its person.
    """

    resolved: dict[str, bytes]
    disputed: dict[str, tuple[bytes, ...]]
    confirmed: frozenset[bytes]
    proven: frozenset[bytes] = frozenset()
    claims: dict[bytes, Record] = field(default_factory=dict)
    withdrawn: frozenset[bytes] = frozenset()
    confirmers: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    claimant: dict[bytes, bytes] = field(default_factory=dict)

    def status(self, claim_id: bytes) -> str:
        """One of :data:`CLAIM_STATUSES`: ``withdrawn`` (retracted by the claimant),
        ``disputed`` (it holds its handle beside another person), ``confirmed`` or ``proven``
        (it holds its handle), ``overruled`` (proven, but the maintainers confirmed another
        person's claim of the handle), ``pending`` (awaiting a maintainer's confirmation)."""
        if claim_id in self.withdrawn:
            return "withdrawn"
        handle = cast("ClaimBody", self.claims[claim_id].body).handle
        person = self.claimant[claim_id]
        if person in self.disputed.get(handle, ()):
            holds = claim_id in self.confirmed or (
                claim_id in self.proven and not self._handle_confirmed(handle)
            )
            if holds:
                return "disputed"
        if claim_id in self.confirmed:
            return "confirmed"
        if claim_id in self.proven:
            return "proven" if self.resolved.get(handle) == person else "overruled"
        return "pending"

    def _handle_confirmed(self, handle: str) -> bool:
        return any(cast("ClaimBody", self.claims[c].body).handle == handle for c in self.confirmed)


EMPTY_CLAIMS: Final = ClaimState(resolved={}, disputed={}, confirmed=frozenset())


def fold_claims(
    claims: Iterable[Record],
    confirmations: Iterable[Record],
    retracted: frozenset[bytes] | set[bytes],
    maintainers: frozenset[bytes],
    who: Callable[[Record], bytes] | None = None,
    contributions: Iterable[Record] = (),
) -> ClaimState:
    """Apply the module's rules to one project's claims and confirmations (already filtered
    to the project, repeats removed); ``retracted`` holds the ids whose retraction took
    effect, ``maintainers`` the project's current maintainers. ``who`` is the person a record
    counts for (protocol.identity; by default its author key): a claim resolves a handle to
    its claimant's person, and nobody confirms a claim of their own person.
    ``contributions`` are the project's live contributions, read only for the SSH keys that
    attested ones record (``ssh_key``), and only when some live claim carries a proof."""
    person = who or _author
    every = {c.id: c for c in claims}
    live = {cid: c for cid, c in every.items() if cid not in retracted}
    confirmed: set[bytes] = set()
    confirmers: dict[bytes, set[bytes]] = {}
    for confirmation in confirmations:
        confirmer = person(confirmation)
        if confirmation.id in retracted or confirmer not in maintainers:
            continue
        claim = live.get(confirmation.body.claim)  # type: ignore[union-attr]
        if claim is not None and person(claim) != confirmer:
            confirmed.add(claim.id)
            confirmers.setdefault(claim.id, set()).add(confirmer)
    proven = _proven(live, maintainers, person, contributions)
    by_confirmation: dict[str, set[bytes]] = {}
    for claim_id in confirmed:
        claim = live[claim_id]
        by_confirmation.setdefault(claim.body.handle, set()).add(person(claim))  # type: ignore[union-attr]
    by_proof: dict[str, set[bytes]] = {}
    for claim_id in proven:
        claim = live[claim_id]
        by_proof.setdefault(claim.body.handle, set()).add(person(claim))  # type: ignore[union-attr]
    # A maintainer's confirmation outranks a proof: a handle with confirmed claims is held by
    # their claimants alone, one without by the claimants of its proven claims.
    holders = {**by_proof, **by_confirmation}
    resolved = {h: next(iter(keys)) for h, keys in holders.items() if len(keys) == 1}
    disputed = {h: tuple(sorted(keys)) for h, keys in holders.items() if len(keys) > 1}
    return ClaimState(
        resolved=resolved,
        disputed=disputed,
        confirmed=frozenset(confirmed),
        proven=frozenset(proven),
        claims=every,
        withdrawn=frozenset(every.keys() - live.keys()),
        confirmers={c: tuple(sorted(keys)) for c, keys in confirmers.items()},
        claimant={cid: person(c) for cid, c in every.items()},
    )


def _proven(
    live: dict[bytes, Record],
    maintainers: frozenset[bytes],
    person: Callable[[Record], bytes],
    contributions: Iterable[Record],
) -> set[bytes]:
    """The live claims whose proof's key is one that a maintainer other than the claimant
    recorded, as ``ssh_key`` of a live attested contribution, for the claimed handle (the
    first of its ``on_behalf``: the commit's author, who signed it). The proofs themselves were
    verified when the records were accepted (protocol.validation)."""
    with_proof = {
        cid: (claim.body.handle, key)  # type: ignore[union-attr]
        for cid, claim in live.items()
        if (key := claim.body.proof_key) is not None  # type: ignore[union-attr]
    }
    if not with_proof:
        return set()
    wanted = set(with_proof.values())
    recorders: dict[tuple[str, bytes], set[bytes]] = {}
    for record in contributions:
        ssh_key = getattr(record.body, "ssh_key", None)
        if ssh_key is None:
            continue
        pair = (record.body.on_behalf[0], ssh_key)  # type: ignore[union-attr,index]
        if pair in wanted:
            recorder = person(record)
            if recorder in maintainers:
                recorders.setdefault(pair, set()).add(recorder)
    return {
        cid for cid, pair in with_proof.items() if recorders.get(pair, set()) - {person(live[cid])}
    }


#: The order of the claims listing: what awaits a maintainer first.
_STATUS_ORDER: Final = {s: i for i, s in enumerate(("pending", "disputed", "overruled"))}


def claim_listing(
    state: ClaimState, live: Iterable[Record], peer: Callable[[bytes], str]
) -> list[dict[str, object]]:
    """Every claim of a project as the claims listing shows it (``commons claims``): its id,
    handle, claimant key and person (peer ids by ``peer``), ``ts``, :meth:`ClaimState.status`,
    the fingerprint of its proof's key, the persons whose confirmations count, and how many
    of the ``live`` contributions credit its handle. Pending, disputed and overruled claims
    come first, then the others; newest first within each."""
    handles = {cast(ClaimBody, c.body).handle for c in state.claims.values()}
    counts = dict.fromkeys(handles, 0)
    if handles:
        for record in live:
            for handle in getattr(record.body, "on_behalf", None) or ():
                if handle in counts:
                    counts[handle] += 1
    keyed = []
    for cid, claim in state.claims.items():
        body = cast(ClaimBody, claim.body)
        proof = body.proof_key
        status = state.status(cid)
        row: dict[str, object] = {
            "id": cid.hex(),
            "handle": body.handle,
            "claimant": peer(claim.author),
            "person": peer(state.claimant[cid]),
            "ts": claim.ts,
            "status": status,
            "proof": None if proof is None else fingerprint_text(proof),
            "confirmed_by": [peer(p) for p in state.confirmers.get(cid, ())],
            "contributions": counts[body.handle],
        }
        keyed.append(((_STATUS_ORDER.get(status, len(_STATUS_ORDER)), -claim.ts, cid), row))
    keyed.sort(key=lambda pair: pair[0])
    return [row for _, row in keyed]


def _author(record: Record) -> bytes:
    return record.author


def credited_people(
    live: dict[bytes, Record], resolved: dict[str, bytes]
) -> dict[bytes, tuple[bytes, ...]]:
    """:func:`credited` of every attested contribution among ``live``, by contribution id."""
    out = {}
    for cid, record in live.items():
        on_behalf = getattr(record.body, "on_behalf", None)
        if on_behalf is not None:
            out[cid] = credited(on_behalf, resolved)
    return out


def handle_names(records: Iterable[Record], resolved: dict[str, bytes]) -> dict[bytes, str]:
    """The text each unresolved handle's stand-in participant (:func:`handle_key`) shows as,
    for the handles the attested contributions among ``records`` name."""
    return {
        handle_key(h): h
        for record in records
        for h in getattr(record.body, "on_behalf", None) or ()
        if h not in resolved
    }


def entry_json(
    on_behalf: tuple[str, ...] | None,
    people: tuple[bytes, ...] | None,
    peer: Callable[[bytes], str],
) -> dict[str, object]:
    """The keys an attested ledger entry adds to its JSON: ``on_behalf`` (the handles) and
    ``credited`` (its participants after claims: a handle, or the claiming key's peer id by
    ``peer``). Empty for a contribution that is not attested."""
    if on_behalf is None or people is None:
        return {}
    names = {handle_key(h): h for h in on_behalf}
    return {"on_behalf": list(on_behalf), "credited": [names.get(p) or peer(p) for p in people]}


def attested_json(
    on_behalf: tuple[str, ...], resolved: dict[str, bytes], peer: Callable[[bytes], str]
) -> dict[str, object]:
    """``entry_json(on_behalf, credited(on_behalf, resolved), peer)``, made from the texts:
    a handle's text and a key's peer id each stand for one participant and never equal each
    other (a handle has a colon), so de-duplicating the texts is de-duplicating the keys,
    and no handle's stand-in need be hashed (for a ledger page read off the store, where
    that hashing was a quarter of an entry's cost)."""
    texts = (peer(resolved[h]) if h in resolved else h for h in on_behalf)
    return {"on_behalf": list(on_behalf), "credited": list(dict.fromkeys(texts))}


def credited(on_behalf: tuple[str, ...], resolved: dict[str, bytes]) -> tuple[bytes, ...]:
    """The participants an attested contribution credits: each handle's resolved key, or the
    handle's own 32 bytes (:func:`handle_key`) when unresolved, in the order listed, with a
    key that two handles resolve to counted once."""
    return tuple(dict.fromkeys(resolved.get(h) or handle_key(h) for h in on_behalf))
