"""Synthetic git repositories, written by ``git fast-import`` in seconds.

One generator serves the import-git benchmark (a million commits by 20,000 authors) and the
tests (a few dozen commits), so the tests read the same shapes the benchmark measures. The
history is a pure function of its parameters: the same call makes the same commit hashes.

What it holds, by commit index ``i`` (0-based, on ``main``):

* the author is ``i % authors``; author ``a`` is ``Author a <a@example.org>``, except that
  every 13th author has a Latin-1 (not UTF-8) name, and every 17th author commits as
  ``<old-a@example.org>`` on odd commits, which the ``.mailmap`` of commit 0 maps back;
* every 5th commit has a ``Co-authored-by:`` trailer naming the next author;
* every 11th commit touches only ``docs/``, every 13th only ``tests/``; the rest ``src/``;
* commit 2 adds ``src/old.c`` and commit 4 renames it to ``src/new.c``; commit 3 is empty;
* every 50th commit is a merge of a one-commit side branch that touches ``docs/side.md``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

from protocol.signing import SigningKey
from protocol.sshsig import GIT_NAMESPACE, sign_proof

__all__ = [
    "EPOCH_S",
    "add_signed_commits",
    "author_email",
    "fast_import_stream",
    "make_repo",
    "signed_commit",
    "write_commits",
]

#: Commit times start here (2024-01-01T00:00:00Z) and advance one minute a commit.
EPOCH_S = 1_704_067_200


def author_email(a: int) -> bytes:
    """The email author ``a`` resolves to after the mailmap."""
    return f"{a}@example.org".encode()


def _ident(a: int, i: int) -> bytes:
    name = f"J\xf6rg {a}".encode("latin-1") if a % 13 == 0 else f"Author {a}".encode()
    email = f"old-{a}@example.org".encode() if a % 17 == 0 and i % 2 else author_email(a)
    return name + b" <" + email + b">"


def _data(payload: bytes) -> bytes:
    return b"data %d\n" % len(payload) + payload + b"\n"


def _commit(ref: bytes, mark: int, who: bytes, when: int, message: bytes) -> bytes:
    stamp = b"%s %d +0000\n" % (who, when)
    return (
        b"commit " + ref + b"\nmark :%d\nauthor " % mark + stamp + b"committer " + stamp
    ) + _data(message)


def fast_import_stream(commits: int, authors: int) -> Iterator[bytes]:
    """The ``git fast-import`` input of the history described in the module docstring."""
    side_mark = commits + 1
    mailmap = b"".join(
        b"<%s> <old-%d@example.org>\n" % (author_email(a), a) for a in range(0, authors, 17)
    )
    for i in range(commits):
        a = i % authors
        when = EPOCH_S + 60 * i
        parts = []
        merge = i > 0 and i % 50 == 0
        if merge:
            side_mark += 1
            parts.append(_commit(b"refs/heads/side", side_mark, _ident(a, i), when - 30, b"Side\n"))
            parts.append(b"from :%d\nM 100644 inline docs/side.md\n" % i + _data(b"%d\n" % i))
        message = b"Change %d by author %d\n" % (i, a)
        if i % 5 == 0:
            other = (a + 1) % authors
            message += b"\nCo-authored-by: Author %d <%s>\n" % (other, author_email(other))
        parts.append(_commit(b"refs/heads/main", i + 1, _ident(a, i), when, message))
        if i > 0:
            parts.append(b"from :%d\n" % i)
        if merge:
            parts.append(b"merge :%d\n" % side_mark)
        if i == 0:
            parts.append(b"M 100644 inline .mailmap\n" + _data(mailmap))
        elif i == 2:
            parts.append(b"M 100644 inline src/old.c\n" + _data(b"old\n"))
        elif i == 4:
            parts.append(b"R src/old.c src/new.c\n")
        elif i != 3:
            path = b"docs/guide.md" if i % 11 == 0 else b"src/f%d.c" % (i % 100)
            path = b"tests/test_%d.py" % (i % 7) if i % 13 == 0 else path
            parts.append(b"M 100644 inline " + path + b"\n" + _data(b"%d\n" % i))
        yield b"".join(parts) + b"\n"


def make_repo(path: Path, commits: int, authors: int) -> Path:
    """Create the repository at ``path`` (which must not exist) and check out ``main``."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    process = subprocess.Popen(
        ["git", "-C", str(path), "fast-import", "--quiet"], stdin=subprocess.PIPE
    )
    assert process.stdin is not None
    try:
        for chunk in fast_import_stream(commits, authors):
            process.stdin.write(chunk)
    finally:
        process.stdin.close()
    if process.wait() != 0:
        raise RuntimeError(f"git fast-import failed with {process.returncode}")
    subprocess.run(["git", "-C", str(path), "checkout", "-q", "main"], check=True)
    return path


