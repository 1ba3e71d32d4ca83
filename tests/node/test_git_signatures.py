"""SSH signatures of commits read and verified here, against git's own verdict (issue 16).

``commons import-git`` reads each commit's raw object from ``git cat-file --batch`` and
verifies its SSH signature in Python; before, git verified it (``%G?``, ``%GK``, two
``ssh-keygen`` runs a commit). The reference here is that former path, run through git, on a
repository with good, tampered, committer-signed, RSA, ECDSA, OpenPGP-looking, wrong-namespace
and long signed commits: both give the same key for every commit, except that RSA and ECDSA
keys, which git reported, are no longer recorded (only an Ed25519 key can prove a claim). The
parser of commit objects is checked against hostile bytes.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.gitrepo import EPOCH_S, add_signed_commits, make_repo, signed_commit, write_commits
from node import gitlog
from node.gitlog import Commit, read_commits, sign_commit, signed_key, split_signature
from protocol.sshsig import key_fingerprint, parse_fingerprint_text
from protocol.testing import key

pytestmark = pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")

SIGNER = "signer@example.org"
OTHER = "other@example.org"
URL = "https://git.example/signatures.git"
ED25519 = key("commit-signer")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, check=True, text=True
    )
    return done.stdout.strip()


def ssh_keygen(path: Path, kind: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "test", "-f", str(path)], check=True
    )
    return path


def headers(repo: Path, parent: str, when: int, committer: str = SIGNER) -> bytes:
    tree = git(repo, "rev-parse", f"{parent}^{{tree}}")
    return (
        f"tree {tree}\nparent {parent}\n"
        f"author Signer <{SIGNER}> {when} +0000\n"
        f"committer Someone <{committer}> {when} +0000\n"
    ).encode()


def git_verified(repo: Path) -> dict[str, bytes | None]:
    """The keys the former path recorded: git's verdict and key (``%G?``, ``%GK``) read with
    no allowed signers and no OpenPGP or X.509 program, kept for a good (``G``) or good but
    unknown (``U``) signature of a commit whose author committed it."""
    config = [
        *("-c", "gpg.ssh.allowedSignersFile=/dev/null"),
        *("-c", "gpg.openpgp.program=false"),
        *("-c", "gpg.x509.program=false"),
    ]
    command = ["git", "-C", str(repo), *config, "log", "--format=%H%x1f%aE%x1f%cE%x1f%G?%x1f%GK"]
    out = subprocess.run(command, capture_output=True, check=True, text=True).stdout
    keys: dict[str, bytes | None] = {}
    for line in out.split("\n")[:-1]:  # str.splitlines would split at the separators too
        commit, author, committer, verdict, signer = line.split("\x1f")
        same = author.strip().lower() == committer.strip().lower()
        good = verdict in ("G", "U") and same
        keys[commit] = parse_fingerprint_text(signer) if good else None
    return keys


#: Commits signed here, by name: the keyword arguments of ``signed_commit``, and
#: ``committer`` or ``message``, or how to damage the signed object (``tamper``).
MADE_HERE: dict[str, dict[str, object]] = {
    "sha512": {},
    "sha256": {"hash_name": b"sha256"},
    "other-header": {"unsigned": b"gpgsig-sha256 junk\n more junk\n"},
    "namespace-file": {"namespace": b"file"},
    "long": {"message": b"Long\n\n" + b"0123456789abcde\n" * 8192},
    "tampered": {"tamper": (b"\ntampered\n", b"\ntampere!\n")},
    "for-other-here": {"committer": OTHER},
}
#: What the reading must record, by name; every other commit gets no key.
RECORDED = {"keygen", "sha512", "sha256", "other-header", "long"}
PGP = b"gpgsig -----BEGIN PGP SIGNATURE-----\n \n iQEzBAABCAAdFiEE\n -----END PGP SIGNATURE-----\n"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A repository of every kind of signed commit, and their hashes by name."""
    tmp = tmp_path_factory.mktemp("signatures")
    repo = make_repo(tmp / "repo", 6, 3)
    ed25519 = ssh_keygen(tmp / "id_ed25519", "ed25519")
    signing = [(SIGNER, SIGNER, True), (SIGNER, OTHER, True), (SIGNER, SIGNER, False)]
    made = add_signed_commits(repo, ed25519, signing)
    names = dict(zip(("keygen", "for-other", "plain"), made, strict=True))
    for kind in ("rsa", "ecdsa"):
        # Another address each, so that each writes a file of its own.
        who = f"{kind}-{SIGNER}"
        made = add_signed_commits(repo, ssh_keygen(tmp / kind, kind), [(who, who, True)])
        names[kind] = made[0]
    tip, when = names["ecdsa"], EPOCH_S
    # A signature git made, then the commit changed: its message, and its parent to keep it
    # in the history.
    original = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "commit", names["keygen"]],
        capture_output=True,
        check=True,
    ).stdout
    parent = b"parent " + git(repo, "rev-parse", f"{names['keygen']}^").encode()
    tampered = original.replace(b"signed work 0", b"signed work 9")
    (tip,) = write_commits(repo, [tampered.replace(parent, b"parent " + tip.encode())])
    names["keygen-tampered"] = tip
    for name, options in MADE_HERE.items():
        when += 60
        kwargs = dict(options)
        message = kwargs.pop("message", f"{name}\n".encode())
        head = headers(repo, tip, when, str(kwargs.pop("committer", SIGNER)))
        damage = kwargs.pop("tamper", None)
        content = signed_commit(ED25519, head, message, **kwargs)  # type: ignore[arg-type]
        if isinstance(damage, tuple):
            content = content.replace(*damage)
        (tip,) = write_commits(repo, [content])
        names[name] = tip
    (tip,) = write_commits(repo, [headers(repo, tip, when + 60) + PGP + b"\nPGP-looking\n"])
    names["pgp"] = tip
    git(repo, "update-ref", "refs/heads/main", tip)
    return repo, names


