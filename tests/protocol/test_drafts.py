"""``protocol.drafts``: the attested contributions it builds are exactly ``sign_record``'s.

The property compares bytes, id and fields with the ordinary path on generated titles
(every length class of a MessagePack string, multi-byte characters), handle lists, types,
digests and times; the examples check that every rule a varying field is subject to still
refuses, with the code the ordinary path raises.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.attest import MAX_ON_BEHALF, email_handle
from protocol.drafts import Drafts, sign_drafts
from protocol.errors import InvalidRecord
from protocol.record import (
    CONTRIBUTION_TYPES,
    MAX_TITLE,
    Artifact,
    ContributionBody,
    Record,
    sign_record,
)
from protocol.testing import key
from protocol.validation import parse_record

SIGNER = key("drafts-maintainer")
PROJECT = bytes(range(32))
URL = "https://git.example/project.git"

_TITLE_CHARS = st.characters(
    blacklist_categories=("Cs", "Cc", "Cf", "Zl", "Zp"), blacklist_characters="\x7f"
)
titles = st.text(_TITLE_CHARS, min_size=1, max_size=80).filter(
    lambda t: 0 < len(t.encode()) <= MAX_TITLE
)
handles = st.lists(
    st.binary(min_size=1, max_size=20).map(email_handle),
    min_size=1,
    max_size=MAX_ON_BEHALF,
    unique=True,
).map(tuple)


def reference(
    type_: str, title: str, digest: str, on_behalf: tuple[str, ...], ts: int, ssh_key: bytes | None
) -> Record:
    body = ContributionBody(
        type=type_,
        title=title,
        artifacts=(Artifact(uri=URL, digest=digest),),
        on_behalf=on_behalf,
        ssh_key=ssh_key,
    )
    return sign_record(SIGNER, body=body, ts=ts, project=PROJECT)


@settings(max_examples=60, deadline=None)
@given(
    type_=st.sampled_from(sorted(CONTRIBUTION_TYPES)),
    title=titles | st.sampled_from(["x" * 31, "x" * 32, "é" * 100, "x" * 200]),
    digest=st.from_regex(r"git:[0-9a-f]{40}", fullmatch=True),
    on_behalf=handles,
    ts=st.integers(0, 2**63 - 1) | st.sampled_from([0, 127, 128, 2**32, 1_704_067_200_000]),
    ssh_key=st.none() | st.binary(min_size=32, max_size=32),
)
def test_drafts_make_sign_records_bytes(
    type_: str,
    title: str,
    digest: str,
    on_behalf: tuple[str, ...],
    ts: int,
    ssh_key: bytes | None,
) -> None:
    drafts = Drafts(SIGNER.public_key, PROJECT, URL)
    fields = {"type": type_, "title": title, "digest": digest, "on_behalf": on_behalf}
    draft = drafts.draft(**fields, ts=ts, ssh_key=ssh_key)  # type: ignore[arg-type]
    record = drafts.signed(draft, sign_drafts(SIGNER, [draft.signing_input])[0])
    expected = reference(type_, title, digest, on_behalf, ts, ssh_key)
    assert draft.signing_input == expected.signing_input()
    assert (record.raw, record.id) == (expected.raw, expected.id)
    assert record == expected
    assert record.body == expected.body
    # And the bytes pass every rule a peer applies, the signature included.
    assert parse_record(record.raw, now_ms=2**63 - 1).id == record.id
    # The same draft twice (its handle list now cached) gives the same record.
    again = drafts.draft(**fields, ts=ts, ssh_key=ssh_key)  # type: ignore[arg-type]
    assert again == draft
    # Drafted, signed and finished in one call: the same bytes and id, the same input signed.
    signed: list[bytes] = []

    def sign(message: bytes) -> bytes:
        signed.append(message)
        return SIGNER.sign(message)

    made = drafts.record(type_, title, digest, on_behalf, ts, ssh_key, sign)
    assert made == (expected.raw, expected.id)
    assert signed == [expected.signing_input()]


ONE = (email_handle(b"a@example.org"),)
GOOD = {"type": "code", "title": "Fix", "digest": "git:" + "ab" * 20, "on_behalf": ONE, "ts": 1}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"type": "commit"}, "bad-value:type"),
        ({"title": ""}, "field-too-short:title"),
        ({"title": "x" * (MAX_TITLE + 1)}, "field-too-long:title"),
        ({"title": "a\nb"}, "line-break:title"),
        ({"title": "a\u202eb"}, "bidi-control:title"),
        ({"title": "\ud800"}, "bad-utf8"),
        ({"digest": ""}, "field-too-short:artifacts.digest"),
        ({"on_behalf": ()}, "empty-list:on_behalf"),
        ({"on_behalf": ["email:" + "0" * 64]}, "bad-type:on_behalf"),
        ({"on_behalf": ("someone@example.org",)}, "bad-value:on_behalf"),
        ({"on_behalf": ONE + ONE}, "duplicate:on_behalf"),
        ({"on_behalf": tuple(email_handle(b"%d" % i) for i in range(34))}, "too-many:on_behalf"),
        ({"ts": -1}, "bad-timestamp"),
        ({"ts": 2**63}, "bad-timestamp"),
        ({"ts": True}, "bad-timestamp"),
        ({"ssh_key": b"\x01" * 31}, "bad-length:ssh_key"),
        ({"ssh_key": "00" * 32}, "bad-type:ssh_key"),
    ],
)
def test_a_draft_breaking_a_rule_is_refused(change: dict[str, object], code: str) -> None:
    drafts = Drafts(SIGNER.public_key, PROJECT, URL)
    drafts.draft(**GOOD)  # type: ignore[arg-type]  # warms the handle cache first
    with pytest.raises(InvalidRecord) as caught:
        drafts.draft(**{**GOOD, **change})  # type: ignore[arg-type]
    assert caught.value.code == code
    # Made in one call, the same rule refuses it, before anything is signed.
    fields = {**GOOD, "ssh_key": None, **change}
    names = ("type", "title", "digest", "on_behalf", "ts", "ssh_key")
    with pytest.raises(InvalidRecord) as caught:
        drafts.record(*(fields[n] for n in names), pytest.fail)  # type: ignore[arg-type]
    assert caught.value.code == code


def test_the_constant_parts_are_checked_once_up_front() -> None:
    with pytest.raises(InvalidRecord) as caught:
        Drafts(SIGNER.public_key, PROJECT, "")
    assert caught.value.code == "field-too-short:artifacts.uri"
    with pytest.raises(InvalidRecord) as caught:
        Drafts(SIGNER.public_key, PROJECT[:31], URL)
    assert caught.value.code.endswith(":project")
    with pytest.raises(InvalidRecord) as caught:
        Drafts(b"short", PROJECT, URL)
    assert caught.value.code.endswith(":author")
    drafts = Drafts(SIGNER.public_key, PROJECT, URL)
    draft = drafts.draft(**GOOD)  # type: ignore[arg-type]
    with pytest.raises(InvalidRecord) as caught:
        drafts.signed(draft, b"\x00" * 63)
    assert caught.value.code == "bad-length:sig"
    with pytest.raises(InvalidRecord) as caught:
        drafts.record("code", "Fix", GOOD["digest"], ONE, 1, None, lambda m: b"\x00" * 63)  # type: ignore[arg-type]
    assert caught.value.code == "bad-length:sig"
