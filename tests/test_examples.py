"""Every script in examples/ runs as docs/EMBEDDING.md says, as a separate process.

The examples are what an embedder copies first, so each is run here and its output checked
against what the library should have done; the submit example talks to a real node started
with the system tests' harness. A new example without a test here fails
``test_every_example_is_run``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from protocol import encode_bundle, peer_id, seed_to_pem
from protocol.testing import RecordFactory, key

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(ROOT / "tests" / "system"))
from system_harness import Nodes  # noqa: E402  (the harness is a module of tests/system)

TESTED = {
    "sign_and_verify.py",
    "build_view.py",
    "negentropy_socketpair.py",
    "submit_to_node.py",
}


def run_example(name: str, *args: str, cwd: Path) -> str:
    """Run an example with this interpreter; its stdout. It must exit 0 without a traceback."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COMMONS_HOME")}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def test_every_example_is_run() -> None:
    assert {p.name for p in EXAMPLES.iterdir()} == TESTED


def test_sign_and_verify_with_a_new_key(tmp_path: Path) -> None:
    out = run_example("sign_and_verify.py", cwd=tmp_path)
    signer = re.search(r"^signing as (12D3KooW\w+)$", out, re.M)
    assert signer is not None, out
    assert f"verified: a contribution by {signer[1]}" in out
    assert "refused a tampered copy: bad-signature" in out
    assert "refused a record from the future: future-timestamp" in out


def test_sign_and_verify_with_a_key_file(tmp_path: Path) -> None:
    pem = tmp_path / "identity.key"
    pem.write_bytes(seed_to_pem(key("alice").seed))
    out = run_example("sign_and_verify.py", str(pem), cwd=tmp_path)
    assert out.startswith(f"signing as {key('alice').peer_id}\n")
    assert f"verified: a contribution by {key('alice').peer_id}" in out


def _share(out: str, who: str) -> str:
    found = re.search(rf"^  {re.escape(who)}[^:]*: ([\d.]+%)", out, re.M)
    assert found is not None, (who, out)
    return found[1]


def test_build_view_of_its_own_demo_ledger(tmp_path: Path) -> None:
    out = run_example("build_view.py", cwd=tmp_path)
    assert "9 valid records, 0 refused" in out
    # Bob: 360 min x weight 3 = 1080; Dave and Erin split 120 min x weight 1: 60 each.
    assert _share(out, "Bob") == "90.0%"
    assert _share(out, "Dave") == "5.0%"
    # Erin published no profile, so she is shown by her full peer id.
    assert re.search(r"^  12D3KooW\w+: 5\.0%", out, re.M), out
    assert "'Chassis CAD' by Bob" in out


def test_build_view_reads_a_bundle_validates_it_and_stops_at_damage(tmp_path: Path) -> None:
    f = RecordFactory()
    project = f.project("alice", name="Bundled")
    kept = f.contribution("bob", project, title="Kept", minutes=60)
    dropped = f.contribution("carol", project, title="Dropped", minutes=30)
    forged = bytearray(f.contribution("dave", project, title="Forged", minutes=10).raw)
    forged[forged.index(b"Forged")] ^= 0x20
    records = [
        f.profile("bob", name="Bob"),
        project,
        kept,
        dropped,
        f.endorsement("alice", kept, weight=2),
        f.endorsement("alice", dropped),
        f.retraction("carol", dropped),
    ]
    bundle = encode_bundle([r.raw for r in records] + [bytes(forged)])
    path = tmp_path / "export.bundle"
    # A file cut short inside a record after them: what came before still counts.
    path.write_bytes(bundle + encode_bundle([kept.raw])[len(b"commons-bundle-v1\n") :][:20])

    out = run_example("build_view.py", str(path), cwd=tmp_path)
    assert "refused record 8: bad-signature" in out
    assert "the bundle is damaged, keeping the records before it: truncated" in out
    assert "7 valid records, 1 refused" in out
    assert "project Bundled" in out
    assert "'Kept' by Bob" in out
    assert "Dropped" not in out  # retracted by its author
    assert _share(out, "Bob") == "100.0%"
    assert f"maintained by {peer_id(f.pub('alice'))}" in out


def test_negentropy_over_a_socketpair(tmp_path: Path) -> None:
    out = run_example("negentropy_socketpair.py", "3000", cwd=tmp_path)
    assert "we hold 2000 records, the peer holds 2000" in out
    found = re.search(r"reconciled in (\d+) round trips", out)
    assert found is not None, out
    # 8 KiB frames cannot carry 2000 ids at once: the session needs several rounds.
    assert int(found[1]) > 1
    assert "we have 1000 the peer lacks, and need 1000" in out
    assert "both now hold the same 3000 records" in out


def test_submit_to_a_running_node(tmp_path: Path) -> None:
    nodes = Nodes(tmp_path / "nodes")
    try:
        node = nodes.start("node")
        pem = tmp_path / "author.key"
        pem.write_bytes(seed_to_pem(key("outside").seed))
        out = run_example(
            "submit_to_node.py", "--home", str(node.home), "--key", str(pem), cwd=tmp_path
        )
        author = key("outside").peer_id
        assert out.startswith(f"signing as {author}\n")
        ids = dict(
            re.findall(r"^submitted (project|contribution) ([0-9a-f]{64}) \(201\)$", out, re.M)
        )
        assert set(ids) == {"project", "contribution"}, out
        assert "submitted it again: 200, already held" in out
        assert "a forged record: 422, bad-signature" in out
        # The node holds both, counts the contribution, and stored nothing forged.
        assert node.has_record(ids["project"])
        assert node.has_record(ids["contribution"])
        ledger = node.get(f"/api/v1/projects/{ids['project']}/ledger")
        assert [(e["id"], e["author"]) for e in ledger] == [(ids["contribution"], author)]
        # Only those two: the forged one was not stored (and init without --name signs none).
        assert node.status()["records"] == 2
    finally:
        nodes.shutdown()
    assert not nodes.problems()
