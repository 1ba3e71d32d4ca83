"""The identity kinds (``device-link``, ``device-join``, ``device-revoke``) and unknown kinds.

docs/IDENTITY.md explains the design and docs/RECORD-FORMAT.md sections 4.7-4.9 and 7 give
the byte rules. The bodies here follow the conventions of :mod:`protocol.record`: frozen,
keyword-only dataclasses that check their rules when built, so an instance that breaks them
cannot exist. Two rules need more than the body: ``cut <= ts`` of a revocation (checked by
:class:`protocol.record.Record`) and the join ``proof`` (a signature, checked with the record's
own signature by :func:`protocol.validation.verify_signature`).

A record of a kind this library does not know is kept as an :class:`UnknownBody`: stored,
forwarded and never counted (docs/RECORD-FORMAT.md section 7), so that the next format change
does not split the network.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import ClassVar, Final

from protocol import codec
from protocol import fields as check
from protocol.errors import InvalidRecord
from protocol.signing import SIGNATURE_SIZE, SigningKey

__all__ = [
    "IDENTITY_KINDS",
    "JOIN_PROOF_DOMAIN",
    "MAX_KEEP",
    "DeviceJoinBody",
    "DeviceLinkBody",
    "DeviceRevokeBody",
    "UnknownBody",
    "is_kind_name",
    "join_body",
    "join_proof_input",
    "ticket_key",
]

#: Prepended to ``person || device`` for the join proof the ticket key signs.
JOIN_PROOF_DOMAIN: Final = b"commons-device-join-v1\x00"
#: Prepended to a link code's bytes; SHA-256 of both is the ticket key's seed.
TICKET_DOMAIN: Final = b"commons-link-ticket-v1\x00"
MAX_KEEP: Final = 64
MAX_REVOKE_REASON: Final = 1000
MAX_TIMESTAMP: Final = 2**63 - 1
#: A well-formed kind name: lowercase ASCII letters, digits and ``-``, a letter first, 1..32.
_KIND_NAME: Final = re.compile(r"[a-z][a-z0-9-]{0,31}")


def is_kind_name(kind: str) -> bool:
    """True for a well-formed kind name, known or not (section 7)."""
    return _KIND_NAME.fullmatch(kind) is not None


def join_proof_input(person: bytes, device: bytes) -> bytes:
    """The bytes a link ticket's key signs to let ``device`` join ``person``."""
    return JOIN_PROOF_DOMAIN + person + device


def ticket_key(code: bytes) -> SigningKey:
    """The one-time ticket key of a link code (docs/IDENTITY.md section 2): both devices
    derive it from the code, the old one to publish its public key, the new one to sign."""
    return SigningKey(hashlib.sha256(TICKET_DOMAIN + code).digest())


def join_body(person: bytes, device: bytes, ticket: SigningKey) -> DeviceJoinBody:
    """The body of ``device``'s join of ``person``, with its proof signed by ``ticket``."""
    proof = ticket.sign(join_proof_input(person, device))
    return DeviceJoinBody(person=person, ticket=ticket.public_key, proof=proof)


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceLinkBody:
    """Authorises whoever knows the secret behind ``ticket`` to join ``person`` as a device."""

    KIND: ClassVar[str] = "device-link"
    person: bytes
    ticket: bytes

    def __post_init__(self) -> None:
        check.key("person", self.person)
        check.key("ticket", self.ticket)

    def to_value(self) -> dict[str, codec.Value]:
        return {"person": self.person, "ticket": self.ticket}

    @classmethod
    def from_value(cls, value: codec.Value) -> DeviceLinkBody:
        names = ("person", "ticket")
        return cls(**check.fields_from("body", value, names, names))  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceJoinBody:
    """Its author's consent to act for ``person``, with the ticket key's ``proof``."""

    KIND: ClassVar[str] = "device-join"
    person: bytes
    ticket: bytes
    proof: bytes

    def __post_init__(self) -> None:
        check.key("person", self.person)
        check.key("ticket", self.ticket)
        if not isinstance(self.proof, bytes):
            raise InvalidRecord("bad-type:proof", "proof must be bytes")
        if len(self.proof) != SIGNATURE_SIZE:
            raise InvalidRecord(
                "bad-length:proof", f"proof must be 64 bytes, not {len(self.proof)}"
            )

    def to_value(self) -> dict[str, codec.Value]:
        return {"person": self.person, "ticket": self.ticket, "proof": self.proof}

    @classmethod
    def from_value(cls, value: codec.Value) -> DeviceJoinBody:
        names = ("person", "ticket", "proof")
        return cls(**check.fields_from("body", value, names, names))  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceRevokeBody:
    """``device`` no longer speaks for ``person``: its records dated after ``cut`` count for
    nothing. ``keep`` matters only when the recovery key signs (docs/IDENTITY.md section 3)."""

    KIND: ClassVar[str] = "device-revoke"
    person: bytes
    device: bytes
    cut: int
    keep: tuple[bytes, ...] | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        check.key("person", self.person)
        check.key("device", self.device)
        if not isinstance(self.cut, int) or isinstance(self.cut, bool):
            raise InvalidRecord("bad-type:cut", "cut must be an integer")
        check.opt_int("cut", self.cut, 0, MAX_TIMESTAMP)
        check.opt_key_list("keep", self.keep, MAX_KEEP)
        check.opt_text("reason", self.reason, 0, MAX_REVOKE_REASON, multiline=True)

    def to_value(self) -> dict[str, codec.Value]:
        out: dict[str, codec.Value] = {
            "person": self.person,
            "device": self.device,
            "cut": self.cut,
        }
        if self.keep is not None:
            out["keep"] = list(self.keep)
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_value(cls, value: codec.Value) -> DeviceRevokeBody:
        required = ("person", "device", "cut")
        fields = check.fields_from("body", value, (*required, "keep", "reason"), required)
        return cls(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True, slots=True)
class UnknownBody:
    """The body of a record whose kind this library does not know, kept as decoded.

    Its ``name`` is the record's kind. Nothing in it is checked beyond canonical MessagePack
    (which every record passes) and being a map; no view reads it.
    """

    KIND: ClassVar[str] = ""
    name: str
    value: dict[str, codec.Value]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not is_kind_name(self.name):
            raise InvalidRecord("unknown-kind", f"{str(self.name)[:40]!r} is not a kind name")
        if not isinstance(self.value, dict):
            raise InvalidRecord("bad-type:body", "body must be a map")

    def to_value(self) -> dict[str, codec.Value]:
        return self.value


#: The kinds of the person fold (protocol.identity).
IDENTITY_KINDS: Final = frozenset({DeviceLinkBody.KIND, DeviceJoinBody.KIND, DeviceRevokeBody.KIND})
