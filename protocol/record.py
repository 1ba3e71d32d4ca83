"""The record kinds of docs/RECORD-FORMAT.md, as frozen, keyword-only dataclasses.

Every class checks its rules when it is built, so an instance that breaks section 1 or 4 of the
format cannot exist: a ``Record`` is always structurally well-formed, and its canonical bytes
(``raw``) and id are computed once, at construction. Whether its *signature* verifies is a
separate, more expensive question: :func:`protocol.validation.parse_record` answers it for bytes
from outside, :func:`sign_record` produces records that verify by construction, and
:func:`decode_trusted` skips it for bytes this node already validated (its own store).

Violations raise :class:`protocol.errors.InvalidRecord` whose ``code`` names the rule; the full
list of codes is in :mod:`protocol.validation`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import InitVar, dataclass, field
from typing import ClassVar, Final, TypeAlias

from protocol import codec
from protocol import fields as check
from protocol.attest import ClaimBody, ClaimConfirmationBody, check_on_behalf
from protocol.errors import InvalidRecord, RemoteProtocolError
from protocol.identity_records import (
    IDENTITY_KINDS,
    DeviceJoinBody,
    DeviceLinkBody,
    DeviceRevokeBody,
    UnknownBody,
    is_kind_name,
)
from protocol.signing import SIGNATURE_SIZE, SigningKey, peer_id

__all__ = [
    "CONTRIBUTION_TYPES",
    "ID_SIZE",
    "KINDS",
    "MAX_RECORD_SIZE",
    "SIGNING_DOMAIN",
    "Artifact",
    "Body",
    "ContributionBody",
    "EndorsementBody",
    "ProfileBody",
    "ProjectBody",
    "ProjectFields",
    "ProjectUpdateBody",
    "Record",
    "RetractionBody",
    "decode_trusted",
    "id_hex",
    "parse_id_prefix",
    "record_id",
    "resolve_prefix",
    "sign_record",
]

VERSION: Final = 1
ID_SIZE: Final = check.ID_SIZE
MAX_RECORD_SIZE: Final = codec.MAX_SIZE
MAX_TIMESTAMP: Final = 2**63 - 1
#: Prepended, with one zero byte, to the unsigned record's encoding before signing.
SIGNING_DOMAIN: Final = b"commons-record-v1\x00"
_SIG_HEADER: Final = b"\xa3sig\xc4\x40"
_TS_KEY: Final = b"\xa2ts"
_V_ENTRY: Final = b"\xa1v\x01"
#: The shortest id prefix tools accept, in hex characters.
MIN_PREFIX_LENGTH: Final = 8

CONTRIBUTION_TYPES: Final = frozenset(
    {
        "code",
        "design",
        "docs",
        "hardware",
        "fabrication",
        "testing",
        "review",
        "translation",
        "research",
        "community",
        "other",
    }
)

# Field limits of section 4, named once so the rules and their documentation agree.
MAX_NAME: Final = 100
MAX_DESCRIPTION: Final = 4000
MAX_LICENSE: Final = 64
MAX_LINKS: Final = 16
MAX_LINK: Final = 2000
MAX_TAGS: Final = 16
MAX_TAG: Final = 32
MAX_MAINTAINERS: Final = 64
MAX_TITLE: Final = 200
MAX_EFFORT_MINUTES: Final = 1_000_000
MAX_ARTIFACTS: Final = 32
MAX_URI: Final = 2000
MAX_DIGEST: Final = 200
MAX_COAUTHORS: Final = 32
MIN_WEIGHT: Final = 1
MAX_WEIGHT: Final = 10
MAX_COMMENT: Final = 1000
MAX_REASON: Final = 1000
MAX_ABOUT: Final = 2000


def _put(out: dict[str, codec.Value], key: str, value: object) -> None:
    """Add an optional field to an encodable map; ``None`` means absent."""
    if value is None:
        return
    if isinstance(value, tuple):
        out[key] = [item.to_value() if isinstance(item, Artifact) else item for item in value]
    elif isinstance(value, ProjectFields):
        out[key] = value.to_value()
    else:
        assert isinstance(value, int | str | bytes)
        out[key] = value


# --------------------------------------------------------------------------------------------
# Bodies


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectBody:
    """The genesis of a project."""

    KIND: ClassVar[str] = "project"
    name: str
    description: str | None = None
    license: str | None = None
    links: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    maintainers: tuple[bytes, ...] | None = None

    def __post_init__(self) -> None:
        check.text("name", self.name, 1, MAX_NAME)
        check.opt_text("description", self.description, 0, MAX_DESCRIPTION, multiline=True)
        check.opt_text("license", self.license, 1, MAX_LICENSE)
        check.opt_text_list("links", self.links, MAX_LINKS, 1, MAX_LINK)
        check.opt_text_list("tags", self.tags, MAX_TAGS, 1, MAX_TAG)
        check.opt_key_list("maintainers", self.maintainers, MAX_MAINTAINERS)

    def to_value(self) -> dict[str, codec.Value]:
        out: dict[str, codec.Value] = {"name": self.name}
        for key in ("description", "license", "links", "tags", "maintainers"):
            _put(out, key, getattr(self, key))
        return out

    @classmethod
    def from_value(cls, value: codec.Value) -> ProjectBody:
        fields = check.fields_from("body", value, (*_PROJECT_FIELDS, "maintainers"), ("name",))
        return cls(**fields)  # type: ignore[arg-type]


_PROJECT_FIELDS = ("name", "description", "license", "links", "tags")


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectFields:
    """The ``set`` map of a project update: the fields it replaces, at least one."""

    name: str | None = None
    description: str | None = None
    license: str | None = None
    links: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if all(getattr(self, key) is None for key in _PROJECT_FIELDS):
            raise InvalidRecord("empty-list:set", "set must name at least one field")
        check.opt_text("set.name", self.name, 1, MAX_NAME)
        check.opt_text("set.description", self.description, 0, MAX_DESCRIPTION, multiline=True)
        check.opt_text("set.license", self.license, 1, MAX_LICENSE)
        check.opt_text_list("set.links", self.links, MAX_LINKS, 1, MAX_LINK)
        check.opt_text_list("set.tags", self.tags, MAX_TAGS, 1, MAX_TAG)

    def to_value(self) -> dict[str, codec.Value]:
        out: dict[str, codec.Value] = {}
        for key in _PROJECT_FIELDS:
            _put(out, key, getattr(self, key))
        return out

    def given(self) -> dict[str, object]:
        """The fields this update sets, by name."""
        return {k: getattr(self, k) for k in _PROJECT_FIELDS if getattr(self, k) is not None}


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectUpdateBody:
    """A maintainer's change to a project: fields to replace, maintainers to add and remove."""

    KIND: ClassVar[str] = "project-update"
    set: ProjectFields | None = None
    add_maintainers: tuple[bytes, ...] | None = None
    remove_maintainers: tuple[bytes, ...] | None = None

    def __post_init__(self) -> None:
        if self.set is None and self.add_maintainers is None and self.remove_maintainers is None:
            raise InvalidRecord(
                "empty-update", "a project update needs set, add_maintainers or remove_maintainers"
            )
        if self.set is not None and not isinstance(self.set, ProjectFields):
            raise InvalidRecord("bad-type:set", "set must be a map")
        # The format does not forbid duplicates here; they are harmless to the fold.
        for name in ("add_maintainers", "remove_maintainers"):
            value = getattr(self, name)
            if value is not None:
                for item in check.list_of(name, value, MAX_MAINTAINERS):
                    check.key(name, item)

    def to_value(self) -> dict[str, codec.Value]:
        out: dict[str, codec.Value] = {}
        for key in ("set", "add_maintainers", "remove_maintainers"):
            _put(out, key, getattr(self, key))
        return out

    @classmethod
    def from_value(cls, value: codec.Value) -> ProjectUpdateBody:
        fields = check.fields_from("body", value, ("set", "add_maintainers", "remove_maintainers"))
        raw_set = fields.get("set")
        if raw_set is not None:
            if not isinstance(raw_set, dict):
                raise InvalidRecord("bad-type:set", "set must be a map")
            fields["set"] = ProjectFields(**check.fields_from("set", raw_set, _PROJECT_FIELDS))  # type: ignore[arg-type]
        return cls(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True, slots=True)
