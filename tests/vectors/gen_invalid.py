"""The invalid vectors of ``records.json``: one broken rule each (docs/RECORD-FORMAT.md §1-4).

Each is a hand-built map (``vector_kit``) signed by its author over exactly its bytes, so that
only the rule the vector names is broken; the error is the code a validator must report.
"""

from __future__ import annotations

from typing import Any

import gen_identity
import msgpack
from vector_kit import (
    ALICE,
    BASE_BODIES,
    BOB,
    BOB_SSH,
    CAROL,
    ED25519_L,
    NOW_MS,
    PROJECT_ID,
    TARGET_ID,
    TS,
    base,
    contribution,
    forge,
    keys,
    nested,
    pack_loose,
    pack_unsorted,
    sized_contribution,
    sorted_keys,
    text_of,
)

from protocol import codec
from protocol.attest import email_handle
from protocol.record import (
    SIGNING_DOMAIN,
)
from protocol.sshsig import claim_message, key_fingerprint, sign_proof
from protocol.validation import MAX_CLOCK_SKEW_MS

# --------------------------------------------------------------------------------------------
# Invalid vectors


def _sign_small_order() -> bytes:
    """The forgery OpenSSL accepts: identity public key, R = identity, S = 0."""
    identity = bytes([1]) + bytes(31)
    value = base("profile", author=identity)
    return forge(value, sig=identity + bytes(32))


def _sign_s_plus_l() -> bytes:
    value = base("profile")
    sig = ALICE.sign(SIGNING_DOMAIN + codec.encode(value))
    s = int.from_bytes(sig[32:], "little") + ED25519_L
    return forge(value, sig=sig[:32] + s.to_bytes(32, "little"))


def _flipped_sig() -> bytes:
    value = base("profile")
    sig = bytearray(ALICE.sign(SIGNING_DOMAIN + codec.encode(value)))
    sig[10] ^= 0x01
    return forge(value, sig=bytes(sig))


