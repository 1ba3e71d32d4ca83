"""The characters a text field may hold (docs/RECORD-FORMAT.md section 4, "Characters").

Every text a record carries is shown on someone's terminal, so a record whose text holds
what a terminal acts on (C0 and C1 controls, DEL, the line and paragraph separators, bidi
embeddings, overrides and isolates) is not well-formed. Multi-line fields (descriptions,
``about``, ``comment``, ``reason``) may hold newline and tab. The expected verdicts below are
written from that rule, not from the implementation's tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec, testing
from protocol.errors import InvalidRecord
from protocol.record import (
    SIGNING_DOMAIN,
    Artifact,
    ContributionBody,
    EndorsementBody,
    ProfileBody,
    ProjectBody,
    ProjectFields,
    ProjectUpdateBody,
    RetractionBody,
    decode_trusted,
    sign_record,
)
from protocol.validation import is_known_code, parse_record

ALICE = testing.key("alice")
NOW = testing.EPOCH_MS + 86_400_000
TS = NOW - 60_000
PROJECT = bytes(range(32))
TARGET = bytes(range(1, 33))

BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]
LINE_BREAKS = ["\n", "\x0b", "\x0c", "\r", "\x85", "\u2028", "\u2029"]
CONTROLS = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if chr(c) not in LINE_BREAKS]
SPECIAL = BIDI + LINE_BREAKS + CONTROLS
#: Characters that sit just outside the refused ranges, or look like they might be refused.
NEIGHBOURS = [" ", "~", "\xa0", "\u200e", "\u200f", "\u061c", "\u2027", "\u202f", "\u2065"]
NEIGHBOURS += ["\u206a", "\ufeff", "\u200b", "\u00ad", "é", "😀"]


def expected(ch: str, multiline: bool) -> str | None:
    """The code refusing ``ch`` in a field, from the rule; None when it is allowed."""
    if ch in BIDI:
        return "bidi-control"
    if ch in LINE_BREAKS:
        return None if multiline and ch == "\n" else "line-break"
    if ch in CONTROLS:
        return None if multiline and ch == "\t" else "control-char"
    return None


Body = Callable[[str], dict[str, Any]]
#: (kind, field path, multi-line, body holding the text)
FIELDS: list[tuple[str, str, bool, Body]] = [
    ("project", "name", False, lambda s: {"name": s}),
    ("project", "description", True, lambda s: {"name": "P", "description": s}),
    ("project", "license", False, lambda s: {"name": "P", "license": s}),
    ("project", "links", False, lambda s: {"name": "P", "links": ["ok", s]}),
    ("project", "tags", False, lambda s: {"name": "P", "tags": [s]}),
    ("project-update", "set.name", False, lambda s: {"set": {"name": s}}),
    ("project-update", "set.description", True, lambda s: {"set": {"description": s}}),
    ("project-update", "set.license", False, lambda s: {"set": {"license": s}}),
    ("project-update", "set.links", False, lambda s: {"set": {"links": [s]}}),
    ("project-update", "set.tags", False, lambda s: {"set": {"tags": [s]}}),
    ("contribution", "title", False, lambda s: {"type": "code", "title": s}),
    (
        "contribution",
        "description",
        True,
        lambda s: {"type": "code", "title": "t", "description": s},
    ),
    (
        "contribution",
        "artifacts.uri",
        False,
        lambda s: {"type": "code", "title": "t", "artifacts": [{"uri": s}]},
    ),
    (
        "contribution",
        "artifacts.digest",
        False,
        lambda s: {"type": "code", "title": "t", "artifacts": [{"uri": "u", "digest": s}]},
    ),
    ("endorsement", "comment", True, lambda s: {"target": TARGET, "comment": s}),
    ("retraction", "reason", True, lambda s: {"target": TARGET, "reason": s}),
    ("profile", "name", False, lambda s: {"name": s}),
    ("profile", "about", True, lambda s: {"name": "A", "about": s}),
    ("profile", "links", False, lambda s: {"name": "A", "links": [s]}),
]
FIELD_IDS = [f"{kind}:{path}" for kind, path, *_ in FIELDS]


def signed(kind: str, body: dict[str, Any]) -> bytes:
    """A record map by alice, encoded and signed over exactly its content."""
    value: dict[str, Any] = {"v": 1, "kind": kind, "author": ALICE.public_key, "ts": TS}
    value["body"] = body
    if kind not in ("project", "profile"):
        value["project"] = PROJECT
    sig = ALICE.sign(SIGNING_DOMAIN + codec.encode(value))
    return codec.encode({**value, "sig": sig})


def verdict(raw: bytes) -> str | None:
    """None when ``raw`` is accepted, else the code refusing it."""
    code = None
    try:
        parse_record(raw, now_ms=NOW)
    except InvalidRecord as exc:
        code = exc.code
    assert code is None or is_known_code(code), code
    return code


# Ordinary text around the character under test: anything but controls, separators,
# surrogates and the bidi controls, kept short so the shortest field (a 32-byte tag) fits.
plain = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters=BIDI
    ),
    max_size=3,
)


@pytest.mark.parametrize(("kind", "path", "multiline", "body"), FIELDS, ids=FIELD_IDS)
@given(before=plain, ch=st.sampled_from(SPECIAL + NEIGHBOURS), after=plain)
def test_each_character_class_in_each_field(
    kind: str, path: str, multiline: bool, body: Body, before: str, ch: str, after: str
) -> None:
    text = before + ch + after
    code = expected(ch, multiline)
    got = verdict(signed(kind, body(text)))
    assert got == (None if code is None else f"{code}:{path}"), (text, got)


@pytest.mark.parametrize(("kind", "path", "multiline", "body"), FIELDS, ids=FIELD_IDS)
@given(text=st.text(alphabet=st.sampled_from(SPECIAL + NEIGHBOURS + ["a"]), min_size=1, max_size=8))
def test_the_first_refused_character_decides(
    kind: str, path: str, multiline: bool, body: Body, text: str
) -> None:
    codes = [c for c in (expected(ch, multiline) for ch in text) if c is not None]
    got = verdict(signed(kind, body(text)))
    assert got == (f"{codes[0]}:{path}" if codes else None), (text, got)


def test_the_message_names_the_character_and_where_it_is() -> None:
    with pytest.raises(InvalidRecord) as info:
        parse_record(signed("project", {"name": "Clear\x1b[2J"}), now_ms=NOW)
    assert info.value.code == "control-char:name"
    assert "U+001B (escape) at character 6" in info.value.message
    with pytest.raises(InvalidRecord) as info:
        parse_record(signed("profile", {"name": "A", "about": "x\r\ny"}), now_ms=NOW)
    assert info.value.code == "line-break:about"
    assert "U+000D (carriage return) at character 2" in info.value.message
    with pytest.raises(InvalidRecord) as info:
        ContributionBody(type="code", title="\u202egnp.exe")
    assert info.value.code == "bidi-control:title"
    assert "U+202E (right-to-left override) at character 1" in info.value.message


@pytest.mark.parametrize("ch", SPECIAL)
def test_messages_never_carry_the_character_they_refuse(ch: str) -> None:
    # An error message reaches logs, terminals and API answers: it names the character by
    # its code point and must not hold it.
    for multiline in (False, True):
        if expected(ch, multiline) is None:
            continue
        body = {"name": "P", "description": "a" + ch} if multiline else {"name": "a" + ch}
        with pytest.raises(InvalidRecord) as info:
            parse_record(signed("project", body), now_ms=NOW)
        assert all(c not in info.value.message for c in SPECIAL), info.value.message
        assert f"U+{ord(ch):04X}" in info.value.message


HOSTILE = "\x1b[2J"
#: Every way of building a record body locally, holding one hostile text.
CONSTRUCTORS: list[tuple[str, Callable[[], object]]] = [
    ("name", lambda: ProjectBody(name=HOSTILE)),
    ("description", lambda: ProjectBody(name="P", description=HOSTILE)),
    ("license", lambda: ProjectBody(name="P", license=HOSTILE)),
    ("links", lambda: ProjectBody(name="P", links=(HOSTILE,))),
    ("tags", lambda: ProjectBody(name="P", tags=(HOSTILE,))),
    ("set.name", lambda: ProjectFields(name=HOSTILE)),
    ("set.description", lambda: ProjectFields(description=HOSTILE)),
    ("set.tags", lambda: ProjectFields(tags=(HOSTILE,))),
    ("title", lambda: ContributionBody(type="code", title=HOSTILE)),
    ("description", lambda: ContributionBody(type="code", title="t", description=HOSTILE)),
    ("artifacts.uri", lambda: Artifact(uri=HOSTILE)),
    ("artifacts.digest", lambda: Artifact(uri="u", digest=HOSTILE)),
    ("comment", lambda: EndorsementBody(target=TARGET, comment=HOSTILE)),
    ("reason", lambda: RetractionBody(target=TARGET, reason=HOSTILE)),
    ("name", lambda: ProfileBody(name=HOSTILE)),
    ("about", lambda: ProfileBody(name="A", about=HOSTILE)),
    ("links", lambda: ProfileBody(name="A", links=(HOSTILE,))),
]


@pytest.mark.parametrize(("path", "build"), CONSTRUCTORS, ids=[p for p, _ in CONSTRUCTORS])
def test_a_hostile_body_cannot_be_built_locally(path: str, build: Callable[[], object]) -> None:
    with pytest.raises(InvalidRecord) as info:
        build()
    assert info.value.code == f"control-char:{path}"


def test_sign_record_builds_multiline_text_and_refuses_nothing_else() -> None:
    body = ContributionBody(type="docs", title="Guide", description="1.\tcut\n2.\tweld\n")
    record = sign_record(ALICE, body=body, ts=TS, project=PROJECT)
    assert parse_record(record.raw, now_ms=NOW).body == body
    update = ProjectUpdateBody(set=ProjectFields(description="line one\nline two"))
    assert sign_record(ALICE, body=update, ts=TS, project=PROJECT).kind == "project-update"


def test_a_record_stored_before_the_rule_still_reads_back() -> None:
    # A node's store may hold records accepted before the rule existed: decode_trusted (the
    # store's reader) keeps them readable, while every door from outside refuses them.
    legacy = signed(
        "contribution", {"type": "code", "title": "\x1b[2J\u202eowned", "description": "\r"}
    )
    assert verdict(legacy) == "control-char:title"
    record = decode_trusted(legacy)
    assert isinstance(record.body, ContributionBody)
    assert record.body.title == "\x1b[2J\u202eowned"
    assert record.raw == legacy
    # ... and the rule holds again at once, for everything built afterwards.
    with pytest.raises(InvalidRecord):
        ProjectBody(name=HOSTILE)
    assert verdict(legacy) == "control-char:title"


def test_decode_trusted_restores_the_rule_when_it_fails() -> None:
    broken = signed("contribution", {"type": "code", "title": "\x1b", "colour": "red"})
    with pytest.raises(InvalidRecord, match="unknown-field"):
        decode_trusted(broken)
    with pytest.raises(InvalidRecord) as info:
        ProjectBody(name=HOSTILE)
    assert info.value.code == "control-char:name"
