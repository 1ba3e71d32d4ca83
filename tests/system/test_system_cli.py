"""The ``commons`` command from outside: exit codes, error lines, bundles."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from system_harness import CliResult, NodeProcess, Nodes, run_cli

from protocol.bundle import HEADER, BundleWriter, encode_bundle, encode_varint
from protocol.record import Record
from protocol.testing import RecordFactory

#: The index of the record whose signature is damaged in the test bundle.
BAD_INDEX = 2


def _records() -> list[Record]:
    factory = RecordFactory(now_ms=int(time.time() * 1000) - 60_000)
    project = factory.project("cli-maintainer", name="Bundled", maintainers=("cli-reviewer",))
    first = factory.contribution("cli-contributor", project, title="First", minutes=30)
    second = factory.contribution("cli-contributor", project, title="Second", minutes=60)
    third = factory.contribution(
        "cli-other", project, title="Third", minutes=10, coauthors=("cli-contributor",)
    )
    endorsement = factory.endorsement("cli-reviewer", first, weight=2)
    return [project, first, second, third, endorsement]


def _corrupted_bundle(path: Path) -> list[Record]:
    """A bundle of five good records but one whose signature has a flipped bit."""
    records = _records()
    raws = [r.raw for r in records]
    bad = bytearray(raws[BAD_INDEX])
    at = bad.find(records[BAD_INDEX].sig)
    assert at > 0
    bad[at + 10] ^= 0x40
    raws[BAD_INDEX] = bytes(bad)
    path.write_bytes(encode_bundle(raws))
    return records


def _run_all(home: NodeProcess, cases: list[tuple[str, ...]], expect: int) -> list[CliResult]:
    """Run independent CLI calls a few at a time (each is a whole Python start-up); every other
    one with ``--json``. The harness checks the exit code, the single ``error:`` line and that
    no traceback was printed."""
    with ThreadPoolExecutor(4) as pool:
        return list(
            pool.map(
                lambda i: home.run(*cases[i], json=i % 2 == 1, expect=expect), range(len(cases))
            )
        )


@pytest.mark.slow
def test_cli_errors(nodes: Nodes) -> None:
    home = nodes.home("alice")
    pid = home.cli("project", "create", "Errors")["id"]
    count = home.cli("status")["records"]
    assert count == 1

    # Wrong usage: exit 2, one error line, nothing on stdout.
    usage = [
        (),
        ("frobnicate",),
        ("contribute",),
        ("contribute", pid, "--type", "code"),
        ("contribute", pid, "--type", "code", "--title", "t", "--minutes", "ten"),
        ("contribute", pid, "--type", "code", "--title", "t", "--minutes", "1", "--hours", "1"),
        ("ledger", pid, "--limit", "many"),
        ("endorse", "abcdef12", "--weight"),
        ("project",),
        ("project", "create"),
        ("node", "run", "--log-level", "loud"),
        ("status", "--bogus"),
    ]
    for result in _run_all(home, usage, expect=2):
        assert result.stdout == "", result.describe()

    # Failed operations: exit 1, one error line, no traceback.
    failures = [
        ("ledger", "deadbeefdeadbeef"),
        ("shares", "deadbeefdeadbeef"),
        ("project", "show", "deadbeefdeadbeef"),
        ("record", "show", "deadbeefdeadbeef"),
        ("ledger", "xyz"),
        ("ledger", pid, "--limit", "-1"),
        ("peers",),
        ("sync",),
        ("contribute", "deadbeefdeadbeef", "--type", "code", "--title", "t"),
        ("contribute", pid, "--type", "code", "--title", "t", "--minutes", "-5"),
        ("contribute", pid, "--type", "code", "--title", "t", "--coauthor", "not-a-peer"),
        ("endorse", pid),  # a project is not a contribution
        ("endorse", "deadbeefdeadbeef"),
        ("retract", "deadbeefdeadbeef"),
        ("project", "create", "n" * 101),
        ("project", "update", pid),  # nothing to update
        ("import", str(nodes.root / "missing.bundle")),
        ("verify", str(nodes.root / "missing.bundle")),
    ]
    for result in _run_all(home, failures, expect=1):
        assert result.error_lines[0].startswith("error: "), result.describe()
    assert home.cli("status")["records"] == count
    nowhere = nodes.root / "never-initialised"
    result = run_cli(nowhere, "status", expect=1, log=nodes.cli_log)
    assert "init" in result.error_lines[0]
    assert not (nowhere / "identity.key").exists()

    # A bundle with one damaged record: verify reports it and stores nothing ...
    bundle = nodes.root / "damaged.bundle"
    records = _corrupted_bundle(bundle)
    verified = home.run("verify", str(bundle), expect=1)
    report = verified.value
    assert set(report) == {"accepted", "duplicates", "rejected"}
    assert (report["accepted"], report["duplicates"]) == (4, 0)
    assert [r["index"] for r in report["rejected"]] == [BAD_INDEX]
    assert "signature" in report["rejected"][0]["error"]
    assert len(verified.error_lines) == 1
    assert home.cli("status")["records"] == count
    text = home.run("verify", str(bundle), json=False, expect=1)
    assert f"record {BAD_INDEX}" in text.stdout

    # ... import stores the four good ones and reports exactly the damaged one.
    imported = home.run("import", str(bundle), expect=1)
    assert imported.value == report
    assert home.cli("status")["records"] == count + 4
    held = {r.id.hex() for r in records} - {records[BAD_INDEX].id.hex()}
    for rid in held:
        assert home.cli("record", "show", rid)["id"] == rid
    home.run("record", "show", records[BAD_INDEX].id.hex(), expect=1)
    again = home.run("import", str(bundle), expect=1).value
    assert (again["accepted"], again["duplicates"]) == (0, 4)
    assert [r["index"] for r in again["rejected"]] == [BAD_INDEX]

    # The views of the imported project: the damaged contribution is absent.
    ledger = home.cli("ledger", records[0].id.hex())
    assert {e["title"] for e in ledger} == {"First", "Third"}


@pytest.mark.parametrize("truncate", [7, 1])
def test_import_damaged_framing(nodes: Nodes, truncate: int) -> None:
    """A bundle cut short: the complete records before the damage are kept, the rest reported."""
    home = nodes.home("alice")
    count = home.cli("status")["records"]
    records = _records()
    data = encode_bundle([r.raw for r in records])[:-truncate]
    bundle = nodes.root / "cut.bundle"
    bundle.write_bytes(data)
    report = home.run("import", str(bundle), expect=1).value
    assert report["accepted"] == 4
    assert [r["index"] for r in report["rejected"]] == [4]
    assert home.cli("status")["records"] == count + 4


def test_import_and_verify_go_on_past_an_oversized_record(nodes: Nodes) -> None:
    """A record whose length prefix is well-formed but over 65,536 bytes is refused by its
    index, and every record after it is still read: one of 3 MB (read past in several 1 MiB
    chunks of the file) and one of 70 KB at the end, beside a forged record."""
    home = nodes.home("carol")
    count = home.cli("status")["records"]
    records = _records()
    forged = bytearray(records[1].raw)
    forged[forged.find(records[1].sig) + 10] ^= 0x40
    frames = [BundleWriter.frame(r.raw) for r in records]
    frames[1] = BundleWriter.frame(bytes(forged))
    frames.insert(2, encode_varint(3_000_000) + bytes(3_000_000))
    frames.append(encode_varint(70_000) + bytes(70_000))
    bundle = nodes.root / "oversized.bundle"
    bundle.write_bytes(HEADER + b"".join(frames))

    verified = home.run("verify", str(bundle), expect=1)
    report = verified.value
    assert (report["accepted"], report["duplicates"]) == (4, 0)
    assert [r["index"] for r in report["rejected"]] == [1, 2, 6]
    assert "signature" in report["rejected"][0]["error"]
    for refusal, size in zip(report["rejected"][1:], (3_000_000, 70_000), strict=True):
        assert refusal["error"].startswith(f"record-too-large: a record of {size} bytes")
    assert "record 2: invalid: record-too-large" in home.cli(
        "verify", str(bundle), json=False, expect=1
    )
    assert home.cli("status")["records"] == count

    imported = home.run("import", str(bundle), expect=1)
    assert imported.value == report
    assert home.cli("status")["records"] == count + 4
    for r in (records[0], *records[2:]):  # the records after the big one were stored
        assert home.cli("record", "show", r.id.hex())["id"] == r.id.hex()


def test_export_import_roundtrip(nodes: Nodes) -> None:
    a = nodes.start("alice", display_name="Alice")
    b = nodes.home("bob", display_name="Bob")  # never runs a node

    pid = a.cli("project", "create", "Roundtrip", "--link", "https://example.org/rt")["id"]
    only_project = nodes.root / "project.bundle"
    assert a.cli("export", str(only_project), "--project", pid[:10]) == {"records": 1}
    assert b.cli("import", str(only_project))["accepted"] == 1

    # Bob contributes offline (coauthored with Alice); his records reach Alice by bundle.
    mine = b.cli("contribute", pid, "--type", "design", "--title", "Drawings", "--minutes", "120")
    ours = b.cli(
        "contribute",
        pid,
        "--type",
        "code",
        "--title",
        "Pairing",
        "--minutes",
        "60",
        "--coauthor",
        a.peer_id,
    )
    from_bob = nodes.root / "bob.bundle"
    assert b.cli("export", str(from_bob))["records"] == 4  # profile, project, 2 contributions
    imported = a.cli("import", str(from_bob))  # into the running node's store
    assert imported == {"accepted": 3, "duplicates": 1, "rejected": []}
    a.cli("endorse", mine["id"], "--weight", "2")
    # Alice is a coauthor: her endorsement would not count, so it takes --force.
    a.run("endorse", ours["id"], "--weight", "5", expect=1)
    forced = a.cli("endorse", ours["id"], "--weight", "5", "--force")
    assert forced["no_effect"] == "you are a coauthor of the contribution"
    a.cli("contribute", pid, "--type", "docs", "--title", "Manual", "--hours", "1")

    full = nodes.root / "alice.bundle"
    exported = a.cli("export", str(full))
    total = a.cli("status")["records"]
    assert exported == {"records": total}
    assert total == 8  # 2 profiles, project, 3 contributions, 2 endorsements

    e = nodes.home("erin")
    assert e.cli("verify", str(full)) == {"accepted": total, "duplicates": 0, "rejected": []}
    assert e.cli("status")["records"] == 0
    assert e.cli("import", str(full)) == {"accepted": total, "duplicates": 0, "rejected": []}
    assert e.cli("status")["records"] == total
    assert e.cli("import", str(full)) == {"accepted": 0, "duplicates": total, "rejected": []}

    views = a.cli_views(pid)
    assert e.cli_views(pid) == views
    assert e.cli("project", "list") == a.cli("project", "list")
    shares = {s["contributor"]: s for s in views["shares"]}
    assert shares[b.peer_id]["endorsed_value"] == 240
    assert shares[b.peer_id]["claimed_minutes"] == 150
    assert shares[b.peer_id]["share"] == 1
    assert shares[a.peer_id]["claimed_minutes"] == 90
    assert shares[a.peer_id]["endorsed_value"] == 0
    assert views["shares"][0]["contributor"] == b.peer_id
    assert sorted(e["title"] for e in views["ledger"]) == ["Drawings", "Manual", "Pairing"]
    assert e.cli("record", "show", mine["id"], "--raw") == a.cli(
        "record", "show", mine["id"], "--raw"
    )
