"""Peer text that a terminal would act on: escaped on output, refused on input, and records
held from before the format refused it neither break reconciliation nor get their peer banned.
"""

from __future__ import annotations

import json
import logging
import sys
import unicodedata
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from test_node import addr, running, wait_until

from node.authoring import AuthoringError, draft
from node.logformat import TextFormatter
from node.store.sqlite import Store
from node.textout import Progress, table, terminal_safe
from protocol.errors import InvalidRecord
from protocol.record import decode_trusted
from protocol.testing import key
from protocol.validation import parse_record

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "records.json"
BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]


def unsafe(ch: str, *, multiline: bool) -> bool:
    """What no terminal output may carry raw: controls, separators, bidi controls, surrogates
    (``multiline`` output may carry newline and tab)."""
    if multiline and ch in "\n\t":
        return False
    return unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs") or ch in BIDI


hostile_text = st.text(
    alphabet=st.sampled_from([chr(c) for c in range(0xA0)] + BIDI + ["\u2028", "\ud800", "é"])
    | st.characters(),
    max_size=40,
)


@given(text=hostile_text, multiline=st.booleans())
def test_terminal_safe_leaves_nothing_a_terminal_acts_on(text: str, multiline: bool) -> None:
    out = terminal_safe(text, multiline=multiline)
    assert not [ch for ch in out if unsafe(ch, multiline=multiline)], repr(out)
    out.encode("utf-8")  # printable in a UTF-8 locale: no lone surrogate left
    if not any(unsafe(ch, multiline=multiline) for ch in text):
        assert out == text  # ordinary text, including non-Latin scripts, is untouched


def test_terminal_safe_escapes_visibly() -> None:
    assert terminal_safe("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert terminal_safe("x\u202eyz\u2069") == "x\\u202eyz\\u2069"
    assert terminal_safe("one\ntwo\tthree\r") == "one\\ntwo\\tthree\\r"
    assert terminal_safe("one\ntwo\tthree\r", multiline=True) == "one\ntwo\tthree\\r"
    assert terminal_safe("\x9b31m\x7f\x00") == "\\x9b31m\\x7f\\x00"
    assert terminal_safe("Zürich 自転車 ✓ \u200e") == "Zürich 自転車 ✓ \u200e"


def test_tables_keep_one_line_per_row() -> None:
    text = table(["ID", "NAME"], [("abc", "Evil\n\x1b[2Jfake  row"), ("def", "Fine")])
    lines = text.splitlines()
    assert len(lines) == 4  # header, rule, two rows
    assert "\x1b" not in text
    assert "Evil\\n\\x1b[2Jfake  row" in lines[2]


def test_progress_label_is_escaped() -> None:
    class Terminal:
        def __init__(self) -> None:
            self.written = ""

        def isatty(self) -> bool:
            return True

        def write(self, text: str) -> None:
            self.written += text

        def flush(self) -> None:
            pass

    stream = Terminal()
    progress = Progress("importing \x1b]0;pwned\x07.bundle", total=1, stream=stream)  # type: ignore[arg-type]
    progress.advance()
    progress.finish()
    # The bar redraws itself with CR; nothing else a terminal acts on is written.
    assert not [ch for ch in stream.written if ch != "\r" and unsafe(ch, multiline=True)]
    assert "importing \\x1b]0;pwned\\x07.bundle" in stream.written


def test_text_log_lines_escape_peer_text() -> None:
    formatter = TextFormatter("%(levelname)s %(name)s: %(message)s")
    record = logging.LogRecord(
        "node.runtime", logging.INFO, __file__, 1, "refused %s", ("\x1b[2J\nfake line",), None
    )
    assert formatter.format(record) == "INFO node.runtime: refused \\x1b[2J\\nfake line"
    try:
        raise ValueError("peer said \x1b]0;title\x07")
    except ValueError:
        record.exc_info = sys.exc_info()
    lines = formatter.format(record).splitlines()
    assert len(lines) > 2  # the traceback keeps its lines ...
    assert not [ch for line in lines for ch in line if unsafe(ch, multiline=False)]
    assert "peer said \\x1b]0;title\\x07" in lines[-1]  # ... but not their control characters


@pytest.mark.parametrize(
    ("action", "fields", "code"),
    [
        ("project", {"name": "\x1b[2JOwned"}, "control-char:name"),
        ("project", {"name": "P", "tags": ["ok", "t\x9b"]}, "control-char:tags"),
        ("project", {"name": "P", "description": "a\r\nb"}, "line-break:description"),
        ("profile", {"name": "Mallory\u202e"}, "bidi-control:name"),
        ("profile", {"name": "M", "about": "line\nand\ttab\x07"}, "control-char:about"),
    ],
)
def test_authoring_refuses_hostile_text_with_its_code(
    store: Store, action: str, fields: dict[str, object], code: str
) -> None:
    with pytest.raises(AuthoringError) as info:
        draft(action, fields, store=store, author=key("alice").public_key)
    assert str(info.value).startswith(f"{code}: ")
    assert "\x1b" not in str(info.value)


def _legacy_records() -> list[bytes]:
    """Meta records of the test vectors that are refused only for their characters: a node
    that stored them before the rule (as the store may) holds exactly such bytes."""
    vectors = json.loads(VECTORS.read_text())["invalid"]
    raws = [
        bytes.fromhex(v["hex"])
        for v in vectors
        if v["error"] in ("control-char:name", "bidi-control:name")
    ]
    assert {decode_trusted(raw).kind for raw in raws} == {"project", "profile"}
    return raws


async def test_records_held_from_before_the_rule_are_refused_without_blame(
    tmp_path: Path,
) -> None:
    legacy = [decode_trusted(raw) for raw in _legacy_records()]
    with trio.fail_after(40):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(running(tmp_path, "a"))
            a.store.add(legacy, published=True)
            good = await a.author("project", {"name": "Plain"})
            b = await stack.enter_async_context(running(tmp_path, "b", bootstrap=[addr(a)]))
            await wait_until(lambda: len(b.transport.connected_peers()) == 1)
            result = await b.sync_now()
            assert result["peers"] == 1  # the session completed, the peer was not blamed
            await wait_until(lambda: b.store.has(good.id))
            assert not any(b.store.has(r.id) for r in legacy)
            assert a.peer_id not in b.transport.banned_peers()
            refused = b.metrics.get(
                "commons_ingest_rejected_total", source="sync", reason="control-char"
            )
            assert refused >= 1
            # a still reads its own records back (its views, its export): escaping them is
            # the job of every text output.
            project = next(r for r in legacy if r.kind == "project")
            assert project.body.name in {p["name"] for p in a.views.project_list()}  # type: ignore[union-attr]
            with pytest.raises(InvalidRecord) as info:
                parse_record(project.raw, now_ms=None)
            assert info.value.code == "control-char:name"