class Artifact:
    """Something a contribution produced: a URI and, optionally, a digest of its content."""

    uri: str
    digest: str | None = None

    def __post_init__(self) -> None:
        check.text("artifacts.uri", self.uri, 1, MAX_URI)
        check.opt_text("artifacts.digest", self.digest, 1, MAX_DIGEST)

    def to_value(self) -> dict[str, codec.Value]:
        out: dict[str, codec.Value] = {"uri": self.uri}
        _put(out, "digest", self.digest)
        return out


_CONTRIBUTION_FIELDS: tuple[str, ...] = ("type", "title", "description", "effort_minutes")
_CONTRIBUTION_FIELDS += ("artifacts", "coauthors", "on_behalf", "ssh_key")


@dataclass(frozen=True, kw_only=True, slots=True)
class ContributionBody:
    """Work done for a project: its type and title; optionally effort, artifacts, coauthors."""

    KIND: ClassVar[str] = "contribution"
    type: str
    title: str
    description: str | None = None
    effort_minutes: int | None = None
    artifacts: tuple[Artifact, ...] | None = None
    coauthors: tuple[bytes, ...] | None = None
    #: Handles the work is attested for (protocol.attest); the signer is then no participant.
    on_behalf: tuple[str, ...] | None = None
    #: The SHA-256 fingerprint of the SSH key that signed the work (protocol.sshsig), which
    #: the person behind the first handle of ``on_behalf`` may prove a claim with.
    ssh_key: bytes | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.type, str):
            raise InvalidRecord("bad-type:type", "type must be text")
        if self.type not in CONTRIBUTION_TYPES:
            raise InvalidRecord(
                "bad-value:type",
                f"type {self.type[:40]!r} is not one of {', '.join(sorted(CONTRIBUTION_TYPES))}",
            )
        check.text("title", self.title, 1, MAX_TITLE)
        check.opt_text("description", self.description, 0, MAX_DESCRIPTION, multiline=True)
        check.opt_int("effort_minutes", self.effort_minutes, 0, MAX_EFFORT_MINUTES)
        if self.artifacts is not None:
            for item in check.list_of("artifacts", self.artifacts, MAX_ARTIFACTS):
                if not isinstance(item, Artifact):
                    raise InvalidRecord("bad-type:artifacts", "artifacts must be maps")
        check.opt_key_list("coauthors", self.coauthors, MAX_COAUTHORS)
        if self.on_behalf is not None:
            check_on_behalf(self.on_behalf)
            if self.coauthors is not None:
                raise InvalidRecord(
                    "on-behalf-with-coauthors", "an attested contribution credits handles only"
                )
        if self.ssh_key is not None:
            check.id_field("ssh_key", self.ssh_key)
            if self.on_behalf is None:
                raise InvalidRecord(
                    "ssh-key-without-on-behalf", "ssh_key names the signer of attested work only"
                )

    @property
    def minutes(self) -> int:
        """The effort claimed, in minutes: 0 when ``effort_minutes`` is absent."""
        return self.effort_minutes or 0

    def to_value(self) -> dict[str, codec.Value]:
        out: dict[str, codec.Value] = {"type": self.type, "title": self.title}
        for key in _CONTRIBUTION_FIELDS[2:]:
            _put(out, key, getattr(self, key))
        return out

    @classmethod
    def from_value(cls, value: codec.Value) -> ContributionBody:
        fields = check.fields_from(
            "body",
            value,
            _CONTRIBUTION_FIELDS,
            ("type", "title"),
        )
        artifacts = fields.get("artifacts")
        if isinstance(artifacts, tuple):
            fields["artifacts"] = tuple(
                Artifact(**check.fields_from("artifacts", item, ("uri", "digest"), ("uri",)))  # type: ignore[arg-type]
                for item in artifacts
            )
        return cls(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True, slots=True)