def add_signed_commits(path: Path, key: Path, commits: list[tuple[str, str, bool]]) -> list[str]:
    """Append commits to the repository at ``path`` on its checked-out branch, one for each
    ``(author email, committer email, signed)``, signed with the SSH key file ``key``
    (``gpg.format=ssh``) when ``signed``; their hashes, in order. ``git fast-import`` cannot
    write signatures, so these go through ``git commit -S``, one process a commit: for the
    few signed commits a test needs, not for the benchmark."""
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    config = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={key}", "-c", "commit.gpgsign=false"]
    hashes = []
    for n, (author, committer, signed) in enumerate(commits):
        who = {
            "GIT_AUTHOR_NAME": "Signer",
            "GIT_AUTHOR_EMAIL": author,
            "GIT_COMMITTER_NAME": "Committer",
            "GIT_COMMITTER_EMAIL": committer,
        }
        (path / f"signed-{n}.c").write_text(f"{author} {n}\n")

        def git(*args: str, who: dict[str, str] = who) -> str:
            done = subprocess.run(
                ["git", "-C", str(path), *config, *args],
                env={**env, **who},
                capture_output=True,
                check=True,
                text=True,
            )
            return done.stdout.strip()

        git("add", f"signed-{n}.c")
        git("commit", "-q", *(["-S"] if signed else []), "-m", f"signed work {n}")
        hashes.append(git("rev-parse", "HEAD"))
    return hashes


def signed_commit(
    key: SigningKey,
    headers: bytes,
    message: bytes,
    *,
    hash_name: bytes = b"sha512",
    namespace: bytes = GIT_NAMESPACE,
    unsigned: bytes = b"",
) -> bytes:
    """A commit object of ``headers`` (each line ending in a newline) and ``message`` with
    the SSH signature ``git commit -S`` would add with the Ed25519 key ``key``, made here (the
    same bytes ``ssh-keygen -Y sign -n git`` makes): a ``gpgsig`` header after the others.
    ``unsigned`` headers go after it and are left out of what is signed, as git leaves every
    ``gpgsig*`` header out."""
    blob = sign_proof(key, headers + b"\n" + message, hash_name, namespace)
    text = base64.b64encode(blob)
    lines = [b"-----BEGIN SSH SIGNATURE-----"]
    lines += [text[at : at + 70] for at in range(0, len(text), 70)]
    lines.append(b"-----END SSH SIGNATURE-----")
    return headers + b"gpgsig " + b"\n ".join(lines) + b"\n" + unsigned + b"\n" + message


def write_commits(path: Path, objects: list[bytes]) -> list[str]:
    """Write raw commit objects into the SHA-1 repository at ``path`` as loose objects (no
    git process a commit: thousands in a second) and return their hashes; the caller names
    the last with ``git update-ref``."""
    hashes = []
    store = path / ".git" / "objects"
    for content in objects:
        raw = b"commit %d\0" % len(content) + content
        name = hashlib.sha1(raw).hexdigest()  # git's name for the object
        folder = store / name[:2]
        folder.mkdir(exist_ok=True)
        (folder / name[2:]).write_bytes(zlib.compress(raw, 1))
        hashes.append(name)
    return hashes