def test_the_same_keys_as_git_found_and_the_same_records(
    signed: tuple[Path, dict[str, str]],
) -> None:
    repo, names = signed
    before = git_verified(repo)
    commits = list(read_commits(str(repo)))
    after = {c.hash: c.ssh_key for c in commits}
    assert after.keys() == before.keys()
    # Today's rule, checked against git: the Ed25519 keys of good signatures their authors
    # made, and nothing for the rest.
    recorded = {name for name, commit in names.items() if after[commit] is not None}
    assert recorded == RECORDED
    assert after[names["sha512"]] == key_fingerprint(ED25519.public_key)
    # git reported the RSA and ECDSA keys too; they are no longer recorded, since no such key
    # can prove a claim (protocol/sshsig.py reads Ed25519 only).
    for kind in ("rsa", "ecdsa"):
        assert before.pop(names[kind]) is not None
        assert after.pop(names[kind]) is None
    assert after == before
    # So every record is the one the former path made: the same id.
    signer, project = key("import-git-maintainer"), bytes(range(32))
    for commit in commits:
        if commit.hash in before:
            former = Commit(**{**_fields(commit), "ssh_key": before[commit.hash]})
            assert sign_commit(signer, project, commit, URL, {}).id == (
                sign_commit(signer, project, former, URL, {}).id
            )


def _fields(commit: Commit) -> dict[str, object]:
    return {name: getattr(commit, name) for name in Commit.__slots__}