class EndorsementBody:
    """A vouch for a contribution (``target``), weighing 1 to 10 (1 when ``weight`` is absent)."""

    KIND: ClassVar[str] = "endorsement"
    target: bytes
    weight: int | None = None
    comment: str | None = None

    def __post_init__(self) -> None:
        check.id_field("target", self.target)
        check.opt_int("weight", self.weight, MIN_WEIGHT, MAX_WEIGHT)
        check.opt_text("comment", self.comment, 0, MAX_COMMENT, multiline=True)

    @property
    def effective_weight(self) -> int:
        """The weight this endorsement carries: ``weight``, or 1 when absent."""
        return 1 if self.weight is None else self.weight

    def to_value(self) -> dict[str, codec.Value]:
        out: dict[str, codec.Value] = {"target": self.target}
        _put(out, "weight", self.weight)
        _put(out, "comment", self.comment)
        return out

    @classmethod
    def from_value(cls, value: codec.Value) -> EndorsementBody:
        fields = check.fields_from("body", value, ("target", "weight", "comment"), ("target",))
        return cls(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True, slots=True)
class RetractionBody:
    """Its author's withdrawal of one of their contributions, endorsements, claims or claim
    confirmations (``target``)."""

    KIND: ClassVar[str] = "retraction"
    target: bytes
    reason: str | None = None

    def __post_init__(self) -> None:
        check.id_field("target", self.target)
        check.opt_text("reason", self.reason, 0, MAX_REASON, multiline=True)

    def to_value(self) -> dict[str, codec.Value]:
        out: dict[str, codec.Value] = {"target": self.target}
        _put(out, "reason", self.reason)
        return out

    @classmethod
    def from_value(cls, value: codec.Value) -> RetractionBody:
        fields = check.fields_from("body", value, ("target", "reason"), ("target",))
        return cls(**fields)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True, slots=True)
