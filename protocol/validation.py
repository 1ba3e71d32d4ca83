"""Is this byte string a well-formed record? The rules of docs/RECORD-FORMAT.md, §1-6.

:func:`parse_record` is the one door through which bytes from outside (gossip, a sync peer, a
bundle, an API call) become a :class:`~protocol.record.Record`. It runs the cheap checks first
(size, canonical form, structure, the clock) and the signature last, and raises
:class:`~protocol.errors.InvalidRecord` with one of the codes below. The clock is a parameter:
this module never reads it.

Error codes (``X`` is a field path such as ``title``, ``set.name`` or ``artifacts.uri``):

===========================  ===============================================================
code                         meaning
===========================  ===============================================================
``too-large``                the encoded record exceeds 65,536 bytes
``truncated``                the bytes end inside a value (or are empty)
``trailing-bytes``           bytes follow the record's map
``too-deep``                 maps and arrays nested deeper than 8
``forbidden-type``           nil, bool, float, ext or a reserved byte appears
``not-canonical``            a non-shortest encoding, unsorted/duplicate keys, a non-str key
``bad-utf8``                 a str is not valid UTF-8
``not-a-map``                the record is not a map
``bad-version``              ``v`` is not 1
``unknown-kind``             ``kind`` is not a kind name (``[a-z][a-z0-9-]{0,31}``); a
                             well-formed name this library does not know is accepted,
                             stored and forwarded, and counts for nothing (section 7)
``unknown-field:X``          a key that the record or body does not allow
``missing-field:X``          a required key is absent
``unexpected-field:project`` a ``project`` key on a ``project`` or ``profile`` record
``bad-type:X``               a field of the wrong MessagePack type
``bad-length:X``             a key, id or signature of the wrong byte length
``bad-timestamp``            ``ts`` outside ``0 <= ts < 2**63``
``future-timestamp``         ``ts`` more than 10 minutes ahead of the validating clock
``field-too-short:X``        an empty string where at least one byte is required
``field-too-long:X``         a string longer than its limit (UTF-8 bytes)
``empty-list:X``             an empty list (or an empty ``set`` map) where present
``control-char:X``           a C0 control (U+0000-001F), DEL or C1 control (U+0080-009F) in
                             a text field; multi-line fields (descriptions, ``about``,
                             ``comment``, ``reason``) may hold tab and newline
``line-break:X``             a line break in a single-line field (name, title, license, a
                             link, tag, URI or digest), or one other than newline (CR, VT,
                             FF, NEL, U+2028, U+2029) in a multi-line field
``bidi-control:X``           a bidi embedding, override or isolate (U+202A-202E,
                             U+2066-2069) in any text field
``too-many:X``               a list with more items than its limit
``duplicate:X``              the same key twice in ``maintainers`` or ``coauthors``, or
                             the same handle twice in ``on_behalf``
``out-of-range:X``           ``effort_minutes`` or ``weight`` outside its range
``bad-value:type``           a contribution ``type`` outside the list
``bad-value:on_behalf``      an ``on_behalf`` handle of none of the three forms (section 4.10)
``bad-value:handle``         a claimed ``handle`` of none of the three forms
``on-behalf-with-coauthors`` an attested contribution (``on_behalf``) that lists coauthors
``ssh-key-without-on-behalf`` a contribution with ``ssh_key`` that is not attested
``bad-value:proof``          a claim ``proof`` that is not an Ed25519 SSH signature in the
                             ``commons-claim`` namespace (the message says which part)
``coauthor-is-author``       the author lists themselves as a coauthor
``empty-update``             a project update with none of its three keys
``cut-after-record``         a ``device-revoke`` whose ``cut`` is after its own ``ts``
``bad-proof``                a ``device-join`` whose ``proof`` is not the ticket key's
                             strict signature of its person and author, or a ``claim``
                             whose ``proof`` does not verify for its author, project and
                             handle
``bad-signature``            the signature does not verify strictly (wrong signature,
                             small-order or non-canonical key or ``R``, ``S >= L``)
``wrong-topic``              a gossip message on a topic other than its record's topic
===========================  ===============================================================
"""

from __future__ import annotations

from typing import Final

from protocol import codec
from protocol.attest import ClaimBody
from protocol.errors import InvalidRecord
from protocol.identity_records import DeviceJoinBody, join_proof_input
from protocol.record import Record
from protocol.signing import verify
from protocol.sshsig import claim_message, parse_proof

__all__ = [
    "ERROR_CODES",
    "MAX_CLOCK_SKEW_MS",
    "META_TOPIC",
    "parse_record",
    "project_topic",
    "scope_of",
    "topic_of",
    "validate_message",
    "verify_signature",
]

#: A record from further ahead than this is refused now (and may be accepted later).
MAX_CLOCK_SKEW_MS: Final = 10 * 60 * 1000

META_TOPIC: Final = "/commons/1/meta"
PROJECT_TOPIC_PREFIX: Final = "/commons/1/p/"
#: The reconciliation scope that holds project, project-update and profile records.
META_SCOPE: Final = "meta"
#: The kinds that travel on the meta topic and belong to the meta scope.
META_KINDS: Final = frozenset({"project", "project-update", "profile"})