def test_headers_longer_than_read_get_no_key_and_long_messages_stream(
    signed: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``MAX_HEADER`` bytes of headers no key is looked for; a signed commit whose
    message runs past them is hashed a piece at a time and still verifies."""
    repo, names = signed
    monkeypatch.setattr(gitlog, "READ_CHUNK", 1000)
    monkeypatch.setattr(gitlog, "MAX_HEADER", 600)
    keys = {c.hash: c.ssh_key for c in read_commits(str(repo))}
    assert {name for name, commit in names.items() if keys[commit] is not None} == RECORDED
    monkeypatch.setattr(gitlog, "MAX_HEADER", 200)  # shorter than a signed commit's headers
    assert all(c.ssh_key is None for c in read_commits(str(repo)))


def test_split_signature_as_git_splits() -> None:
    header = (
        b"tree t\nparent p\ngpgsig A\n B\n  C\ngpgsig-sha256 X\n Y\nauthor a\ngpgsigs Z\n"
        b" W\ncommitter c"
    )
    payload, signature = split_signature(header)
    assert signature == b"A\nB\n C\n"
    assert payload == b"tree t\nparent p\nauthor a\ncommitter c"
    payload, signature = split_signature(header, b"gpgsig-sha256")
    assert (payload, signature) == (b"tree t\nparent p\nauthor a\ncommitter c", b"X\nY\n")
    assert split_signature(b"") == (b"", b"")


def _object() -> bytes:
    head = b"tree " + b"a" * 40 + b"\nauthor A <a@x> 1 +0000\ncommitter A <a@x> 1 +0000\n"
    return signed_commit(ED25519, head, b"subject\n\nbody\n")


def test_a_commit_object_signed_here_verifies() -> None:
    content = _object()
    assert signed_key(content) == key_fingerprint(ED25519.public_key)
    assert signed_key(content, b"gpgsig-sha256") is None  # a SHA-256 repository's header
    assert signed_key(content.replace(b"body", b"bodY")) is None


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_damage_to_a_signed_commit_loses_its_key(data: st.DataObject) -> None:
    """A changed byte outside the signature header breaks the signature; inside it, it can
    only leave the same key (base64 has spare bits) or none. Nothing raises."""
    original = _object()
    start = original.index(b"gpgsig ")
    end = original.index(b"-----END SSH SIGNATURE-----\n") + 28
    content = bytearray(original)
    at = data.draw(st.integers(0, len(content) - 1))
    content[at] ^= data.draw(st.integers(1, 255))
    found = signed_key(bytes(content))
    if found is not None:
        assert start <= at < end
        assert found == key_fingerprint(ED25519.public_key)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from([b"gpgsig", b"gpgsig-sha256"]))
def test_hostile_objects_are_read_without_a_traceback(content: bytes, name: bytes) -> None:
    assert signed_key(b"tree x\n" + content, name) is None
    assert signed_key(b"gpgsig " + content, name) is None
    payload, signature = split_signature(content, name)
    assert len(payload) + len(signature) <= len(content)


@pytest.mark.parametrize(
    ("commands", "swap", "said"),
    [
        (False, "--bogus", "git cat-file stopped: "),  # git refuses the option and exits
        (False, "--batch-check", "stopped in the middle of commit"),  # no object after the line
        (True, "--bogus", "git cat-file stopped: "),
    ],
)
def test_a_failing_cat_file_is_one_clear_error(
    signed: tuple[Path, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    commands: bool,
    swap: str,
    said: str,
) -> None:
    repo, _ = signed
    real = gitlog._git
    mode = "--batch-command" if commands else "--batch"

    def git_with(repo: str, *args: str, mailmap: str | None = None) -> list[str]:
        args = tuple(swap if a == mode else a for a in args)
        return real(repo, *args, mailmap=mailmap)

    monkeypatch.setattr(gitlog, "_git", git_with)
    monkeypatch.setattr(gitlog, "_batch_commands", lambda: commands)
    with pytest.raises(gitlog.GitError, match=said):
        list(read_commits(str(repo)))


def test_both_ways_of_asking_cat_file_read_the_same_keys(
    signed: tuple[Path, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """git 2.36's ``--batch-command --buffer`` and older git's ``--batch`` give every commit
    the same key, read in chunks of any size."""
    repo, _ = signed
    monkeypatch.setattr(gitlog, "READ_CHUNK", 97)
    read = {}
    for commands in (True, False):
        monkeypatch.setattr(gitlog, "_batch_commands", lambda commands=commands: commands)
        read[commands] = [(c.hash, c.ssh_key) for c in read_commits(str(repo))]
    assert read[True] == read[False]
    assert any(key is not None for _, key in read[True])


@pytest.mark.parametrize(
    ("said", "commands"),
    [
        (b"git version 2.35.8\n", False),
        (b"git version 2.36.0\n", True),
        (b"git version 2.39.1.windows.1\n", True),
        (b"git version 3.0\n", True),
        (b"not git\n", False),
    ],
)
def test_cat_file_commands_from_git_2_36(
    monkeypatch: pytest.MonkeyPatch, said: bytes, commands: bool
) -> None:
    monkeypatch.setattr(gitlog, "_run", lambda command: said)
    gitlog._batch_commands.cache_clear()
    try:
        assert gitlog._batch_commands() is commands
    finally:
        gitlog._batch_commands.cache_clear()