class ProfileBody:
    """A person's display name, about text and links; an author's latest profile counts."""

    KIND: ClassVar[str] = "profile"
    name: str
    about: str | None = None
    links: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check.text("name", self.name, 1, MAX_NAME)
        check.opt_text("about", self.about, 0, MAX_ABOUT, multiline=True)
        check.opt_text_list("links", self.links, MAX_LINKS, 1, MAX_LINK)

    def to_value(self) -> dict[str, codec.Value]:
        out: dict[str, codec.Value] = {"name": self.name}
        _put(out, "about", self.about)
        _put(out, "links", self.links)
        return out

    @classmethod
    def from_value(cls, value: codec.Value) -> ProfileBody:
        fields = check.fields_from("body", value, ("name", "about", "links"), ("name",))
        return cls(**fields)  # type: ignore[arg-type]


KnownBody: TypeAlias = (
    ProjectBody
    | ProjectUpdateBody
    | ContributionBody
    | EndorsementBody
    | RetractionBody
    | ProfileBody
    | ClaimBody
    | ClaimConfirmationBody
    | DeviceLinkBody
    | DeviceJoinBody
    | DeviceRevokeBody
)
Body: TypeAlias = KnownBody | UnknownBody

_BODY_CLASSES: Final[dict[str, type[KnownBody]]] = {
    cls.KIND: cls
    for cls in (
        ProjectBody,
        ProjectUpdateBody,
        ContributionBody,
        EndorsementBody,
        RetractionBody,
        ProfileBody,
        ClaimBody,
        ClaimConfirmationBody,
        DeviceLinkBody,
        DeviceJoinBody,
        DeviceRevokeBody,
    )
}
#: The kinds this library knows; a record of any other well-formed kind name is kept as an
#: :class:`UnknownBody` (docs/RECORD-FORMAT.md section 7).
KINDS: Final = frozenset(_BODY_CLASSES)
#: Known kinds that carry no ``project`` key (an unknown kind may have one or not).
UNSCOPED_KINDS: Final = frozenset({"project", "profile", *IDENTITY_KINDS})
_RECORD_KEYS: Final = frozenset({"v", "kind", "author", "ts", "project", "body", "sig"})


