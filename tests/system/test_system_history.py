"""Issue 16 done-when, with the real CLI and two ``commons node run`` processes on loopback.

A maintainer's node imports a generated repository (with some commits signed with an SSH key)
in one command; every author appears in its ledger and shares. The author's own node syncs,
claims one of their handles with an SSH proof (it counts at once) and another without (it
counts once the maintainer confirms it), and the credit moves on both nodes.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from system_harness import Nodes, wait_connected, wait_same_views, wait_until

from bench.gitrepo import add_signed_commits, author_email, make_repo
from protocol.attest import email_handle

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

URL = "https://git.example/kernel.git"
COMMITS, AUTHORS = 30, 5
SIGNER = "signer@example.org"


def _repo(root: Path) -> tuple[Path, Path, Counter[str]]:
    """The generated history, three commits signed by SIGNER's SSH key on top, the key, and
    how many commits each handle is credited with."""
    repo = make_repo(root / "repo", COMMITS, AUTHORS)
    key = root / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    add_signed_commits(repo, key, [(SIGNER, SIGNER, True)] * 3)
    log = subprocess.run(
        ["git", "-C", str(repo), "log", "--format=%aE%n%(trailers:key=Co-authored-by,valueonly)"],
        capture_output=True,
        check=True,
    ).stdout
    credited: Counter[str] = Counter()
    for block in log.split(b"\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        handles = {email_handle(line.split(b"<")[-1].rstrip(b">")) for line in lines}
        credited.update(handles)
    return repo, key, credited


def test_import_then_claim_from_the_authors_own_node(nodes: Nodes, tmp_path: Path) -> None:
    repo, key, credited = _repo(tmp_path)
    maintainer = nodes.start("maintainer")
    author = nodes.start("author", maintainer)
    wait_connected(maintainer, author)
    pid = maintainer.cli("project", "create", "Kernel")["id"]

    imported = maintainer.cli("import-git", str(repo), "--project", pid, "--url", URL)
    assert imported["new"] == imported["commits"] == COMMITS + 3 + COMMITS // 50
    assert imported["skipped"] == []
    # Every author appears in the ledger and the shares, with their commit counts.
    shares = {s["contributor"]: s["contributions"] for s in maintainer.cli("shares", pid)}
    assert shares == dict(credited)
    assert {email_handle(author_email(a)) for a in range(AUTHORS)} < set(shares)
    ledger = maintainer.cli("ledger", pid)
    assert len(ledger) == imported["commits"]
    assert {h for e in ledger for h in e["on_behalf"]} == set(credited)
    # The author's node catches the history up.
    wait_same_views(pid, maintainer, author)

    # A claim proven by the key that signed the author's commits counts at once, everywhere.
    signer = email_handle(SIGNER.encode())
    proven = author.cli("claim", f"email:{SIGNER}", "--project", pid, "--ssh-key", str(key))
    assert proven["handle"] == signer
    me = author.peer_id
    views = wait_same_views(pid, maintainer, author)
    moved = {s["contributor"]: s["contributions"] for s in views["shares"]}
    assert moved[me] == credited[signer]
    assert signer not in moved
    listing = {c["id"]: c for c in maintainer.cli("claims", "--project", pid)}
    assert listing[proven["id"]]["status"] == "proven"

    # A claim without proof waits for the maintainer, who sees it pending and confirms it.
    other = email_handle(author_email(1))
    claim = author.cli("claim", f"email:{author_email(1).decode()}", "--project", pid)
    wait_until(lambda: maintainer.has_record(claim["id"]), what="the claim to reach the maintainer")
    pending = maintainer.cli("claims", "--project", pid)
    assert pending[0]["id"] == claim["id"]
    assert pending[0]["status"] == "pending"
    assert pending[0]["contributions"] == credited[other]
    maintainer.cli("confirm-claim", claim["id"][:12])
    views = wait_same_views(pid, maintainer, author)
    moved = {s["contributor"]: s["contributions"] for s in views["shares"]}
    both = [e for e in views["ledger"] if {signer, other} & set(e["on_behalf"])]
    assert moved[me] == len(both)
    assert signer not in moved
    assert other not in moved
    statuses = {c["id"]: c["status"] for c in author.cli("claims", "--project", pid)}
    assert statuses == {proven["id"]: "proven", claim["id"]: "confirmed"}
    # From their own node the author lists the commits recorded for an address they claimed,
    # now credited to them; and by their peer id, all the commits of both addresses.
    mine = author.cli("ledger", pid, "--author", f"email:{author_email(1).decode()}")
    assert {e["id"] for e in mine} == {e["id"] for e in both if other in e["on_behalf"]}
    assert all(me in e["credited"] for e in mine)
    assert {e["id"] for e in author.cli("ledger", pid, "--author", me)} == {e["id"] for e in both}
