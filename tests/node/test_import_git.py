"""``commons import-git``, ``claim`` and ``confirm-claim``, in process.

A generated repository (bench/gitrepo.py: merges, a rename, a mailmap, co-author trailers,
Latin-1 author names, an empty commit) and this repository's own history are imported; a
second import stores nothing; a claim confirmed by a maintainer moves the handle's credit to
the claimant's key, offline and on two real nodes after they sync.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
import trio

from bench.gitrepo import author_email, make_repo
from node import gitlog
from node.cli import history
from node.cli.main import main
from node.gitlog import draft_commit, map_coauthors, read_commits, sign_commit
from node.home import Home
from node.runtime import NodeOptions, open_node
from node.store.sqlite import Store
from protocol.attest import email_handle
from protocol.drafts import Drafts
from protocol.record import decode_trusted
from protocol.signing import peer_id
from protocol.testing import key

REPO = Path(__file__).resolve().parents[2]
URL = "https://git.example/generated.git"
COMMITS, AUTHORS = 60, 7


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    """Run a command that must succeed and return its ``--json`` output."""
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run a command that must fail with one ``error:`` line; return that line."""
    assert main(list(argv)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ")
    assert "\n" not in err
    return err


def new_home(root: Path, name: str, capsys: pytest.CaptureFixture[str]) -> str:
    home = str(root / name)
    run(capsys, "init", "--home", home)
    return home


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", COMMITS, AUTHORS)


@pytest.fixture
def maintained(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """A home and the id of a project it maintains."""
    home = new_home(tmp_path, "maintainer", capsys)
    pid = run(capsys, "project", "create", "Generated", "--home", home)["id"]
    return home, pid


def test_import_a_generated_history(
    repo: Path, maintained: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    home, pid = maintained
    args = ("import-git", str(repo), "--project", pid, "--url", URL, "--home", home)
    dry = run(capsys, *args, "--dry-run")
    assert (dry["commits"], dry["new"], dry["held"]) == (COMMITS + 1, COMMITS + 1, 0)
    assert run(capsys, "ledger", pid, "--home", home) == []  # a dry run stores nothing
    first = run(capsys, *args)
    # Every commit of main and the one of the merged side branch; the mailmap folds each
    # old-N address into N's, so there are as many authors as the generator has.
    assert (first["commits"], first["new"], first["skipped"]) == (COMMITS + 1, COMMITS + 1, [])
    assert first["authors"] == AUTHORS
    # Re-importing is a no-op: the same commits make the same records.
    again = run(capsys, *args)
    assert (again["new"], again["held"]) == (0, COMMITS + 1)
    assert main([*args]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{COMMITS + 1} commits by {AUTHORS} authors:"
        f" 0 new contributions, {COMMITS + 1} already held, 0 skipped"
    )
    no_merges = run(capsys, *args, "--no-merges", "--dry-run")
    assert no_merges["commits"] == COMMITS
    assert no_merges["new"] == 0

    ledger = {e["title"]: e for e in run(capsys, "ledger", pid, "--home", home)}
    assert len(ledger) == COMMITS + 1
    assert ledger["Change 11 by author 4"]["type"] == "docs"
    assert ledger["Change 13 by author 6"]["type"] == "testing"
    assert ledger["Change 3 by author 3"]["type"] == "code"  # empty
    assert ledger["Change 4 by author 4"]["type"] == "code"  # the rename
    assert ledger["Change 50 by author 1"]["type"] == "code"  # the merge
    assert ledger["Side"]["type"] == "docs"
    assert all(e["effort_minutes"] is None for e in ledger.values())
    # Author 0 has a Latin-1 name and commits as old-0 on odd commits (7, 21, 35, 49): the
    # mailmap resolves those to 0@example.org. Commit 5's trailer names author 6.
    zero, six = email_handle(author_email(0)), email_handle(author_email(5 % AUTHORS + 1))
    assert ledger["Change 7 by author 0"]["on_behalf"] == [zero]
    assert ledger["Change 5 by author 5"]["on_behalf"] == [email_handle(author_email(5)), six]
    assert ledger["Change 0 by author 0"]["ts"] == 1_704_067_200_000
    # The text table says whom each commit credits (the maintainer signed them all).
    assert main(["ledger", pid, "--home", home, "--limit", "3"]) == 0
    header, _, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[:6] == ["ID", "WHEN", "(UTC)", "AUTHOR", "FOR", "TYPE"]
    newest = run(capsys, "ledger", pid, "--home", home, "--limit", "3")
    for row, entry in zip(rows, newest, strict=True):
        shown = entry["credited"][0][:18] + "…"
        assert shown in row
        assert (f"{shown} +" in row) == (len(entry["credited"]) > 1)  # co-authors counted
    # Filtered by a handle, the ledger lists the commits recorded on its behalf: as the
    # author or in a co-author trailer. The address is hashed as import-git hashed it.
    for n in (0, 5 % AUTHORS + 1):
        who = email_handle(author_email(n))
        mine = {t for t, e in ledger.items() if who in (e.get("on_behalf") or [])}
        assert len(mine) > 1
        for handle in (who, f"email:{author_email(n).decode()}"):
            listed = run(capsys, "ledger", pid, "--author", handle, "--home", home)
            assert {e["title"] for e in listed} == mine
    assert "Change 5 by author 5" in {
        e["title"] for e in run(capsys, "ledger", pid, "--author", six, "--home", home)
    }  # six is its co-author
    # A malformed handle is refused with the reason, not a base58 error.
    err = fails(capsys, "ledger", pid, "--author", "email:not-hashed", "--home", home)
    assert "is not a handle" in err
    assert "author 0" not in json.dumps(run(capsys, "shares", pid, "--home", home))

    # Shares: one line per author handle, with its commit count (co-authored ones included).
    expected: Counter[str] = Counter()
    for i in range(COMMITS):
        expected[email_handle(author_email(i % AUTHORS))] += 1
        if i % 5 == 0:
            expected[email_handle(author_email((i + 1) % AUTHORS))] += 1
    expected[email_handle(author_email(50 % AUTHORS))] += 1  # the side branch's commit
    shares = run(capsys, "shares", pid, "--home", home)
    assert {s["contributor"]: s["contributions"] for s in shares} == dict(expected)
    assert {s["share"] for s in shares} == {0}  # commits claim no time: no value

    # The artifact is the repository URL and the commit hash.
    with Store.open(Path(home) / "ledger.db") as store:
        record = store.get(bytes.fromhex(ledger["Change 0 by author 0"]["id"]))
    assert record is not None
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--max-parents=0", "HEAD"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()
    artifact = record.body.artifacts[0]  # type: ignore[union-attr]
    assert (artifact.uri, artifact.digest) == (URL, f"git:{head}")


def test_import_signs_in_worker_processes(
    repo: Path,
    maintained: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Made in two worker processes, in pieces of git's output of a few commits each and
    stores of 20 records, the history makes exactly the records the in-process import makes."""
    home, pid = maintained
    args = ("import-git", str(repo), "--project", pid, "--url", URL, "--home", home)
    monkeypatch.setattr(history, "PIECE_BYTES", 500)
    monkeypatch.setattr(history, "STORE_BATCH", 20)
    monkeypatch.setattr(history, "MIN_STORE_BATCH", 20)
    monkeypatch.setattr(history, "_workers", lambda total, read=0: 2)
    dry = run(capsys, *args, "--dry-run")
    assert (dry["commits"], dry["new"], dry["held"]) == (COMMITS + 1, COMMITS + 1, 0)
    first = run(capsys, *args)
    assert (first["commits"], first["new"], first["skipped"]) == (COMMITS + 1, COMMITS + 1, [])
    assert first["authors"] == AUTHORS
    ids = {e["id"] for e in run(capsys, "ledger", pid, "--home", home)}
    assert len(ids) == COMMITS + 1
    assert git_processes_reading(repo) == []  # each worker's git cat-file stopped with it
    # In this process, the same history is already held, record for record.
    monkeypatch.setattr(history, "_workers", lambda total, read=0: 0)
    again = run(capsys, *args)
    assert (again["new"], again["held"]) == (0, COMMITS + 1)
    assert {e["id"] for e in run(capsys, "ledger", pid, "--home", home)} == ids


def test_git_failing_in_a_worker_is_one_clear_error(
    repo: Path,
    maintained: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker's ``git cat-file`` that git refuses stops the import with git's reason on one
    ``error:`` line, keeps what was stored before (nothing, here: the first store comes
    later), and leaves no git process running."""
    home, pid = maintained
    real = gitlog._git

    def refused(repo: str, *args: str, mailmap: str | None = None) -> list[str]:
        if "cat-file" in args:  # git refuses the option and exits
            args = tuple("--bogus" if a.startswith("--batch") else a for a in args)
        return real(repo, *args, mailmap=mailmap)

    monkeypatch.setattr(gitlog, "_git", refused)  # the forked workers have it too
    monkeypatch.setattr(history, "PIECE_BYTES", 500)
    monkeypatch.setattr(history, "_workers", lambda total, read=0: 2)
    args = ("import-git", str(repo), "--project", pid, "--url", URL, "--home", home)
    assert "git cat-file stopped: " in fails(capsys, *args)
    assert git_processes_reading(repo) == []
    monkeypatch.setattr(gitlog, "_git", real)
    assert run(capsys, *args)["new"] == COMMITS + 1


def git_processes_reading(repo: Path) -> list[str]:
    """The command lines of the git processes still running in ``repo``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone meanwhile
            continue
        if argv[0].endswith(b"git") and str(repo).encode() in argv:
            found.append(b" ".join(argv).decode(errors="replace"))
    return found


def test_drafted_records_are_sign_commits_records(repo: Path) -> None:
    """The import's fast path (protocol.drafts) makes, commit for commit, the record the
    ordinary path (``sign_commit``: a ContributionBody and ``sign_record``) makes."""
    signer = key("import-git-maintainer")
    project = bytes(range(32))
    drafts = Drafts(signer.public_key, project, URL)
    commits = list(read_commits(str(repo)))
    assert len(commits) == COMMITS + 1
    emails = [e for c in commits for e in c.coauthor_emails]
    coauthors = map_coauthors(str(repo), emails)
    for commit in commits:
        draft = draft_commit(drafts, commit, coauthors)
        record = drafts.signed(draft, signer.sign(draft.signing_input))
        assert record == sign_commit(signer, project, commit, URL, coauthors)
        assert record.raw == sign_commit(signer, project, commit, URL, coauthors).raw


def test_reading_survives_any_chunking(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """git's output read a few bytes at a time gives the same commits as in one read."""
    whole = list(read_commits(str(repo)))
    monkeypatch.setattr(gitlog, "READ_CHUNK", 7)
    assert list(read_commits(str(repo))) == whole
    paths = [c.paths for c in whole[-5:]]
    assert paths == [("src/new.c", "src/old.c"), (), ("src/old.c",), ("src/f1.c",), (".mailmap",)]


def test_a_commit_with_too_many_paths_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``MAX_BLOCK`` bytes, a commit's block keeps its first ``MAX_PATHS_READ`` paths;
    the rest of its output, cut mid-line or not, is dropped when the block is read."""
    monkeypatch.setattr(gitlog, "MAX_PATHS_READ", 2)
    # Hash, parents, author time and email, trailers, committer, subject.
    header = b"\x1f".join([b"ab" * 20, b"", b"1", b"a@x", b"", b"a@x", b"Subject"])
    cut = gitlog._trim(header + b"\n\np1\np2\np3\npart")
    assert cut == header + b"\n\np1\np2\n"
    commit = gitlog._block(cut + b"ial\np4\n")
    assert (commit.subject, commit.paths) == ("Subject", ("p1", "p2"))
    with pytest.raises(gitlog.GitError, match="MiB"):
        gitlog._trim(header + b"\n\np1\n" + b"x" * 100)


def test_workers_only_for_long_histories() -> None:
    assert history._workers(history.PARALLEL_FROM - 1) == 0
    assert 0 <= history._workers(history.PARALLEL_FROM) <= history.MAX_WORKERS
    # Not counted: judged by the commits read so far.
    assert history._workers(None, history.UNCOUNTED_PARALLEL_FROM - 1) == 0
    assert history._workers(None, history.UNCOUNTED_PARALLEL_FROM) == history._workers(
        history.PARALLEL_FROM
    )


def test_without_a_terminal_the_history_is_not_counted(
    repo: Path,
    maintained: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No progress bar to show the count on, so git does not walk the history twice: the
    workers start once enough commits are read, and the records are those of a counted
    import."""
    home, pid = maintained
    args = ("import-git", str(repo), "--project", pid, "--url", URL, "--home", home)

    def no_count(*args: object, **kwargs: object) -> None:
        raise AssertionError("counted without a terminal")

    monkeypatch.setattr(history, "CommitCount", no_count)
    monkeypatch.setattr(history, "PIECE_BYTES", 300)
    monkeypatch.setattr(history, "UNCOUNTED_PARALLEL_FROM", 10)
    workers = history._workers
    asked: list[tuple[int | None, int, int]] = []

    def watched(total: int | None, read: int = 0) -> int:
        asked.append((total, read, workers(total, read)))
        return asked[-1][2]

    monkeypatch.setattr(history, "_workers", watched)
    dry = run(capsys, *args, "--dry-run")
    assert (dry["commits"], dry["new"]) == (COMMITS + 1, COMMITS + 1)
    assert all(total is None for total, _, _ in asked)
    # Asked before each piece, with the commits read so far, until the workers start (on
    # one core, never): none before 10 commits, at once from 10 on.
    reads = [read for _, read, _ in asked]
    assert reads == sorted(reads)
    assert reads[0] == 0
    assert len(reads) > 2
    assert all(n == 0 for _, read, n in asked if read < 10)
    started = [read for _, read, n in asked if n]
    if workers(None, 10):
        assert started == [reads[-1]]
        assert reads[-2] < 10 <= reads[-1]
    else:
        assert started == []
        assert reads[-1] > 10


def test_import_this_repositorys_own_history(
    maintained: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    home, pid = maintained
    count = subprocess.run(
        ["git", "-C", str(REPO), "rev-list", "--count", "HEAD"],
        capture_output=True,
        check=True,
        text=True,
    ).stdout.strip()
    result = run(capsys, "import-git", str(REPO), "--project", pid, "--url", URL, "--home", home)
    assert result["commits"] == int(count) > 100
    assert result["new"] + len(result["skipped"]) == int(count)
    assert result["skipped"] == []
    shares = run(capsys, "shares", pid, "--home", home)
    assert sum(s["contributions"] for s in shares) >= int(count)


def test_a_history_is_imported_while_git_counts_it(
    repo: Path,
    maintained: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without waiting for the count (a long history), the import starts at once, in worker
    processes, and the progress bar gains its total when git has counted; a bad revision is
    still refused with git's reason, by ``git log`` if not by the count."""
    home, pid = maintained
    args = ("import-git", str(repo), "--project", pid, "--url", URL, "--home", home)
    monkeypatch.setattr(history, "PIECE_BYTES", 300)
    monkeypatch.setattr(history, "_shows_progress", lambda: True)
    waited: list[float | None] = []
    wait = gitlog.CommitCount.wait

    def still_counting(self: gitlog.CommitCount, timeout: float | None) -> int | None:
        waited.append(timeout)  # the first wait is the import's, which git outlasts here
        return None if len(waited) == 1 else wait(self, timeout)

    monkeypatch.setattr(gitlog.CommitCount, "wait", still_counting)
    asked: list[int | None] = []
    totals: list[int | None] = []
    monkeypatch.setattr(history, "_workers", lambda total, read=0: asked.append(total) or 1)
    advance = history.Progress.advance

    def watched(self: history.Progress, n: int = 1) -> None:
        advance(self, n)
        totals.append(self.total)

    monkeypatch.setattr(history.Progress, "advance", watched)
    result = run(capsys, *args)
    assert (result["commits"], result["new"], result["skipped"]) == (COMMITS + 1, COMMITS + 1, [])
    assert waited[0] == history.COUNT_WAIT_S
    assert asked == [None]  # started before git had counted
    assert totals[-1] == COMMITS + 1  # the count arrived during the import
    waited.clear()
    assert "bad revision" in fails(capsys, *args, "--rev", "nosuchbranch")  # from git log


def test_import_refusals(
    tmp_path: Path,
    repo: Path,
    maintained: tuple[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    home, pid = maintained
    base = ("import-git", str(repo), "--project", pid, "--home", home)
    assert "has no remote 'origin'" in fails(capsys, *base)
    assert "does not start with '-'" in fails(capsys, *base, "--url", URL, "--rev=--all")
    assert "bad revision" in fails(capsys, *base, "--url", URL, "--rev", "nosuchbranch")
    assert "no such file" in fails(capsys, *base, "--url", URL, "--mailmap", "/nonexistent")
    assert fails(
        capsys, "import-git", str(tmp_path), "--project", pid, "--home", home, "--url", URL
    )
    # The key of another home is no maintainer of the project.
    other = new_home(tmp_path, "other", capsys)
    with Store.open(Path(home) / "ledger.db") as src, Store.open(Path(other) / "ledger.db") as dst:
        dst.add([src.get(bytes.fromhex(pid))])  # type: ignore[list-item]
    err = fails(capsys, "import-git", str(repo), "--project", pid, "--url", URL, "--home", other)
    assert "only a maintainer" in err


def copy_records(src: str, dst: str) -> None:
    """Give ``dst``'s store every record of ``src``'s, as a sync would."""
    with Store.open(Path(src) / "ledger.db") as a, Store.open(Path(dst) / "ledger.db") as b:
        b.add([decode_trusted(raw) for raw in a.iter_raw()], published=True)


def test_claim_confirm_and_withdraw(
    tmp_path: Path, repo: Path, maintained: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    home, pid = maintained
    run(capsys, "import-git", str(repo), "--project", pid, "--url", URL, "--home", home)
    person = new_home(tmp_path, "author-two", capsys)
    me = peer_id(Home(Path(person)).signing_key().public_key)
    copy_records(home, person)
    handle = email_handle(author_email(2))
    before = {s["contributor"]: s for s in run(capsys, "shares", pid, "--home", home)}

    claim = run(capsys, "claim", "email:2@Example.org", "--project", pid, "--home", person)
    assert claim["handle"] == handle
    copy_records(person, home)
    # Unconfirmed, the claim moves nothing; the claimant cannot confirm it.
    assert {s["contributor"] for s in run(capsys, "shares", pid, "--home", home)} == set(before)
    assert "your own claim" in fails(capsys, "confirm-claim", claim["id"], "--home", person)
    assert "is not a handle" in fails(capsys, "claim", "bob", "--project", pid, "--home", person)

    confirmed = run(capsys, "confirm-claim", claim["id"][:12], "--home", home)
    after = {s["contributor"]: s for s in run(capsys, "shares", pid, "--home", home)}
    assert handle not in after
    assert after[me]["contributions"] == before[handle]["contributions"]
    assert set(after) - {me} == set(before) - {handle}

    run(capsys, "retract", confirmed["id"], "--home", home)
    withdrawn = {s["contributor"]: s for s in run(capsys, "shares", pid, "--home", home)}
    assert set(withdrawn) == set(before)


async def test_a_claim_moves_shares_on_two_nodes_after_sync(
    tmp_path: Path, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The maintainer imports through their running node (so the records gossip), the
    claimant claims from theirs, the maintainer confirms: both nodes agree after sync."""
    a_home, b_home = new_home(tmp_path, "a", capsys), new_home(tmp_path, "b", capsys)
    pid = run(capsys, "project", "create", "Shared", "--home", a_home)["id"]
    handle = email_handle(author_email(3))
    b_peer = peer_id(Home(Path(b_home)).signing_key().public_key)

    def opts(bootstrap: list[str], api: str | None) -> NodeOptions:
        return NodeOptions(
            listen=["/ip4/127.0.0.1/tcp/0"], bootstrap=bootstrap, api=api, mdns=False
        )

    async def until(predicate: Any) -> None:
        while not predicate():  # noqa: ASYNC110 - the nodes change state in other tasks
            await trio.sleep(0.05)

    async def cli(*argv: str) -> Any:
        # The command talks to a node of this process over HTTP: it runs in a thread.
        return await trio.to_thread.run_sync(lambda: run(capsys, *argv))

    def counts(node: Any) -> dict[str, int]:
        return {s["contributor"]: s["contributions"] for s in node.views.shares(pid)}

    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(
                open_node(Home(Path(a_home)), opts([], "127.0.0.1:0"))
            )
            b_addr = [a.transport.listen_addrs()[0]]
            b = await stack.enter_async_context(open_node(Home(Path(b_home)), opts(b_addr, None)))
            await until(lambda: len(a.transport.connected_peers()) == 1)
            imported = await cli("import-git", str(repo), "--project", pid, "--url", URL,
                                 "--home", a_home)  # fmt: skip
            assert imported["new"] == COMMITS + 1
            await until(lambda: b.store.count() == a.store.count())
            want = counts(a)[handle]
            assert counts(b)[handle] == want
            # The claimant claims from their own node; a maintainer confirms it from theirs.
            claim = await cli("claim", f"email:{author_email(3).decode()}", "--project", pid,
                              "--home", b_home)  # fmt: skip
            await b.sync_now()
            await until(lambda: a.store.has(bytes.fromhex(claim["id"])))
            await cli("confirm-claim", claim["id"], "--home", a_home)
            await until(lambda: b_peer in counts(a) and b_peer in counts(b))
            assert counts(a)[b_peer] == counts(b)[b_peer] == want
            assert handle not in counts(b)
            assert a.views.shares(pid) == b.views.shares(pid)


def test_the_homes_policy_applies_to_an_import_without_a_node(
    repo: Path, maintained: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    home, pid = maintained
    config = Path(home) / "config.toml"
    text = config.read_text()
    assert "max_project_records = 0" in text
    config.write_text(text.replace("max_project_records = 0", "max_project_records = 10"))
    err = fails(capsys, "import-git", str(repo), "--project", pid, "--url", URL, "--home", home)
    assert "refused by this node's policy" in err
    assert len(run(capsys, "ledger", pid, "--home", home)) < 10
