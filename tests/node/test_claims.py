"""Claims proven by SSH-signed commits and the claims listing, in process (issue 16).

A repository whose commits are signed with an SSH key (``gpg.format=ssh``) is imported: the
key's fingerprint is recorded for a commit its author signed, never for one a committer signed
on someone else's behalf. The author proves their claim with ``commons claim --ssh-key``
(``ssh-keygen -Y sign``), and the credit moves without a maintainer; ``commons claims``, the
API route and the dashboard's project page list the claims with their status.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_fakes import FakeNode

from bench.gitrepo import add_signed_commits
from node import gitlog
from node.api.app import build_app
from node.cli.main import main
from node.home import Home
from node.store.sqlite import Store
from protocol.attest import email_handle
from protocol.record import decode_trusted
from protocol.signing import peer_id
from protocol.sshsig import fingerprint_text
from protocol.testing import RecordFactory

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

URL = "https://git.example/signed.git"
SIGNER = "signer@example.org"
OTHER = "other@example.org"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(list(argv)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ")
    assert "\n" not in err
    return err


def ssh_key(path: Path, kind: str = "ed25519") -> tuple[Path, str]:
    """A new SSH key without passphrase at ``path``, and its fingerprint as ssh-keygen lists it."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "test", "-f", str(path)], check=True
    )
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-f", f"{path}.pub"], capture_output=True, check=True, text=True
    )
    return path, listed.stdout.split()[1]


def signed_repo(path: Path, key: Path) -> dict[str, str]:
    """Three commits: one signed by its author, one signed by a committer for another
    author, one not signed. Their hashes by name."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    commits = [(SIGNER, SIGNER, True), (OTHER, SIGNER, True), (SIGNER, SIGNER, False)]
    return dict(
        zip(("own", "for-other", "plain"), add_signed_commits(path, key, commits), strict=True)
    )


@pytest.fixture
def setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """A maintainer's home with a project and the signed repository imported."""
    key, fingerprint = ssh_key(tmp_path / "id_ed25519")
    hashes = signed_repo(tmp_path / "repo", key)
    home = str(tmp_path / "maintainer")
    run(capsys, "init", "--home", home)
    pid = run(capsys, "project", "create", "Signed", "--home", home)["id"]
    run(capsys, "import-git", str(tmp_path / "repo"), "--project", pid, "--url", URL,
        "--home", home)  # fmt: skip
    author = str(tmp_path / "author")
    run(capsys, "init", "--home", author)
    copy_records(home, author)
    return {"home": home, "pid": pid, "author": author, "key": key, "fingerprint": fingerprint,
            "hashes": hashes, "tmp": tmp_path}  # fmt: skip


def copy_records(src: str, dst: str) -> None:
    with Store.open(Path(src) / "ledger.db") as a, Store.open(Path(dst) / "ledger.db") as b:
        b.add([decode_trusted(raw) for raw in a.iter_raw()], published=True)


def test_import_records_the_key_of_commits_their_author_signed(setting: dict[str, Any]) -> None:
    with Store.open(Path(setting["home"]) / "ledger.db") as store:
        records = [decode_trusted(raw) for raw in store.iter_raw()]
    keys = {
        r.body.artifacts[0].digest.removeprefix("git:"): r.body.ssh_key  # type: ignore[union-attr]
        for r in records
        if r.kind == "contribution"
    }
    hashes = setting["hashes"]
    assert keys[hashes["own"]] is not None
    assert fingerprint_text(keys[hashes["own"]]) == setting["fingerprint"]
    # Signed by the committer for another author: the key is the committer's, not recorded.
    assert keys[hashes["for-other"]] is None
    assert keys[hashes["plain"]] is None