ERROR_CODES: Final = frozenset(
    {
        "too-large",
        "truncated",
        "trailing-bytes",
        "too-deep",
        "forbidden-type",
        "not-canonical",
        "bad-utf8",
        "not-a-map",
        "bad-version",
        "unknown-kind",
        "unexpected-field:project",
        "bad-timestamp",
        "future-timestamp",
        "bad-value:type",
        "bad-value:on_behalf",
        "bad-value:handle",
        "on-behalf-with-coauthors",
        "ssh-key-without-on-behalf",
        "bad-value:proof",
        "coauthor-is-author",
        "empty-update",
        "cut-after-record",
        "bad-signature",
        "bad-proof",
        "wrong-topic",
    }
)
#: Codes that carry a field path after a colon.
FIELD_ERROR_PREFIXES: Final = frozenset(
    {
        "unknown-field",
        "missing-field",
        "bad-type",
        "bad-length",
        "field-too-short",
        "field-too-long",
        "empty-list",
        "control-char",
        "line-break",
        "bidi-control",
        "too-many",
        "duplicate",
        "out-of-range",
    }
)


def is_known_code(code: str) -> bool:
    """True for every code this module documents (used by tests and by the node's metrics)."""
    return code in ERROR_CODES or code.split(":", 1)[0] in FIELD_ERROR_PREFIXES


def parse_record(raw: bytes, *, now_ms: int | None, verify_sig: bool = True) -> Record:
    """Decode and fully validate one record; the only way outside bytes become a Record.

    ``now_ms`` is the validating node's clock (milliseconds since the epoch); a record more
    than ten minutes ahead of it is refused with ``future-timestamp``. Pass ``None`` only to
    check a record offline without any clock (``commons verify`` of an archive).
    """
    raw = bytes(raw)
    if len(raw) > codec.MAX_SIZE:
        raise InvalidRecord("too-large", f"{len(raw)} bytes, the limit is {codec.MAX_SIZE}")
    # ``Record`` checks every rule of sections 1-4 that does not need the clock or the
    # signature, including ``coauthor-is-author``, which spans the record and its body.
    record = Record.from_value(codec.decode(raw), raw)
    if now_ms is not None and record.ts > now_ms + MAX_CLOCK_SKEW_MS:
        ahead = (record.ts - now_ms) / 60_000
        raise InvalidRecord(
            "future-timestamp", f"ts is {ahead:.1f} minutes ahead of this node's clock"
        )
    # ``raw`` decoded canonically, so re-encoding reproduces it; the id is over ``raw``.
    if verify_sig:
        verify_signature(record)
    return record


def verify_signature(record: Record, *, verdict: bool | None = None) -> None:
    """Raise ``bad-signature`` unless the record's signature verifies strictly.

    ``verdict``: what :func:`protocol.signing.verify` answered for ``record.author``,
    ``record.signing_input()`` and ``record.sig`` when it ran elsewhere (a node verifying in
    another process); None verifies here.
    """
    if verdict is None:
        verdict = verify(record.author, record.signing_input(), record.sig)
    if not verdict:
        raise InvalidRecord("bad-signature", "the signature does not verify for its author")
    body = record.body
    # A join carries a second signature, by the link ticket's key: checked here, with the
    # record's own, so that every door that verifies signatures checks it too.
    if isinstance(body, DeviceJoinBody) and not verify(
        body.ticket, join_proof_input(body.person, record.author), body.proof
    ):
        raise InvalidRecord("bad-proof", "the join proof is not the link ticket's signature")
    # A claim's SSH proof (protocol.sshsig) is a signature too, over the claimant, the project
    # and the handle, so it is checked wherever signatures are.
    if isinstance(body, ClaimBody) and body.proof is not None and record.project is not None:
        message = claim_message(record.author, record.project, body.handle)
        if not parse_proof(body.proof).verifies(message):
            raise InvalidRecord(
                "bad-proof",
                "the claim's SSH proof does not verify for its author, project and handle",
            )


def scope_of(record: Record) -> str:
    """The reconciliation scope of a record: ``meta`` or the project id in hex."""
    if record.project is None or record.kind in META_KINDS:
        return META_SCOPE
    return record.project.hex()


def project_topic(project_id: bytes) -> str:
    return PROJECT_TOPIC_PREFIX + project_id.hex()


def topic_of(record: Record) -> str:
    """The GossipSub topic a record travels on (docs/RECORD-FORMAT.md section 6)."""
    scope = scope_of(record)
    return META_TOPIC if scope == META_SCOPE else PROJECT_TOPIC_PREFIX + scope


def validate_message(topic: str, raw: bytes, *, now_ms: int) -> Record:
    """Validate a gossip message: a well-formed record on its own topic.

    The topic check runs before the signature, so a misrouted message costs no verification.
    """
    record = parse_record(raw, now_ms=now_ms, verify_sig=False)
    if topic != topic_of(record):
        raise InvalidRecord("wrong-topic", f"a {record.kind} record does not belong on {topic}")
    verify_signature(record)
    return record