# --------------------------------------------------------------------------------------------
# The record


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    """One signed record. ``raw`` (canonical bytes) and ``id`` are derived at construction."""

    author: bytes
    ts: int
    body: Body
    sig: bytes
    project: bytes | None = None
    raw: bytes = field(init=False, repr=False, compare=False)
    id: bytes = field(init=False, compare=False)
    #: The canonical bytes this record was decoded from, when it was: ``codec.decode``
    #: accepts only canonical input and every field is kept, so encoding again would only
    #: reproduce them. Internal to the decoders of this module; leave it unset.
    _canonical: InitVar[bytes | None] = None

    def __post_init__(self, _canonical: bytes | None) -> None:
        kind = getattr(type(self.body), "KIND", None)
        unknown = isinstance(self.body, UnknownBody)
        if not unknown and (
            kind not in _BODY_CLASSES or not isinstance(self.body, _BODY_CLASSES[kind])
        ):
            raise InvalidRecord("bad-type:body", "body must be one of the record body classes")
        check.key("author", self.author)
        if not isinstance(self.ts, int) or isinstance(self.ts, bool):
            raise InvalidRecord("bad-type:ts", "ts must be an integer")
        if not 0 <= self.ts <= MAX_TIMESTAMP:
            raise InvalidRecord("bad-timestamp", f"ts {self.ts} is outside 0..2**63-1")
        if unknown:
            if self.project is not None:  # optional on a kind this library does not know
                check.id_field("project", self.project)
        elif kind in UNSCOPED_KINDS:
            if self.project is not None:
                raise InvalidRecord(
                    "unexpected-field:project", f"a {kind} record has no project key"
                )
        elif self.project is None:
            raise InvalidRecord("missing-field:project", f"a {kind} record needs a project")
        else:
            check.id_field("project", self.project)
        if not isinstance(self.sig, bytes):
            raise InvalidRecord("bad-type:sig", "sig must be bytes")
        if len(self.sig) != SIGNATURE_SIZE:
            raise InvalidRecord("bad-length:sig", f"sig must be 64 bytes, not {len(self.sig)}")
        # A rule that spans the record and its body, so the body alone cannot check it.
        body = self.body
        if (
            isinstance(body, ContributionBody)
            and body.coauthors is not None
            and self.author in body.coauthors
        ):
            raise InvalidRecord("coauthor-is-author", "the author cannot also be a coauthor")
        if isinstance(body, DeviceRevokeBody) and body.cut > self.ts:
            raise InvalidRecord("cut-after-record", "a revocation's cut cannot be after its ts")
        raw = codec.encode(self.to_value()) if _canonical is None else _canonical
        if len(raw) > MAX_RECORD_SIZE:
            raise InvalidRecord("too-large", f"{len(raw)} bytes, the limit is {MAX_RECORD_SIZE}")
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "id", hashlib.sha256(raw).digest())

    @property
    def kind(self) -> str:
        """The body's kind: one of :data:`KINDS`, or the name of a kind this library does
        not know (an :class:`UnknownBody`)."""
        body = self.body
        return body.name if isinstance(body, UnknownBody) else body.KIND

    @property
    def author_peer_id(self) -> str:
        """The author's peer id (``12D3KooW...``), the text form people and JSON see."""
        return peer_id(self.author)

    @property
    def id_hex(self) -> str:
        """The id as 64 lowercase hex characters, as the CLI and the API show it."""
        return self.id.hex()

    def unsigned_value(self) -> dict[str, codec.Value]:
        """The record as a map without ``sig``: what the author signs, after the domain."""
        out: dict[str, codec.Value] = {
            "v": VERSION,
            "kind": self.kind,
            "author": self.author,
            "ts": self.ts,
            "body": self.body.to_value(),
        }
        if self.project is not None:
            out["project"] = self.project
        return out

    def to_value(self) -> dict[str, codec.Value]:
        """The record as the map its canonical bytes (``raw``) encode."""
        out = self.unsigned_value()
        out["sig"] = self.sig
        return out

    def signing_input(self) -> bytes:
        """The signed bytes, cut out of ``raw``: the same map without its ``sig`` entry.

        In canonical order the entries end ``sig``, ``ts``, ``v``, so the ``sig`` entry sits
        at a known offset from the end, and the map header (a fixmap) loses one entry.
        """
        raw = self.raw
        end = len(raw) - len(_V_ENTRY) - len(_TS_KEY) - len(codec.encode(self.ts))
        start = end - len(_SIG_HEADER) - SIGNATURE_SIZE
        if raw[start : start + len(_SIG_HEADER)] != _SIG_HEADER:  # pragma: no cover
            return signing_input(self.unsigned_value())
        return SIGNING_DOMAIN + bytes((raw[0] - 1,)) + raw[1:start] + raw[end:]

    @classmethod
    def from_value(cls, value: codec.Value, canonical: bytes | None = None) -> Record:
        """Build a record from a decoded map; the signature is not checked here.

        ``canonical``: the bytes ``value`` was decoded from by :func:`protocol.codec.decode`
        (which accepts only canonical input), so they need not be encoded again.
        """
        if not isinstance(value, dict):
            raise InvalidRecord("not-a-map", "a record is a MessagePack map")
        for key in value:
            if key not in _RECORD_KEYS:
                raise InvalidRecord(f"unknown-field:{key}", f"{key!r} is not a record key")
        for key in ("v", "kind", "author", "ts", "body", "sig"):
            if key not in value:
                raise InvalidRecord(f"missing-field:{key}", f"a record needs {key}")
        if value["v"] != VERSION or isinstance(value["v"], bool):
            raise InvalidRecord("bad-version", f"v is {value['v']!r}, this library reads v=1")
        kind = value["kind"]
        if not isinstance(kind, str):
            raise InvalidRecord("bad-type:kind", "kind must be text")
        body_class = _BODY_CLASSES.get(kind)
        body: Body
        if body_class is not None:
            body = body_class.from_value(value["body"])
        elif is_kind_name(kind):
            raw_body = value["body"]
            if not isinstance(raw_body, dict):
                raise InvalidRecord("bad-type:body", "body must be a map")
            body = UnknownBody(name=kind, value=raw_body)
        else:
            raise InvalidRecord("unknown-kind", f"{kind[:40]!r} is not a record kind")
        return cls(
            author=check.key("author", value["author"]),
            ts=value["ts"],  # type: ignore[arg-type]  # checked in __post_init__
            project=value.get("project"),  # type: ignore[arg-type]
            body=body,
            sig=value["sig"],  # type: ignore[arg-type]
            _canonical=canonical,
        )