def test_a_claim_proven_by_the_signing_key_moves_the_credit(
    setting: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    home, pid, author = setting["home"], setting["pid"], setting["author"]
    me = peer_id(Home(Path(author)).signing_key().public_key)
    handle = email_handle(SIGNER.encode())
    claim = run(capsys, "claim", f"email:{SIGNER}", "--project", pid, "--ssh-key",
                str(setting["key"]), "--home", author)  # fmt: skip
    assert claim["proof"] == setting["fingerprint"]
    # A claim of the other author's handle with the same key proves nothing: that key signed
    # no commit of theirs that its author signed.
    other = run(capsys, "claim", f"email:{OTHER}", "--project", pid, "--ssh-key",
                str(setting["key"]), "--home", author)  # fmt: skip
    copy_records(author, home)
    for where in (home, author):
        shares = {s["contributor"]: s for s in run(capsys, "shares", pid, "--home", where)}
        assert shares[me]["contributions"] == 2  # both commits authored by the signer
        assert handle not in shares
        assert email_handle(OTHER.encode()) in shares
    # The ledger's text says the signer's commits now credit the claimant, the other's its handle.
    assert main(["ledger", pid, "--home", home]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert sum(me[-8:] in row for row in rows) == 2
    assert sum(email_handle(OTHER.encode())[:18] in row for row in rows) == 1
    listing = {c["id"]: c for c in run(capsys, "claims", "--project", pid, "--home", home)}
    assert listing[claim["id"]]["status"] == "proven"
    assert listing[claim["id"]]["proof"] == setting["fingerprint"]
    assert listing[claim["id"]]["contributions"] == 2
    assert listing[claim["id"]]["person"] == me
    assert listing[other["id"]]["status"] == "pending"
    assert next(iter(listing)) == other["id"]  # what awaits a maintainer comes first
    # The text table names the statuses and says how to confirm.
    assert main(["claims", "--project", pid, "--home", home]) == 0
    text = capsys.readouterr().out
    assert "proven" in text
    assert "1 pending" in text
    assert "commons confirm-claim" in text


def test_ssh_key_refusals(setting: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    pid, author = setting["pid"], setting["author"]
    missing = fails(capsys, "claim", f"email:{SIGNER}", "--project", pid, "--ssh-key",
                    str(setting["tmp"] / "nothing"), "--home", author)  # fmt: skip
    assert "no such file" in missing
    rsa, _ = ssh_key(setting["tmp"] / "id_rsa", "rsa")
    wrong = fails(capsys, "claim", f"email:{SIGNER}", "--project", pid, "--ssh-key", str(rsa),
                  "--home", author)  # fmt: skip
    assert "only an Ed25519 SSH key" in wrong
    assert run(capsys, "claims", "--project", pid, "--home", author) == []
    assert main(["claims", "--project", pid, "--home", author]) == 0
    assert "no claims" in capsys.readouterr().out


@pytest.fixture
def node(tmp_path: Path) -> Iterator[FakeNode]:
    n = FakeNode(tmp_path / "home")
    yield n
    n.close()


@pytest.fixture
async def http(node: FakeNode) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(node))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:4711") as client:
        yield client


async def test_the_api_and_the_dashboard_list_the_claims(
    http: httpx.AsyncClient, node: FakeNode
) -> None:
    f = RecordFactory()
    p = f.project("alice", name="Kernel", maintainers=("bob",))
    handle, dave = email_handle(b"carol@example.org"), "forge:github.com/dave"
    pid = p.id.hex()
    node.add(p, f.attested("alice", p, (handle,), signed_by="carol-ssh"))
    node.add(f.attested("alice", p, (dave,)))
    assert (await http.get(f"/api/v1/projects/{pid}/claims")).json() == []
    before = (await http.get(f"/projects/{pid}")).text
    assert 'aria-labelledby="claims-h"' not in before
    # The ledger says whom each attested contribution credits: its handle, while unclaimed.
    credits = r'<span class="for">for</span> <a class="person" href="/people/([^"]+)">'
    assert sorted(re.findall(credits, before)) == sorted([handle, dave])
    # A handle has a page of its own: where its work was recorded, and who claims it.
    unclaimed = (await http.get(f"/people/{dave}")).text
    assert "Unclaimed here: 1 contribution," in unclaimed
    assert "Nobody has claimed it here." in unclaimed
    proven = f.claim("carol", p, handle, ssh="carol-ssh")
    pending = f.claim("mallory", p, dave)
    confirmed = f.claim("dave", p, dave)
    node.add(proven, pending, confirmed, f.confirm("bob", confirmed))
    listing = (await http.get(f"/api/v1/projects/{pid}/claims")).json()
    assert [(c["id"], c["status"]) for c in listing] == [
        (pending.id.hex(), "pending"),
        (confirmed.id.hex(), "confirmed"),
        (proven.id.hex(), "proven"),
    ]
    assert listing[1]["confirmed_by"] == [peer_id(f.pub("bob"))]
    page = (await http.get(f"/projects/{pid}")).text
    rows = dict(re.findall(r'<tr data-claim="([0-9a-f]{64})" data-status="([a-z]+)">', page))
    assert rows == {c["id"]: c["status"] for c in listing}
    assert "1 claim awaits a maintainer" in page
    # Proven and confirmed, the handles' credit goes to the people who claimed them.
    people = sorted([peer_id(f.pub("carol")), peer_id(f.pub("dave"))])
    assert sorted(re.findall(credits, page)) == people
    claimed = (await http.get(f"/people/{dave}")).text
    assert "Unclaimed here" not in claimed
    assert "counts for the person whose claim holds" in claimed
    shown = dict(re.findall(r'<tr data-claim="([0-9a-f]{64})" data-status="([a-z]+)">', claimed))
    assert shown == {pending.id.hex(): "pending", confirmed.id.hex(): "confirmed"}
    assert f'href="/people/{peer_id(f.pub("dave"))}"' in claimed
    # The API's ledger filtered by a handle lists the work recorded for it, claimed or not;
    # the address is hashed as the handle was.
    for who in (handle, "email:Carol@example.org", dave):
        answer = await http.get(f"/api/v1/projects/{pid}/ledger", params={"author": who})
        assert answer.status_code == 200
        (entry,) = answer.json()
        assert entry["on_behalf"] == [handle if who != dave else dave]
        assert entry["credited"] == [peer_id(f.pub("carol" if who != dave else "dave"))]
        assert answer.headers["X-Total-Count"] == "1"
    refused = await http.get(f"/api/v1/projects/{pid}/ledger", params={"author": "forge:x"})
    assert refused.status_code == 400
    assert "is not a handle" in refused.json()["error"]
    for bad in ("email:nothex", "forge:", "orcid:0000-0000-0000-0000"):
        refused = await http.get(f"/people/{bad}")
        assert refused.status_code == 404
        assert "is not a handle" in refused.text
    unknown = await http.get(f"/api/v1/projects/{'ab' * 32}/claims")
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("committer", "read"),
    [
        (b"a@x.org", True),
        (b" A@X.org ", True),  # addresses compare trimmed and ASCII-lowered
        (b"b@x.org", False),  # a committer who is not the author: their signature is theirs
    ],
)
def test_signatures_are_read_only_for_commits_their_author_committed(
    committer: bytes, read: bool
) -> None:
    fields = [b"f" * 40, b"", b"1704067200", b"a@x.org", b"", committer, b"subject"]
    commit = gitlog._commit(b"\x1f".join(fields), [])
    assert commit.self_committed is read
    assert commit.ssh_key is None  # read beside git log, by read_commits
