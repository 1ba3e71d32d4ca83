"""Hostile text against the real ``commons`` command: every command that prints peer text
escapes it, and every way of authoring refuses it with its validation code.

A home's store may hold records accepted before the format refused control characters (or
written by another implementation), so the test writes such records straight into a store
(``decode_trusted`` skips only the character rule) and then runs the commands on it.
"""

from __future__ import annotations

import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from system_harness import CliResult, NodeProcess, Nodes, wait_connected, wait_until

from node.store.sqlite import Store
from protocol import codec
from protocol.record import SIGNING_DOMAIN, decode_trusted
from protocol.signing import SigningKey
from protocol.testing import key

MALLORY = key("system-mallory")
EVE = key("system-eve")
CLEAR = "\x1b[2J\x1b[H"
BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))]


def _signed(signer: SigningKey, kind: str, body: dict[str, Any], project: bytes | None) -> bytes:
    """A record signed over exactly ``body``, whatever its text holds."""
    value: dict[str, Any] = {
        "v": 1,
        "kind": kind,
        "author": signer.public_key,
        "ts": int(time.time() * 1000) - 60_000,
        "body": body,
    }
    if project is not None:
        value["project"] = project
    sig = signer.sign(SIGNING_DOMAIN + codec.encode(value))
    return codec.encode({**value, "sig": sig})


def _hostile_records() -> list[bytes]:
    genesis = _signed(
        MALLORY,
        "project",
        {
            "name": f"Evil{CLEAR}\nfake-id  Fake project",
            "description": "About\x1b]0;pwned\x07 it\u202egnp.exe\r",
            "license": "MIT\x9b31m",
            "links": ["https://evil.example/\x1b[31m"],
            "tags": ["tag\u2066x", "bell\x07"],
        },
        None,
    )
    pid = decode_trusted(genesis).id
    contribution = _signed(
        EVE,
        "contribution",
        {
            "type": "code",
            "title": f"{CLEAR}Title\nforged row",
            "description": "line\x1b[1A\x1b[2K",
            "effort_minutes": 30,
            "artifacts": [{"uri": "https://a.example/\x1b[8m", "digest": "sha256:\u202e00"}],
        },
        pid,
    )
    cid = decode_trusted(contribution).id
    endorsement = _signed(
        MALLORY, "endorsement", {"target": cid, "weight": 3, "comment": "ok\x1b[5m\u2028"}, pid
    )
    profile = _signed(MALLORY, "profile", {"name": f"Mallory{CLEAR}", "about": "\x9b2J"}, None)
    return [genesis, contribution, endorsement, profile]


def _raw_unsafe(result: CliResult) -> list[str]:
    """Characters in the output that a terminal would act on (newline and tab aside)."""
    text = result.stdout + result.stderr
    return [
        ch
        for ch in text
        if ch not in "\n\t" and (unicodedata.category(ch) in ("Cc", "Zl", "Zp", "Cs") or ch in BIDI)
    ]


def _run_all(home: NodeProcess, calls: list[tuple[tuple[str, ...], int]]) -> list[CliResult]:
    """Independent text-mode CLI calls, a few at a time (each is a whole Python start-up)."""
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda c: home.run(*c[0], json=False, expect=c[1]), calls))