#: The fields a signature covers: every field of a record but the signature and what derives
#: from it, read from the class so that a field added later is carried over too.
_SIGNED_FIELDS: Final = tuple(
    f.name for f in dataclasses.fields(Record) if f.name not in {"sig", "raw", "id"}
)


def signing_input(unsigned: Mapping[str, codec.Value]) -> bytes:
    """The bytes an author signs: the domain string, then the record without ``sig``."""
    return SIGNING_DOMAIN + codec.encode(unsigned)


def sign_record(key: SigningKey, *, body: Body, ts: int, project: bytes | None = None) -> Record:
    """Build and sign a record by ``key``; raises :class:`InvalidRecord` for a broken rule."""
    draft = Record(author=key.public_key, ts=ts, body=body, project=project, sig=bytes(64))
    sig = key.sign(draft.signing_input())
    # The signature has a fixed size, so the signed record's bytes are the draft's with the
    # 64 zero bytes of ``sig`` replaced: one encoding instead of two (an import signs millions).
    raw = draft.raw
    end = len(raw) - len(_V_ENTRY) - len(_TS_KEY) - len(codec.encode(ts))
    canonical = raw[: end - SIGNATURE_SIZE] + sig + raw[end:]
    if not isinstance(sig, bytes) or len(sig) != SIGNATURE_SIZE:  # pragma: no cover
        raise InvalidRecord("bad-length:sig", "the key made a signature that is not 64 bytes")
    # The draft passed every rule of ``Record.__post_init__``, and none of them looks at the
    # signature beyond its type and size (checked above) nor at the bytes beyond their size
    # (the same as the draft's): validating the signed record again would repeat the draft's
    # checks exactly. So the signed record is the draft's fields with ``sig``, ``raw`` and
    # ``id`` set, which halves the cost of signing (an import signs millions).
    record = object.__new__(Record)
    for name in _SIGNED_FIELDS:
        object.__setattr__(record, name, getattr(draft, name))
    object.__setattr__(record, "sig", sig)
    object.__setattr__(record, "raw", canonical)
    object.__setattr__(record, "id", hashlib.sha256(canonical).digest())
    return record


