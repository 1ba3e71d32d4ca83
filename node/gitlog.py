"""Reading a git history and turning each commit into an attested contribution.

``commons import-git`` (node/cli/history.py) runs the ``git`` binary with one fixed,
machine-readable ``git log`` format and streams its output, rather than reading the object
database through a library: git is there wherever a repository is, it applies ``.mailmap`` and
``mailmap.file`` and parses ``Co-authored-by:`` trailers exactly as the user's own git does,
and it walks a million commits in seconds, where a pure-Python reader (dulwich) is an order of
magnitude slower and a binding (pygit2) is one more native dependency that implements neither
mailmap for trailers nor the same revision syntax. Every field is separated by control
characters that cannot occur in a hash, a number or a one-line subject, so parsing needs no
quoting rules.

The mapping from a commit to a record (docs/RECORD-FORMAT.md section 4.10) is deterministic:
the same commit, repository URL and mailmap always make the same record, so the same id, and
a second import of a history stores nothing new.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import multiprocessing
import re
import signal
import subprocess
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from protocol.attest import MAX_ON_BEHALF, email_handle
from protocol.drafts import Draft, Drafts, sign_drafts
from protocol.record import MAX_TITLE, Artifact, ContributionBody, Record, sign_record
from protocol.signing import SigningKey
from protocol.sshsig import parse_fingerprint_text

__all__ = [
    "BatchSigner",
    "Commit",
    "GitError",
    "commit_body",
    "commit_count",
    "commit_type",
    "draft_commit",
    "map_coauthors",
    "read_commits",
    "repository_url",
    "sign_commit",
]

#: One commit: a record separator, then hash, parents, author time, the mailmap-resolved
#: author email, the Co-authored-by trailer values, the committer's email, git's verdict on
#: the commit's signature and the signing key, and the subject, split by unit separators;
#: then ``--name-only`` lists the changed paths, one a line.
_RS, _US, _GS = b"\x1e", b"\x1f", b"\x1d"
LOG_FORMAT: Final = (
    "%x1e%H%x1f%P%x1f%at%x1f%aE%x1f%(trailers:key=Co-authored-by,valueonly,separator=%x1d)"
    "%x1f%cE%x1f%G?%x1f%GK%x1f%s"
)
#: Configuration for reading signatures the same way on every machine: an SSH signature is
#: checked against no allowed signers, so git reports it good with unknown validity (``U``)
#: and its key's fingerprint whatever the user's trust settings; OpenPGP and X.509 ones are
#: not checked at all (``false`` as their program), since only SSH keys are recorded.
_SIGNATURE_CONFIG: Final = (
    *("-c", "gpg.ssh.allowedSignersFile=/dev/null"),
    *("-c", "gpg.openpgp.program=false"),
    *("-c", "gpg.x509.program=false"),
)
#: Characters a record's single-line text refuses (docs/RECORD-FORMAT.md section 4, *Characters*):
#: a subject holding them keeps its other characters, with U+FFFD in their place.
_REFUSED: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_ANGLE_EMAIL: Final = re.compile(rb"<([^<>]*)>")
#: Bounds on what one commit may bring, so a hostile repository cannot exhaust memory.
MAX_LINE: Final = 1 << 20
MAX_PATHS_READ: Final = 10_000
#: The most bytes of one commit's output held before its paths beyond the first
#: ``MAX_PATHS_READ`` are dropped.
MAX_BLOCK: Final = 16 << 20
#: Batches of drafts a signing process may have waiting, so that it keeps signing while this
#: process stores a batch.
IN_FLIGHT: Final = 4
#: Bytes read from ``git log`` at a time.
READ_CHUNK: Final = 1 << 20
#: Where a commit starts: a record separator at the start of a line.
_COMMIT_START: Final = b"\n" + _RS

_DOC_SUFFIXES: Final = frozenset({".md", ".rst", ".txt", ".adoc", ".texi", ".tex", ".1", ".5"})
_DOC_DIRS: Final = frozenset({"doc", "docs", "documentation", "man"})
_DOC_NAMES: Final = ("readme", "changelog", "changes", "news", "authors", "contributing")
_TEST_DIRS: Final = frozenset({"test", "tests", "testing", "spec", "selftests", "t"})
_TRANSLATION_SUFFIXES: Final = frozenset({".po", ".pot", ".mo", ".xliff", ".ts"})
_TRANSLATION_DIRS: Final = frozenset({"po", "locale", "locales", "i18n", "l10n", "translations"})


class GitError(Exception):
    """git could not be run, or refused the repository or the range (one line for people)."""


@dataclass(slots=True)
class Commit:
    """What the import keeps of a commit (the author's name is deliberately not kept).

    Not frozen: a frozen dataclass sets each field through ``object.__setattr__``, which
    made building a million of them an eighth of the importing process's time; nothing
    changes a commit once read.
    """

    hash: str
    parents: int
    author_time: int
    email: bytes
    coauthor_emails: tuple[bytes, ...]
    subject: str
    paths: tuple[str, ...]
    #: The fingerprint of the SSH key whose good signature the commit carries, when its
    #: author committed it (a signature is the committer's, who may be someone else).
    ssh_key: bytes | None = None


def _git(repo: str, *args: str, mailmap: str | None = None, signatures: bool = False) -> list[str]:
    command = ["git", "-C", repo, *(_SIGNATURE_CONFIG if signatures else ())]
    if mailmap is not None:
        command += ["-c", f"mailmap.file={mailmap}"]
    return [*command, *args]


def _run(command: list[str]) -> bytes:
    try:
        done = subprocess.run(command, capture_output=True, check=False)
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror}") from None
    if done.returncode != 0:
        raise GitError(_message(done.stderr, done.returncode))
    return done.stdout


def _range_args(rev: str, no_merges: bool) -> list[str]:
    # ``--end-of-options`` keeps a revision from being read as an option, and ``--`` from
    # being read as a path.
    return [*(["--no-merges"] if no_merges else []), "--end-of-options", rev, "--"]


def _message(stderr: bytes, code: int) -> str:
    """git's reason for failing: its ``fatal:`` line, else its last line."""
    lines = stderr.decode("utf-8", "replace").strip().splitlines()
    fatal = [line for line in lines if line.startswith("fatal: ")]
    if fatal:
        return fatal[0].removeprefix("fatal: ")
    return lines[-1] if lines else f"git exited with {code}"


def commit_count(repo: str, rev: str = "HEAD", *, no_merges: bool = False) -> int:
    """How many commits ``rev`` (a revision or range) names, for the progress bar's total."""
    return int(_run(_git(repo, "rev-list", "--count", *_range_args(rev, no_merges))) or 0)


def repository_url(repo: str) -> str:
    """The ``origin`` remote's URL without any user name or password in it."""
    try:
        url = _run(_git(repo, "remote", "get-url", "origin")).decode("utf-8", "replace").strip()
    except GitError:
        raise GitError(f"{repo} has no remote 'origin': give its public URL with --url") from None
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        url = urlunsplit(parts)
    return url


def read_commits(
    repo: str, rev: str = "HEAD", *, no_merges: bool = False, mailmap: str | None = None
) -> Iterator[Commit]:
    """The commits of ``rev`` in ``git log`` order, streamed from one ``git log`` process."""
    args = [
        "log",
        "--no-color",
        "--encoding=UTF-8",
        "--no-renames",
        "--name-only",
        f"--format={LOG_FORMAT}",
        *_range_args(rev, no_merges),
    ]
    try:
        process = subprocess.Popen(
            _git(repo, *args, mailmap=mailmap, signatures=True),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror}") from None
    assert process.stdout is not None
    assert process.stderr is not None
    _widen_pipe(process.stdout.fileno())
    try:
        # Big reads split at each line that starts a commit, rather than a read a line: a
        # history has a line for every changed path, and a Python loop a line cost more than
        # git spends printing them.
        pending = b"\n"
        while chunk := process.stdout.read(READ_CHUNK):
            blocks = (pending + chunk).split(_COMMIT_START)
            pending = blocks.pop()
            for block in blocks:
                if block:
                    yield _block(block)
            if len(pending) > MAX_BLOCK:
                pending = _trim(pending)
        if pending.strip():
            yield _block(pending)
        error = process.stderr.read()
        if process.wait() != 0:
            raise GitError(_message(error, process.returncode))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def _widen_pipe(fd: int) -> None:
    """Let git run ahead by up to a MiB of output (Linux; elsewhere the default stays): with
    the default 64 KiB, git stops whenever this process stores a batch."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setpipe is not None:
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep it
            fcntl.fcntl(fd, setpipe, READ_CHUNK)


def _block(block: bytes) -> Commit:
    """The commit of one block of ``git log`` output: its header line, then its paths."""
    header, _, rest = block.partition(b"\n")
    if len(header) > MAX_LINE:
        raise GitError("git log printed a line over 1 MiB: not a history this reads")
    lines = rest.split(b"\n", MAX_PATHS_READ + 1)[: MAX_PATHS_READ + 1]
    paths = [line.decode("utf-8", "replace") for line in lines if line.strip()]
    return _commit(header, paths[:MAX_PATHS_READ])


def _trim(block: bytes) -> bytes:
    """A commit's block cut to its header and first paths (the import reads no more), so that
    a commit touching millions of paths does not fill memory; what follows the cut is dropped
    when the block is read, as a path beyond the first ``MAX_PATHS_READ``."""
    header, _, rest = block.partition(b"\n")
    # The line after the header is empty (git's separator), then a path a line.
    lines = rest.split(b"\n", MAX_PATHS_READ + 1)
    if len(lines) <= MAX_PATHS_READ + 1:
        raise GitError(
            f"git log printed over {MAX_BLOCK >> 20} MiB for one commit's first"
            f" {MAX_PATHS_READ} paths: not a history this reads"
        )
    return header + b"\n" + b"\n".join(lines[: MAX_PATHS_READ + 1]) + b"\n"


def _commit(header: bytes, paths: list[str]) -> Commit:
    fields = header.split(_US, 8)
    if len(fields) != 9:
        raise GitError(f"git log printed a commit this cannot read: {header[:60]!r}")
    hash_, parents, when, email, trailers, committer, verdict, signer, subject = fields
    coauthors = []
    for value in trailers.split(_GS) if trailers else ():
        found = _ANGLE_EMAIL.search(value)
        address = found.group(1) if found else value
        if b"@" in address:
            coauthors.append(address.strip())
    try:
        author_time = int(when)
    except ValueError:
        raise GitError(f"commit {hash_[:12]!r} has no readable author time") from None
    return Commit(
        hash=hash_.decode("ascii", "replace"),
        parents=len(parents.split()),
        author_time=author_time,
        email=email,
        coauthor_emails=tuple(coauthors),
        subject=subject.decode("utf-8", "replace"),
        paths=tuple(paths),
        ssh_key=_signer(email, committer, verdict, signer),
    )


def _signer(author: bytes, committer: bytes, verdict: bytes, signer: bytes) -> bytes | None:
    """The SSH key fingerprint to record for a commit: only for a good signature (``G``, or
    ``U``: good, by a key no allowed-signers file vouches for, which is how it is read here),
    by an SSH key (a ``SHA256:`` fingerprint), made by the author (committer and author the
    same address), since a signature is its committer's."""
    if verdict not in (b"G", b"U") or author.strip().lower() != committer.strip().lower():
        return None
    return parse_fingerprint_text(signer.decode("ascii", "replace"))


def map_coauthors(
    repo: str, emails: Sequence[bytes], mailmap: str | None = None
) -> dict[bytes, bytes]:
    """Co-author addresses as the mailmap resolves them (``git check-mailmap``), by address."""
    out: dict[bytes, bytes] = {}
    unique = list(dict.fromkeys(emails))
    for start in range(0, len(unique), 200):
        chunk = unique[start : start + 200]
        contacts = [f"<{e.decode('utf-8', 'surrogateescape')}>" for e in chunk]
        command = _git(repo, "check-mailmap", *contacts, mailmap=mailmap)
        try:
            lines = _run(command).splitlines()
        except GitError:
            return {e: e for e in unique}  # an address git cannot parse maps to itself
        for email, line in zip(chunk, lines, strict=False):
            found = _ANGLE_EMAIL.search(line)
            out[email] = found.group(1) if found else email
    return out


def commit_type(paths: Sequence[str]) -> str:
    """``code``, unless every changed path is documentation (``docs``), tests (``testing``)
    or translations (``translation``). A merge or an empty commit changes no path: ``code``."""
    kinds = {_path_kind(p) for p in paths}
    if len(kinds) == 1:
        return kinds.pop()
    return "code"


@functools.lru_cache(maxsize=1 << 16)
def _path_kind(path: str) -> str:
    # Cached: a history touches the same paths again and again.
    *folders, name = path.strip('"').lower().split("/")
    dirs = set(folders)
    stem, dot, ext = name.rpartition(".")
    suffix, stem = (dot + ext, stem) if stem else ("", name)
    if suffix in _TRANSLATION_SUFFIXES or dirs & _TRANSLATION_DIRS:
        return "translation"
    if dirs & _TEST_DIRS or name.startswith("test_") or stem.endswith("_test"):
        return "testing"
    if suffix in _DOC_SUFFIXES or dirs & _DOC_DIRS or name.startswith(_DOC_NAMES):
        return "docs"
    return "code"


#: Cached: a history has far fewer authors than commits.
_handle: Final = functools.lru_cache(maxsize=1 << 16)(email_handle)


def _title(subject: str, commit_hash: str) -> str:
    """The subject as a record title: refused characters replaced, cut to 200 UTF-8 bytes on a
    character boundary; an empty subject becomes ``commit <hash>``."""
    text = _REFUSED.sub("\ufffd", subject).strip()
    # A character is at most 4 UTF-8 bytes: a short text needs no encoding to measure.
    if len(text) > MAX_TITLE // 4 and len(raw := text.encode("utf-8")) > MAX_TITLE:
        text = raw[:MAX_TITLE].decode("utf-8", "ignore").rstrip()
    return text or f"commit {commit_hash[:12]}"


def commit_body(commit: Commit, url: str, coauthor_map: dict[bytes, bytes]) -> ContributionBody:
    """The attested contribution of one commit: its type from its paths, its subject as the
    title, the repository URL and ``git:<hash>`` as the artifact, on behalf of the hashed
    author email then each co-author's (repeats dropped, at most 33 handles), and the SSH key
    that signed it, when its author did (``ssh_key``)."""
    emails = [commit.email, *(coauthor_map.get(e, e) for e in commit.coauthor_emails)]
    handles = tuple(dict.fromkeys(_handle(e) for e in emails))[:MAX_ON_BEHALF]
    return ContributionBody(
        type=commit_type(commit.paths),
        title=_title(commit.subject, commit.hash),
        artifacts=(Artifact(uri=url, digest=f"git:{commit.hash}"),),
        on_behalf=handles,
        ssh_key=commit.ssh_key,
    )


def sign_commit(
    key: SigningKey, project: bytes, commit: Commit, url: str, coauthor_map: dict[bytes, bytes]
) -> Record:
    """The signed record of one commit, timed at its author time (in milliseconds)."""
    body = commit_body(commit, url, coauthor_map)
    return sign_record(key, body=body, ts=commit.author_time * 1000, project=project)


def draft_commit(drafts: Drafts, commit: Commit, coauthor_map: dict[bytes, bytes]) -> Draft:
    """The unsigned record of one commit, exactly :func:`sign_commit`'s record before its
    signature, built by ``drafts`` (which checks only what varies from commit to commit)."""
    if commit.coauthor_emails:
        emails = [commit.email, *(coauthor_map.get(e, e) for e in commit.coauthor_emails)]
        handles = tuple(dict.fromkeys(_handle(e) for e in emails))[:MAX_ON_BEHALF]
    else:
        handles = (_handle(commit.email),)
    return drafts.draft(
        type=commit_type(commit.paths),
        title=_title(commit.subject, commit.hash),
        digest="git:" + commit.hash,
        on_behalf=handles,
        ts=commit.author_time * 1000,
        ssh_key=commit.ssh_key,
    )


#: The key a signing worker process signs with, set once when the worker starts.
_worker_key: SigningKey | None = None


def _start_worker(seed: bytes) -> None:
    # Ctrl-C reaches the whole process group: the importing process alone answers it (one
    # line, then it shuts the pool down), so a worker neither dies mid-batch nor prints a
    # traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _worker_key
    _worker_key = SigningKey(seed)


def _worker_sign(inputs: list[bytes]) -> list[bytes]:
    assert _worker_key is not None, "the pool's initializer sets the key"
    return sign_drafts(_worker_key, inputs)


class BatchSigner:
    """Signs batches of drafts, in ``workers`` processes beside this one when ``workers`` is
    at least 1, so that the signatures (the most expensive step of an import) are made in
    parallel with reading git, drafting and storing; with 0, here, in order.

    Only the bytes to sign go to a worker and only the 64-byte signatures come back: the
    records are finished here (:meth:`Drafts.signed`), so nothing but bytes crosses between
    processes. :meth:`submit` hands a batch over; :meth:`done` gives back each batch with its
    signatures, in the order submitted, waiting only while more than ``IN_FLIGHT`` a worker are in
    flight (or for all of them with ``wait_all``), so memory stays bounded by a few batches.
    """

    def __init__(self, key: SigningKey, *, workers: int) -> None:
        self._key = key
        self._pending: deque[tuple[list[Draft], Future[list[bytes]]]] = deque()
        self._ready: deque[tuple[list[Draft], list[bytes]]] = deque()
        self._workers = workers
        self._pool: ProcessPoolExecutor | None = None
        if workers > 0:
            methods = multiprocessing.get_all_start_methods()
            # fork starts a worker without importing anything again; spawn is the fallback.
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            self._pool = ProcessPoolExecutor(
                workers, mp_context=context, initializer=_start_worker, initargs=(key.seed,)
            )

    def submit(self, drafts: list[Draft]) -> None:
        inputs = [d.signing_input for d in drafts]
        if self._pool is None:
            self._ready.append((drafts, sign_drafts(self._key, inputs)))
            return
        self._pending.append((drafts, self._pool.submit(_worker_sign, inputs)))

    def done(self, *, wait_all: bool = False) -> Iterator[tuple[list[Draft], list[bytes]]]:
        while self._ready:
            yield self._ready.popleft()
        limit = 0 if wait_all else IN_FLIGHT * self._workers
        while self._pending and (len(self._pending) > limit or self._pending[0][1].done()):
            drafts, future = self._pending.popleft()
            yield drafts, future.result()

    def close(self) -> None:
        """Stop the workers; batches not yet started are dropped (an error or Ctrl-C)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