def test_every_command_escapes_hostile_text(nodes: Nodes, tmp_path: Path) -> None:
    alice = nodes.home("alice")
    raws = _hostile_records()
    records = [decode_trusted(raw) for raw in raws]
    with Store.open(alice.home / "ledger.db") as store:
        store.add(records, published=True)
    pid = records[0].id.hex()
    bundle = tmp_path / "hostile.bundle"
    offline: list[tuple[tuple[str, ...], int]] = [
        (("project", "list"), 0),
        (("project", "show", pid), 0),
        (("ledger", pid), 0),
        (("shares", pid), 0),
        (("status",), 0),
        *((("record", "show", r.id.hex()), 0) for r in records),
    ]
    results = _run_all(alice, offline)
    alice.run("export", str(bundle), json=False)
    bob = nodes.home("bob")
    results += _run_all(
        bob,
        [(("verify", str(bundle)), 1), (("import", str(bundle)), 1), (("project", "list"), 0)],
    )
    for result in results:
        assert not _raw_unsafe(result), result.describe()

    listing, show, ledger = results[0].stdout, results[1].stdout, results[2].stdout
    # Escaped where it stands, and one table row stays one line.
    assert "Evil\\x1b[2J\\x1b[H\\nfake-id  Fake project" in listing
    assert len(listing.splitlines()) == 3  # header, rule, the one project
    assert "\\x1b[2J\\x1b[HTitle\\nforged row" in ledger
    assert len(ledger.splitlines()) == 3
    assert "About\\x1b]0;pwned\\x07 it\\u202egnp.exe\\r" in show
    assert "MIT\\x9b31m" in show
    assert "tag\\u2066x, bell\\x07" in show
    # record show prints JSON: C0 controls as JSON escapes, the rest escaped for the terminal.
    shown = "".join(r.stdout for r in results[5:9])
    assert '"uri": "https://a.example/\\u001b[8m"' in shown
    assert '"about": "\\x9b2J"' in shown
    # Bob's node refuses every one of them, by its code, and says so without raw characters.
    verify, imported, bob_list = results[-3:]
    assert verify.stdout.count("invalid: control-char:") == 4, verify.describe()
    assert imported.stdout.count("rejected: control-char:") == 4, imported.describe()
    assert "no projects yet" in bob_list.stdout

    # The running nodes: peers, status, and the refusals in the node log.
    alice.start()
    bob.start(alice)
    wait_connected(alice, bob)
    bob.run("sync", alice.addr, json=False)
    # Offered by an honest older node, refused without blame: no ban, the session completes.
    wait_until(
        lambda: f"from {alice.peer_id} (first: control-char:" in bob.log(),
        what="bob to skip alice's old records",
    )
    assert "banning" not in bob.log()
    for result in _run_all(alice, [(("peers",), 0), (("status",), 0), (("ledger", pid), 0)]):
        assert not _raw_unsafe(result), result.describe()
    for node in (alice, bob):
        log = node.log()
        assert not [ch for ch in log if ch == "\x1b" or ch in BIDI or ch == "\x9b"], node.name
    assert not any(bob.has_record(r.id.hex()) for r in records)


def test_authoring_refuses_hostile_text(nodes: Nodes) -> None:
    alice = nodes.home("alice")
    # No node running: the CLI signs and stores itself.
    result = alice.run("project", "create", f"Evil{CLEAR}", json=False, expect=1)
    assert "control-char:name: name holds U+001B (escape) at character 5" in result.error_lines[0]
    assert not _raw_unsafe(result)
    result = alice.run("init", "--name", "Mal\u202elory", json=False, expect=1)
    assert "bidi-control:name" in result.error_lines[0]
    pid = alice.cli("project", "create", "Plain", "--description", "two\nlines\tand a tab")["id"]
    assert alice.cli("project", "show", pid)["description"] == "two\nlines\tand a tab"

    # Through the running node's API: the CLI, and HTTP directly.
    alice.start()
    result = alice.run(
        "contribute", pid, "--type", "code", "--title", "two\nlines", json=False, expect=1
    )
    assert "line-break:title" in result.error_lines[0]
    result = alice.run("project", "update", pid, "--tag", "t\x1b[31m", expect=1)
    assert "control-char:set.tags" in result.error_lines[0]
    response = alice.request("POST", "/api/v1/projects", auth=True, json={"name": f"E{CLEAR}"})
    assert response.status_code == 422
    assert response.json()["error"].startswith("control-char:name: ")
    hostile = _hostile_records()[0]
    response = alice.request(
        "POST",
        "/api/v1/records",
        auth=True,
        content=hostile,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 422
    assert response.json()["error"].startswith("control-char:name: ")
    assert [p["name"] for p in alice.get("/api/v1/projects")] == ["Plain"]