def invalid() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []

    def case(description: str, raw: bytes, error: str, now_ms: int | None = NOW_MS) -> None:
        cases.append(
            {"description": description, "hex": raw.hex(), "error": error, "now_ms": now_ms}
        )

    good = forge(base("profile"))
    title = (b"\xa5title\xabChassis CAD", b"\xa5title")
    endorse = {"target": TARGET_ID, "weight": 1.0}

    # Size and framing of the encoding.
    case("a validly signed record of 65537 bytes", sized_contribution(65_537), "too-large")
    case("empty input", b"", "truncated")
    case("a valid record without its last byte", good[:-1], "truncated")
    case("a map declaring 2**32-1 entries in 5 bytes", bytes.fromhex("dfffffffff"), "truncated")
    case("a valid record followed by one zero byte", good + b"\x00", "trailing-bytes")
    case(
        "description nested 9 levels deep (record, body, 7 arrays)",
        forge(contribution(description=nested(7)), pack=pack_loose),
        "too-deep",
    )
    # Types MessagePack has and the format forbids.
    case(
        "description nil", forge(contribution(description=None), pack=pack_loose), "forbidden-type"
    )
    case(
        "effort_minutes true (0xc3)",
        forge(contribution(effort_minutes=True), pack=pack_loose),
        "forbidden-type",
    )
    case(
        "effort_minutes false (0xc2)",
        forge(contribution(effort_minutes=False), pack=pack_loose),
        "forbidden-type",
    )
    case(
        "weight as float64 1.0",
        forge(base("endorsement", endorse), pack=pack_loose),
        "forbidden-type",
    )
    case(
        "weight as float32 1.0",
        forge(
            base("endorsement", endorse),
            pack=lambda v: msgpack.packb(sorted_keys(v), use_bin_type=True, use_single_float=True),
        ),
        "forbidden-type",
    )
    case(
        "an ext value as description",
        forge(contribution(description=msgpack.ExtType(1, b"x")), pack=pack_loose),
        "forbidden-type",
    )
    case(
        "the reserved byte 0xc1 as the title",
        forge(contribution(), patch=(title[0], title[1] + b"\xc1")),
        "forbidden-type",
    )
    # Canonical form.
    case(
        "record keys in insertion order, not sorted",
        forge(base("profile"), pack=pack_unsorted),
        "not-canonical",
    )
    case(
        "v encoded as uint8 (cc 01)",
        forge(base("profile"), patch=(b"\xa1v\x01", b"\xa1v\xcc\x01")),
        "not-canonical",
    )
    case(
        "title encoded as str8 although it fits fixstr",
        forge(contribution(), patch=(title[0], title[1] + b"\xd9\x0bChassis CAD")),
        "not-canonical",
    )
    case(
        "author encoded as bin16",
        forge(base("profile"), patch=(b"\xa6author\xc4\x20", b"\xa6author\xc5\x00\x20")),
        "not-canonical",
    )
    case(
        "body key title written twice (the second in place of type)",
        forge(contribution(), patch=(b"\xa4type", b"\xa5title")),
        "not-canonical",
    )
    case(
        "an integer as a body key",
        forge(contribution(), patch=(b"\xa4type", b"\x01")),
        "not-canonical",
    )
    case(
        "a one-item tags list encoded as array16",
        forge(
            base("project", {"name": "P", "tags": ["t"]}),
            patch=(b"\xa4tags\x91", b"\xa4tags\xdc\x00\x01"),
        ),
        "not-canonical",
    )
    case(
        "ts 5 encoded as uint64",
        forge(base("profile", ts=5), patch=(b"\xa2ts\x05", b"\xa2ts\xcf" + (5).to_bytes(8, "big"))),
        "not-canonical",
    )
    # UTF-8.
    case(
        "title with an overlong encoding of NUL (c0 80)",
        forge(contribution(), patch=(title[0], title[1] + b"\xa2\xc0\x80")),
        "bad-utf8",
    )
    case(
        "title with an encoded surrogate (ed a0 80)",
        forge(contribution(), patch=(title[0], title[1] + b"\xa3\xed\xa0\x80")),
        "bad-utf8",
    )
    # Section 1: the record map.
    case("an array instead of a map", codec.encode([1, 2, 3]), "not-a-map")
    case("v is 2", forge(base("profile", v=2)), "bad-version")
    case("v is 0", forge(base("profile", v=0)), "bad-version")
    case("v is the string 1", forge(base("profile", v="1")), "bad-version")
    # Kind names, and the identity kinds (gen_identity.py).
    for description, raw, error in gen_identity.invalid_records(base, forge, BASE_BODIES):
        case(description, raw, error)
    case("kind as bin", forge(base("profile", kind=b"profile")), "bad-type:kind")
    case("an extra record key", forge(base("profile", extra=1)), "unknown-field:extra")
    case("no sig", forge(base("profile"), sig=None), "missing-field:sig")
    for name in ("v", "kind", "author", "ts", "body"):
        value = base("profile")
        del value[name]
        case(f"no {name}", forge(value), f"missing-field:{name}")
    case("a contribution without project", forge(base(project=None)), "missing-field:project")
    case(
        "a project record with a project key",
        forge(base("project", project=PROJECT_ID)),
        "unexpected-field:project",
    )
    case(
        "a profile record with a project key",
        forge(base("profile", project=PROJECT_ID)),
        "unexpected-field:project",
    )
    case("author of 31 bytes", forge(base("profile", author=bytes(31))), "bad-length:author")
    case("author of 33 bytes", forge(base("profile", author=bytes(33))), "bad-length:author")
    case("author as str", forge(base("profile", author="alice")), "bad-type:author")
    case("project of 33 bytes", forge(base(project=bytes(33))), "bad-length:project")
    case("project as int", forge(base(project=7)), "bad-type:project")
    case("sig of 63 bytes", forge(base("profile"), sig=bytes(63)), "bad-length:sig")
    case("sig of 65 bytes", forge(base("profile"), sig=bytes(65)), "bad-length:sig")
    case("sig as str", forge(base("profile"), sig="signature"), "bad-type:sig")
    case("ts -1", forge(base("profile", ts=-1)), "bad-timestamp")
    case("ts 2**63 (uint64)", forge(base("profile", ts=2**63)), "bad-timestamp")
    case("ts 2**64-1", forge(base("profile", ts=2**64 - 1)), "bad-timestamp")
    case("ts -2**63", forge(base("profile", ts=-(2**63))), "bad-timestamp")
    case("ts as str", forge(base("profile", ts="1735689600000")), "bad-type:ts")
    case(
        "ts 10 minutes and 1 ms ahead of the clock",
        forge(base("profile", ts=NOW_MS + MAX_CLOCK_SKEW_MS + 1)),
        "future-timestamp",
    )
    case("body as an array", forge(base("profile", body=["Alice"])), "bad-type:body")
    # Section 4: bodies, key by key.
    case("an unknown body key", forge(contribution(color="red")), "unknown-field:color")
    case("contribution without title", forge(base(body={"type": "code"})), "missing-field:title")
    case("project without name", forge(base("project", {})), "missing-field:name")
    case(
        "endorsement without target",
        forge(base("endorsement", {"weight": 2})),
        "missing-field:target",
    )
    case("title as int", forge(contribution(title=5)), "bad-type:title")
    case("links as str", forge(base("project", {"name": "P", "links": "x"})), "bad-type:links")
    case(
        "target of 31 bytes", forge(base("endorsement", {"target": bytes(31)})), "bad-length:target"
    )
    case(
        "target of 33 bytes", forge(base("retraction", {"target": bytes(33)})), "bad-length:target"
    )
    case(
        "a maintainer key of 31 bytes",
        forge(base("project", {"name": "P", "maintainers": [bytes(31)]})),
        "bad-length:maintainers",
    )
    case(
        "a coauthor key of 33 bytes",
        forge(contribution(coauthors=[bytes(33)])),
        "bad-length:coauthors",
    )
    case(
        "an add_maintainers key as str",
        forge(base("project-update", {"add_maintainers": ["bob"]})),
        "bad-type:add_maintainers",
    )
    case("project name empty", forge(base("project", {"name": ""})), "field-too-short:name")
    case(
        "license empty",
        forge(base("project", {"name": "P", "license": ""})),
        "field-too-short:license",
    )
    case(
        "an empty tag",
        forge(base("project", {"name": "P", "tags": ["ok", ""]})),
        "field-too-short:tags",
    )
    case(
        "artifact digest empty",
        forge(contribution(artifacts=[{"uri": "u", "digest": ""}])),
        "field-too-short:artifacts.digest",
    )
    for kind, path, limit, body in (
        ("project", "name", 100, lambda s: {"name": s}),
        ("project", "license", 64, lambda s: {"name": "P", "license": s}),
        ("project", "tags", 32, lambda s: {"name": "P", "tags": [s]}),
        ("project", "description", 4000, lambda s: {"name": "P", "description": s}),
        ("project-update", "set.name", 100, lambda s: {"set": {"name": s}}),
        ("project-update", "set.links", 2000, lambda s: {"set": {"links": [s]}}),
        ("contribution", "title", 200, lambda s: {"type": "code", "title": s}),
        (
            "contribution",
            "artifacts.uri",
            2000,
            lambda s: {"type": "code", "title": "t", "artifacts": [{"uri": s}]},
        ),
        ("endorsement", "comment", 1000, lambda s: {"target": TARGET_ID, "comment": s}),
        ("retraction", "reason", 1000, lambda s: {"target": TARGET_ID, "reason": s}),
        ("profile", "about", 2000, lambda s: {"name": "A", "about": s}),
        ("profile", "links", 2000, lambda s: {"name": "A", "links": [s]}),
    ):
        case(
            f"{kind} {path} of {limit + 1} UTF-8 bytes (multibyte characters)",
            forge(base(kind, body(text_of(limit + 1)))),
            f"field-too-long:{path}",
        )
    # Characters a terminal would act on (docs/RECORD-FORMAT.md section 4, "Characters").
    for description, kind, body, error in (
        ("project name with ESC", "project", {"name": "P\x1b[2J"}, "control-char:name"),
        (
            "title with a clear-screen sequence",
            "contribution",
            {"type": "code", "title": "\x1b[2J\x1b[H"},
            "control-char:title",
        ),
        (
            "set.name with NUL",
            "project-update",
            {"set": {"name": "a\x00b"}},
            "control-char:set.name",
        ),
        ("a tag with DEL", "project", {"name": "P", "tags": ["ok", "t\x7f"]}, "control-char:tags"),
        (
            "license with a tab",
            "project",
            {"name": "P", "license": "MIT\tOR"},
            "control-char:license",
        ),
        (
            "artifact digest with the C1 CSI U+009B",
            "contribution",
            {"type": "code", "title": "t", "artifacts": [{"uri": "u", "digest": "sha256:\x9b31m"}]},
            "control-char:artifacts.digest",
        ),
        (
            "project description with ESC (multi-line fields refuse it too)",
            "project",
            {"name": "P", "description": "a\n\x1b]0;title\x07"},
            "control-char:description",
        ),
        (
            "endorsement comment with BEL",
            "endorsement",
            {"target": TARGET_ID, "comment": "ding\x07"},
            "control-char:comment",
        ),
        (
            "title with a newline",
            "contribution",
            {"type": "code", "title": "Chassis\nCAD"},
            "line-break:title",
        ),
        (
            "a link with CR",
            "project",
            {"name": "P", "links": ["https://a.example/\r"]},
            "line-break:links",
        ),
        (
            "contribution description with CR LF",
            "contribution",
            {"type": "code", "title": "t", "description": "one\r\ntwo"},
            "line-break:description",
        ),
        (
            "profile about with U+2028 LINE SEPARATOR",
            "profile",
            {"name": "A", "about": "a\u2028b"},
            "line-break:about",
        ),
        (
            "retraction reason with NEL U+0085",
            "retraction",
            {"target": TARGET_ID, "reason": "a\x85b"},
            "line-break:reason",
        ),
        (
            "profile name with U+202E RIGHT-TO-LEFT OVERRIDE",
            "profile",
            {"name": "\u202eecilA"},
            "bidi-control:name",
        ),
        (
            "artifact uri with U+2066 LEFT-TO-RIGHT ISOLATE",
            "contribution",
            {"type": "code", "title": "t", "artifacts": [{"uri": "https://a.example/\u2066x"}]},
            "bidi-control:artifacts.uri",
        ),
        (
            "set.description with U+2069 POP DIRECTIONAL ISOLATE",
            "project-update",
            {"set": {"description": "a\n\u2069"}},
            "bidi-control:set.description",
        ),
        (
            "project description with U+202A LEFT-TO-RIGHT EMBEDDING",
            "project",
            {"name": "P", "description": "\u202aabc"},
            "bidi-control:description",
        ),
    ):
        case(description, forge(base(kind, body)), error)
    case("links empty", forge(base("project", {"name": "P", "links": []})), "empty-list:links")
    case(
        "maintainers empty",
        forge(base("project", {"name": "P", "maintainers": []})),
        "empty-list:maintainers",
    )
    case("set empty", forge(base("project-update", {"set": {}})), "empty-list:set")
    case("artifacts empty", forge(contribution(artifacts=[])), "empty-list:artifacts")
    case("coauthors empty", forge(contribution(coauthors=[])), "empty-list:coauthors")
    case(
        "17 tags",
        forge(base("project", {"name": "P", "tags": [f"t{i}" for i in range(17)]})),
        "too-many:tags",
    )
    case(
        "65 maintainers",
        forge(base("project", {"name": "P", "maintainers": keys(65)})),
        "too-many:maintainers",
    )
    case("33 coauthors", forge(contribution(coauthors=keys(33))), "too-many:coauthors")
    case(
        "33 artifacts",
        forge(contribution(artifacts=[{"uri": f"u{i}"} for i in range(33)])),
        "too-many:artifacts",
    )
    case(
        "the same maintainer twice",
        forge(base("project", {"name": "P", "maintainers": [BOB.public_key] * 2})),
        "duplicate:maintainers",
    )
    case(
        "the same coauthor twice",
        forge(contribution(coauthors=[BOB.public_key, CAROL.public_key, BOB.public_key])),
        "duplicate:coauthors",
    )
    case(
        "the author as a coauthor",
        forge(contribution(coauthors=[BOB.public_key, ALICE.public_key])),
        "coauthor-is-author",
    )
    case("effort_minutes -1", forge(contribution(effort_minutes=-1)), "out-of-range:effort_minutes")
    case(
        "effort_minutes 1000001",
        forge(contribution(effort_minutes=1_000_001)),
        "out-of-range:effort_minutes",
    )
    case(
        "weight 0",
        forge(base("endorsement", {"target": TARGET_ID, "weight": 0})),
        "out-of-range:weight",
    )
    case(
        "weight 11",
        forge(base("endorsement", {"target": TARGET_ID, "weight": 11})),
        "out-of-range:weight",
    )
    case("type coding", forge(contribution(type="coding")), "bad-value:type")
    case("type Code (case matters)", forge(contribution(type="Code")), "bad-value:type")
    case("a project-update with an empty body", forge(base("project-update", {})), "empty-update")
    case(
        "set with maintainers",
        forge(base("project-update", {"set": {"maintainers": [BOB.public_key]}})),
        "unknown-field:set.maintainers",
    )
    case("set as str", forge(base("project-update", {"set": "name"})), "bad-type:set")
    case(
        "an artifact with an unknown key",
        forge(contribution(artifacts=[{"uri": "u", "size": 3}])),
        "unknown-field:artifacts.size",
    )
    case(
        "an artifact without uri",
        forge(contribution(artifacts=[{"digest": "sha256:00"}])),
        "missing-field:artifacts.uri",
    )
    case("an artifact as str", forge(contribution(artifacts=["u"])), "bad-type:artifacts")
    # Section 3: signatures.
    case("signed by bob, author alice", forge(base("profile"), BOB), "bad-signature")
    case("one bit of the signature flipped", _flipped_sig(), "bad-signature")
    case(
        "small-order public key 01 00..00 with R = identity, S = 0 (OpenSSL accepts it)",
        _sign_small_order(),
        "bad-signature",
    )
    case("non-canonical S (S + L)", _sign_s_plus_l(), "bad-signature")
    case(
        "signed without the commons-record-v1 domain prefix",
        forge(base("profile"), domain=b""),
        "bad-signature",
    )
    case(
        "signed over a different ts",
        forge(
            base("profile"),
            sig=ALICE.sign(SIGNING_DOMAIN + codec.encode(base("profile", ts=TS + 1))),
        ),
        "bad-signature",
    )
    case("an all-zero signature", forge(base("profile"), sig=bytes(64)), "bad-signature")
    # Attested contributions and claims (sections 4.10, 4.11).
    handle = email_handle(b"carol@example.org")
    case(
        "on_behalf with an email in clear (handles hash it)",
        forge(contribution(on_behalf=["email:carol@example.org"])),
        "bad-value:on_behalf",
    )
    case(
        "on_behalf with an ORCID whose check digit is wrong",
        forge(contribution(on_behalf=["orcid:0000-0002-1825-0098"])),
        "bad-value:on_behalf",
    )
    case(
        "on_behalf names one handle twice",
        forge(contribution(on_behalf=[handle, handle])),
        "duplicate:on_behalf",
    )
    case(
        "on_behalf with 34 handles",
        forge(contribution(on_behalf=[f"forge:x.org/u{i}" for i in range(34)])),
        "too-many:on_behalf",
    )
    case("on_behalf empty", forge(contribution(on_behalf=[])), "empty-list:on_behalf")
    case(
        "an attested contribution with coauthors",
        forge(contribution(on_behalf=[handle], coauthors=[BOB.public_key])),
        "on-behalf-with-coauthors",
    )
    case(
        "claim of a forge handle with an upper-case host",
        forge(base("claim", {"handle": "forge:GitHub.com/bob"})),
        "bad-value:handle",
    )
    case(
        "claim with a body key it does not allow",
        forge(base("claim", {"handle": "forge:github.com/bob", "note": "x"})),
        "unknown-field:note",
    )
    bob = "forge:github.com/bob"
    good_proof = sign_proof(BOB_SSH, claim_message(ALICE.public_key, PROJECT_ID, bob))
    case(
        "claim proof as text",
        forge(base("claim", {"handle": bob, "proof": "x"})),
        "bad-type:proof",
    )
    case(
        "claim proof one byte short",
        forge(base("claim", {"handle": bob, "proof": good_proof[:-1]})),
        "bad-length:proof",
    )
    case(
        "claim proof made in another SSH signature namespace",
        forge(
            base(
                "claim",
                {"handle": bob, "proof": good_proof.replace(b"commons-claim", b"commons-claix")},
            )
        ),
        "bad-value:proof",
    )
    case(
        "claim proof with a hash other than sha512 or sha256",
        forge(base("claim", {"handle": bob, "proof": good_proof.replace(b"sha512", b"sha384")})),
        "bad-value:proof",
    )
    case(
        "claim proof that signed another handle",
        forge(base("claim", {"handle": "forge:github.com/bobby", "proof": good_proof})),
        "bad-proof",
    )
    case(
        "claim proof that signed for another claimant",
        forge(
            base("claim", {"handle": bob, "proof": good_proof}),
            BOB,
            patch=(ALICE.public_key, BOB.public_key),
        ),
        "bad-proof",
    )
    case(
        "ssh_key on a contribution that is not attested",
        forge(contribution(ssh_key=key_fingerprint(BOB_SSH.public_key))),
        "ssh-key-without-on-behalf",
    )
    case(
        "ssh_key of 31 bytes",
        forge(contribution(on_behalf=[bob], ssh_key=bytes(31))),
        "bad-length:ssh_key",
    )
    case(
        "claim-confirmation of a 31-byte id",
        forge(base("claim-confirmation", {"claim": bytes(31)})),
        "bad-length:claim",
    )
    case(
        "claim without a project",
        forge(base("claim", project=None)),
        "missing-field:project",
    )
    return cases
