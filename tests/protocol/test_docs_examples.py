"""Every example of bytes in ``docs/`` is checked byte for byte against ``protocol``.

An implementer in another language checks their code against the hex in
``docs/RECORD-FORMAT.md``, so that hex must be right, and must stay right when the code changes.
Each fenced block whose info string is ``hex ROLE`` (or ``text ROLE``) is parsed here and
checked for what its role claims. Text after ``#`` on a line is a comment for the reader; only
the hex before it counts. The roles:

- ``hex record``: a complete record that validates (signature included) and is one of the
  valid vectors of ``tests/vectors/records.json``. The roles below refer to the latest record
  block above them in the same document.
- ``hex signing-input``, ``hex id``: that record's signing input and record id.
- ``hex seed``: its author's private seed: it gives the author's key and re-signs to ``sig``.
- ``hex peer-id-bytes``, ``text peer-id``: its author as an identity multihash and as text.
- ``hex bundle-framing``: the bytes a bundle holding only that record puts before it.
- ``hex ints``: lines ``VALUE = HEX``, each integer and its canonical encoding.
- ``hex refused``: lines ``HEX -> CODE``, each input the decoder refuses with that code.

A ``hex`` block with any other role fails, so no example can slip in unchecked.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from protocol import codec
from protocol.bundle import encode_bundle, iter_bundle
from protocol.errors import InvalidRecord
from protocol.record import SIGNING_DOMAIN, Record
from protocol.signing import PEER_ID_PREFIX, SigningKey, b58decode, peer_id
from protocol.validation import parse_record

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
RECORD_FORMAT = ROOT / "docs/RECORD-FORMAT.md"
RECORDS_JSON = ROOT / "tests" / "vectors" / "records.json"

#: Roles whose block is checked against the latest ``hex record`` block above it.
RECORD_ROLES = frozenset(
    {"signing-input", "id", "seed", "peer-id-bytes", "peer-id", "bundle-framing"}
)
HEX_ROLES = frozenset({"record", "ints", "refused"} | RECORD_ROLES) - {"peer-id"}
TEXT_ROLES = frozenset({"peer-id"})


@dataclass(frozen=True)
class Block:
    """One fenced block of a document, with the record it refers to (if any)."""

    doc: str
    line: int
    lang: str
    role: str
    body: str
    record_hex: str | None

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}:{self.role}"


def read_blocks(path: Path) -> list[Block]:
    """The ``hex``/``text`` blocks of a markdown file that carry a role, in order."""
    blocks: list[Block] = []
    record_hex: str | None = None
    info: list[str] | None = None
    start = 0
    lines: list[str] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if info is None:
            if stripped.startswith("```"):
                info = stripped[3:].split()
                start = number
                lines = []
            continue
        if stripped != "```":
            lines.append(line)
            continue
        lang, role = [*info, "", ""][:2]
        info = None
        if lang == "hex" or (lang == "text" and role):
            body = "\n".join(lines)
            block = Block(path.name, start, lang, role, body, record_hex)
            if lang == "hex" and role == "record":
                record_hex = hex_of(body).hex()
            blocks.append(block)
    return blocks


def without_comment(line: str) -> str:
    return line.split("#", 1)[0].strip()


def hex_of(text: str) -> bytes:
    """The bytes of an annotated hex block: comments dropped, whitespace ignored."""
    digits = "".join("".join(without_comment(line).split()) for line in text.splitlines())
    return bytes.fromhex(digits)


@cache
def all_blocks() -> tuple[Block, ...]:
    return tuple(block for doc in DOCS for block in read_blocks(doc))


@cache
def valid_vector_hexes() -> frozenset[str]:
    data = json.loads(RECORDS_JSON.read_text(encoding="utf-8"))
    return frozenset(vector["hex"] for vector in data["valid"])


def record_of(block: Block) -> Record:
    assert block.record_hex is not None, f"{block.name}: no `hex record` block above it"
    return parse_record(bytes.fromhex(block.record_hex), now_ms=None)


def blocks(*roles: str) -> list[Block]:
    return [b for b in all_blocks() if b.role in roles]


def block_ids(items: list[Block]) -> list[str]:
    return [b.name for b in items]


# --------------------------------------------------------------------------------------------


def test_the_record_format_shows_every_kind_of_example() -> None:
    shown = {b.role for b in read_blocks(RECORD_FORMAT)}
    assert shown >= HEX_ROLES | TEXT_ROLES


@pytest.mark.parametrize("block", all_blocks(), ids=block_ids(list(all_blocks())))
def test_every_block_has_a_known_role(block: Block) -> None:
    known = HEX_ROLES if block.lang == "hex" else TEXT_ROLES
    assert block.role in known, (
        f"{block.name}: a `{block.lang}` block needs one of the roles {sorted(known)}, "
        "so that this test checks it"
    )


@pytest.mark.parametrize("block", blocks("record"), ids=block_ids(blocks("record")))
def test_record_example_is_a_valid_vector(block: Block) -> None:
    raw = hex_of(block.body)
    record = parse_record(raw, now_ms=None)  # every rule and the strict signature
    assert record.raw == raw
    assert raw.hex() in valid_vector_hexes(), f"{block.name} is not a valid vector of records.json"


@pytest.mark.parametrize("block", blocks(*RECORD_ROLES), ids=block_ids(blocks(*RECORD_ROLES)))
def test_example_about_the_record_above(block: Block) -> None:
    record = record_of(block)
    if block.role == "peer-id":
        assert block.body.strip() == peer_id(record.author)
        return
    data = hex_of(block.body)
    if block.role == "signing-input":
        assert data == record.signing_input()
        assert data == SIGNING_DOMAIN + codec.encode(record.unsigned_value())
    elif block.role == "id":
        assert data == record.id == hashlib.sha256(record.raw).digest()
    elif block.role == "seed":
        key = SigningKey(data)
        assert key.public_key == record.author
        assert key.sign(record.signing_input()) == record.sig
    elif block.role == "peer-id-bytes":
        assert data == PEER_ID_PREFIX + record.author
        assert b58decode(peer_id(record.author)) == data
    else:
        assert block.role == "bundle-framing"
        assert encode_bundle([record.raw]) == data + record.raw
        assert list(iter_bundle([data + record.raw])) == [record.raw]


def lines_of(role: str, separator: str) -> list[tuple[str, str, str]]:
    """``(left, right, where)`` for every line of every block of ``role``."""
    out = []
    for block in blocks(role):
        for offset, line in enumerate(block.body.splitlines(), 1):
            text = without_comment(line)
            if text:
                left, sep, right = text.partition(separator)
                where = f"{block.doc}:{block.line + offset}"
                assert sep, f"{where}: expected `{separator}` in {line!r}"
                out.append((left.strip(), right.strip(), where))
    return out


@pytest.mark.parametrize(("value", "encoded", "where"), lines_of("ints", "="))
def test_integer_example(value: str, encoded: str, where: str) -> None:
    data = bytes.fromhex(encoded)
    assert codec.encode(int(value)) == data, where
    assert codec.decode(data) == int(value), where


@pytest.mark.parametrize(("encoded", "code", "where"), lines_of("refused", "->"))
def test_refused_example(encoded: str, code: str, where: str) -> None:
    with pytest.raises(InvalidRecord) as refused:
        codec.decode(bytes.fromhex(encoded))
    assert refused.value.code == code, where


def test_the_parser_reads_roles_comments_and_the_record_above(tmp_path: Path) -> None:
    doc = tmp_path / "example.md"
    doc.write_text(
        "```hex record\n0a 0b  # two bytes\n0c\n```\n"
        "```python\nprint('ignored')\n```\n"
        "```hex id\nff\n```\n",
        encoding="utf-8",
    )
    found = read_blocks(doc)
    assert [(b.role, b.line) for b in found] == [("record", 1), ("id", 8)]
    assert hex_of(found[0].body) == bytes.fromhex("0a0b0c")
    assert found[1].record_hex == "0a0b0c"