def decode_trusted(raw: bytes) -> Record:
    """Decode bytes that were validated before (e.g. read back from this node's own store).

    Checks structure and canonical form but not the signature, nor the characters of text
    fields: a record stored before that rule may hold characters it refuses today, and it
    must still read back (every text output escapes them).
    """
    token = check.CHECK_CHARACTERS.set(False)
    try:
        return Record.from_value(codec.decode(raw), bytes(raw))
    finally:
        check.CHECK_CHARACTERS.reset(token)


def record_id(raw: bytes) -> bytes:
    """The id of a record: SHA-256 of its complete canonical bytes."""
    return hashlib.sha256(raw).digest()


# --------------------------------------------------------------------------------------------
# Text forms of ids


def id_hex(record_or_id: bytes) -> str:
    """The text form of an id: 64 lowercase hex characters."""
    return record_or_id.hex()


def parse_id_prefix(text: str) -> str:
    """Normalise a hex id or id prefix typed by a person; at least 8 hex characters."""
    prefix = text.strip().lower()
    if len(prefix) < MIN_PREFIX_LENGTH or len(prefix) > 2 * ID_SIZE:
        raise RemoteProtocolError("bad-id", f"{text[:70]!r}: an id is 8 to 64 hex characters")
    if any(c not in "0123456789abcdef" for c in prefix):
        raise RemoteProtocolError("bad-id", f"{text[:70]!r} is not hexadecimal")
    return prefix


def resolve_prefix(text: str, candidates: Iterable[bytes]) -> bytes:
    """The one id among ``candidates`` that starts with the prefix ``text``.

    Raises ``RemoteProtocolError`` with code ``bad-id``, ``unknown-id`` or ``ambiguous-id``.
    """
    prefix = parse_id_prefix(text)
    matches = sorted({c for c in candidates if c.hex().startswith(prefix)})
    if not matches:
        raise RemoteProtocolError("unknown-id", f"no record id starts with {prefix}")
    if len(matches) > 1:
        shown = ", ".join(m.hex()[:16] for m in matches[:3])
        raise RemoteProtocolError(
            "ambiguous-id", f"{prefix} matches {len(matches)} ids ({shown}...): type more of it"
        )
    return matches[0]
