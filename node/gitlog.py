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

SSH signatures are read and checked here, not by git. Asked for ``%G?`` and ``%GK``, git runs
``ssh-keygen`` twice a signed commit (about 18 ms: five hours for a million signed commits),
and no ``git log`` placeholder gives a commit's raw headers or its signed payload without
running it. So beside ``git log`` a ``git cat-file --batch-command --buffer`` process
(``--batch`` with a feeding thread on git before 2.36) runs for the whole import, one in each
process that parses commits (:class:`Signatures`): for each piece of ``git log`` output, the
hashes of the commits whose author committed them (the only ones whose signature is
recorded) are written to it, and their raw objects read back in the same order. Neither
process waits on a full pipe whatever the pipes' sizes, and the answers are matched to the
commits by hash, so both streams stay in step without a second walk of the history (which
``git rev-list | git cat-file`` would be, and which a branch moving during the import would
put out of step). Memory stays bounded: at most :data:`MAX_HEADER` bytes of a commit's headers
are held, and the rest of the object is hashed, or skipped, as it is read. The payload is
what git verifies: the object without its signature header (:func:`split_signature`, git's
own rule), and the signature is an Ed25519 SSHSIG in the namespace ``git``, verified strictly
(:func:`protocol.sshsig.git_signature`). That decides as git did (``G`` or ``U`` with no
allowed signers) for every signature ``ssh-keygen`` makes with an Ed25519 key; RSA, ECDSA and
security-key signatures, which git reported too, are not recorded, since only an Ed25519 key
can prove a claim; and a hand-made blob that OpenSSH reads leniently (a non-empty reserved
string, two signature headers, text around the armor) is refused. Measured on two busy
cores, an unsigned commit costs about 3 microseconds here and 5 in ``git cat-file``; a signed
one 0.1 to 0.25 ms, nearly all of it libsodium's verification (git took 18 ms).

The mapping from a commit to a record (docs/RECORD-FORMAT.md section 4.10) is deterministic:
the same commit, repository URL and mailmap always make the same record, so the same id, and
a second import of a history stores nothing new.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import queue
import re
import subprocess
import tempfile
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit, urlunsplit

from protocol.attest import MAX_ON_BEHALF, email_handle
from protocol.drafts import Draft, Drafts
from protocol.record import MAX_TITLE, Artifact, ContributionBody, Record, sign_record
from protocol.signing import SigningKey
from protocol.sshsig import HASHES, SshProof, git_signature

if TYPE_CHECKING:
    from hashlib import _Hash

__all__ = [
    "Commit",
    "CommitCount",
    "Fields",
    "GitError",
    "Signatures",
    "commit_body",
    "commit_fields",
    "commit_type",
    "draft_commit",
    "log_pieces",
    "map_coauthors",
    "parse_piece",
    "read_commits",
    "repository_url",
    "sign_commit",
    "signed_key",
    "split_signature",
]

#: One commit: a record separator, then hash, parents, author time, the mailmap-resolved
#: author email, the Co-authored-by trailer values, the committer's mailmap-resolved email
#: and the subject, split by unit separators; then ``--name-only`` lists the changed paths,
#: one a line.
_RS, _US, _GS = b"\x1e", b"\x1f", b"\x1d"
LOG_FORMAT: Final = (
    "%x1e%H%x1f%P%x1f%at%x1f%aE%x1f%(trailers:key=Co-authored-by,valueonly,separator=%x1d)"
    "%x1f%cE%x1f%s"
)
#: The header that holds a commit's signature, by the length of the repository's hashes
#: (SHA-1, SHA-256): git verifies only that one and leaves every ``gpgsig*`` header out of
#: the signed payload.
_SIGNATURE_HEADERS: Final = {40: b"gpgsig", 64: b"gpgsig-sha256"}
#: The most bytes of a commit object's headers read to find its signature: a commit with
#: longer headers (a hostile one; Linux's longest, with merge tags, are a few KiB) gets no key.
MAX_HEADER: Final = 64 << 10
#: The longest line ``git cat-file --batch`` prints before an object (hash, type, size).
_MAX_REPLY: Final = 160
#: Characters a record's single-line text refuses (docs/RECORD-FORMAT.md section 4, *Characters*):
#: a subject holding them keeps its other characters, with U+FFFD in their place.
_REFUSED: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_ANGLE_EMAIL: Final = re.compile(rb"<([^<>]*)>")
#: What ``bytes.strip`` strips: a line of a path list holding only these is no path.
_ASCII_SPACE: Final = " \t\n\r\x0b\x0c"
#: Bounds on what one commit may bring, so a hostile repository cannot exhaust memory.
MAX_LINE: Final = 1 << 20
MAX_PATHS_READ: Final = 10_000
#: The most bytes of one commit's output held before its paths beyond the first
#: ``MAX_PATHS_READ`` are dropped.
MAX_BLOCK: Final = 16 << 20
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
    #: Whether its author committed it (the same mailmap-resolved address, trimmed and
    #: ASCII-lowered): only then is its signature read.
    self_committed: bool = False


def _git(repo: str, *args: str, mailmap: str | None = None) -> list[str]:
    command = ["git", "-C", repo]
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


class CommitCount:
    """``git rev-list --count`` of ``rev`` running beside the import: git walks every commit
    to count them (about 7-10 microseconds a commit, ten seconds for a million), so a long
    history is imported while it counts, and the progress bar gains its end when it is done.
    A revision git refuses fails the count at once, and :meth:`wait` says why."""

    def __init__(self, repo: str, rev: str = "HEAD", *, no_merges: bool = False) -> None:
        command = _git(repo, "rev-list", "--count", *_range_args(rev, no_merges))
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        try:
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._errors)
        except OSError as exc:
            self._errors.close()
            raise GitError(f"cannot run git: {exc.strerror}") from None
        self._total: int | None = None

    def wait(self, timeout: float | None) -> int | None:
        """The number of commits, waiting up to ``timeout`` seconds (None: until git is done);
        None if git has not finished counting. Raises :class:`GitError` if git failed."""
        if self._total is not None:
            return self._total
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        assert self._process.stdout is not None
        out = self._process.stdout.read()
        if self._process.returncode != 0:
            self._errors.seek(0)
            raise GitError(_message(self._errors.read(64 << 10), self._process.returncode))
        self._total = int(out or 0)
        return self._total

    def poll(self) -> int | None:
        """The number of commits if git has counted them, else None (a failure, which the
        import's own ``git log`` reports, counts as not done)."""
        try:
            return self.wait(0)
        except GitError:
            return None

    def close(self) -> None:
        """Stop git if it is still counting."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._errors.close()


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
    """The commits of ``rev`` in ``git log`` order, streamed from one ``git log`` process
    (:func:`log_pieces`), with the key of each good SSH signature its author made
    (``ssh_key``), read beside it by one ``git cat-file`` process (:class:`Signatures`)."""
    pieces = log_pieces(repo, rev, no_merges=no_merges, mailmap=mailmap)
    signatures: Signatures | None = None
    try:
        signatures = Signatures(repo)
        for piece in pieces:
            yield from signatures.read(parse_piece(piece))
    finally:
        pieces.close()
        if signatures is not None:
            signatures.close()


def log_pieces(
    repo: str,
    rev: str = "HEAD",
    *,
    no_merges: bool = False,
    mailmap: str | None = None,
    size: int | None = None,
) -> Generator[bytes, None, None]:
    """The output of one ``git log`` of ``rev`` with the import's format, in pieces of about
    ``size`` bytes (:data:`READ_CHUNK` by default) that each hold whole commits
    (:func:`parse_piece` reads one): they cross to an import's worker processes as they are,
    so that reading git costs the importing process a copy, not a parse. Raises
    :class:`GitError` when git fails (for a revision it refuses, once its output ends)."""
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
            _git(repo, *args, mailmap=mailmap),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise GitError(f"cannot run git: {exc.strerror}") from None
    assert process.stdout is not None
    assert process.stderr is not None
    _widen_pipe(process.stdout.fileno())
    try:
        # Big reads cut at the last line that starts a commit, rather than a read a line: a
        # history has a line for every changed path, and a Python loop a line cost more than
        # git spends printing them. ``pending`` is the commit not yet whole, from its start.
        pending = b"\n"
        read = process.stdout.read
        size = size or READ_CHUNK
        while chunk := read(size):
            data = pending + chunk
            cut = data.rfind(_COMMIT_START)
            if cut > 0:
                yield data[:cut]
                pending = data[cut:]
            else:
                pending = data
            if len(pending) > MAX_BLOCK:
                pending = _COMMIT_START + _trim(pending[len(_COMMIT_START) :])
        if pending.strip():
            yield pending
        error = process.stderr.read()
        if process.wait() != 0:
            raise GitError(_message(error, process.returncode))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def parse_piece(piece: bytes) -> list[Commit]:
    """The commits of one piece of ``git log`` output (:func:`log_pieces`), in its order,
    without their signatures (:meth:`Signatures.read` adds them)."""
    return [_block(block) for block in piece.split(_COMMIT_START) if block]


def split_signature(header: bytes, name: bytes = b"gpgsig") -> tuple[bytes, bytes]:
    """A commit's headers (without the blank line that ends them) split as git splits them to
    verify a signature: the payload's headers, and the signature of header ``name`` (its
    first line's text after the name and a space, then each continuation line, which starts
    with a space, without that space). Every other header whose name starts with ``gpgsig``
    is left out of both, with its continuation lines (git's ``parse_buffer_signed_by_header``)."""
    payload: list[bytes] = []
    signature: list[bytes] = []
    start = name + b" "
    in_signature = other = False
    lines = header.split(b"\n")
    last = lines.pop()
    for line in [*(line + b"\n" for line in lines), *((last,) if last else ())]:
        if in_signature and line.startswith(b" "):
            signature.append(line[1:])
            continue
        if line.startswith(start):
            signature.append(line[len(start) :])
            in_signature, other = True, False
            continue
        if line.startswith(b"gpgsig"):
            other = True
        elif other and not line.startswith(b" "):
            other = False
        if not other:
            payload.append(line)
        in_signature = False
    return b"".join(payload), b"".join(signature)


def _signature_start(head: bytes, complete: bool, name: bytes) -> tuple[SshProof, _Hash] | None:
    """The Ed25519 SSH signature in the headers of a commit object whose first bytes are
    ``head`` (all of it when ``complete``), with its payload hashed up to the end of ``head``;
    None when it has none, or another kind, or headers longer than ``head``."""
    if not head.startswith(b"gpgsig") and b"\ngpgsig" not in head:
        return None  # no signature header: most commits, at the cost of one search
    end = (b"\n" + head).find(b"\n\n")  # where the headers end, even with none at all
    if end < 0:
        if not complete:
            return None
        end = len(head)
    payload, armored = split_signature(head[:end], name)
    proof = git_signature(armored) if armored else None
    if proof is None:
        return None
    hasher = HASHES[proof.hash_name](payload)
    hasher.update(head[end:])
    return proof, hasher


def signed_key(commit_object: bytes, name: bytes = b"gpgsig") -> bytes | None:
    """The fingerprint of the Ed25519 key whose SSH signature (namespace ``git``) in header
    ``name`` of the raw commit object ``commit_object`` verifies over its payload, else None:
    what :class:`Signatures` reads from a stream, for one object in memory."""
    started = _signature_start(commit_object[:MAX_HEADER], len(commit_object) <= MAX_HEADER, name)
    if started is None:
        return None
    proof, hasher = started
    hasher.update(memoryview(commit_object)[MAX_HEADER:])
    return proof.fingerprint if proof.verifies_digest(hasher.digest()) else None


class Signatures:
    """One ``git cat-file`` process for a whole import (or one a worker process), fed the
    hashes of the commits whose signature is read (see the module's docstring).

    Where git has it (2.36 and later), ``--batch-command --buffer`` is asked for each chunk's
    objects and then to flush: git writes a pipe's worth at a time instead of flushing after
    every object, which halved the CPU both sides spend on the pipe (measured on 50,999
    commits: 0.41 s against 0.9). git answers nothing before the flush, so the commands are
    written here, at once. Older git answers ``--batch``, object by object, while it reads
    the hashes: a thread writes them, so that neither side waits on a full pipe."""

    def __init__(self, repo: str) -> None:
        self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._commands = _batch_commands()
        mode = ["--batch-command", "--buffer"] if self._commands else ["--batch"]
        try:
            self._process = subprocess.Popen(
                _git(repo, "cat-file", *mode),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._errors,
            )
        except OSError as exc:
            self._errors.close()
            raise GitError(f"cannot run git: {exc.strerror}") from None
        assert self._process.stdout is not None
        self._out = self._process.stdout
        _widen_pipe(self._out.fileno())
        self._hashes: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._feeder: threading.Thread | None = None
        if not self._commands:
            self._feeder = threading.Thread(
                target=self._feed, name="import-git-hashes", daemon=True
            )
            self._feeder.start()

    def _feed(self) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        # A closed pipe (git stopped, or was stopped by close) ends the feeding quietly: the
        # reader sees git's output end and says why.
        with contextlib.suppress(OSError, ValueError):
            while (hashes := self._hashes.get()) is not None:
                stdin.write(hashes)
                stdin.flush()
        with contextlib.suppress(OSError, ValueError):
            stdin.close()

    def read(self, commits: list[Commit]) -> list[Commit]:
        """``commits``, each that its author committed given the key of its good SSH
        signature, if any."""
        asked = [commit for commit in commits if commit.self_committed]
        if not asked:
            return commits
        names = [c.hash.encode("ascii", "replace") for c in asked]
        if self._commands:
            stdin = self._process.stdin
            assert stdin is not None
            # A closed pipe (git stopped) is said by the reading below, with git's reason.
            with contextlib.suppress(OSError, ValueError):
                stdin.write(b"".join([b"contents " + n + b"\n" for n in names]) + b"flush\n")
                stdin.flush()
        else:
            self._hashes.put(b"\n".join(names) + b"\n")
        readline, read = self._out.readline, self._out.read
        for commit, name in zip(asked, names, strict=True):
            # Most commits are read with two calls and one search in C: an object that
            # does not hold ``gpgsig`` has no signature header.
            line = readline(_MAX_REPLY)
            fields = line.split(b" ")
            if len(fields) != 3 or fields[0] != name or fields[1] != b"commit":
                raise GitError(self._failure(commit.hash, line))
            try:
                size = int(fields[2])
            except ValueError:
                raise GitError(self._failure(commit.hash, line)) from None
            if size >= MAX_HEADER:
                commit.ssh_key = self._long(commit.hash, size)
                continue
            content = read(size + 1)
            if len(content) != size + 1 or content[-1] != 10:
                raise GitError(f"git cat-file stopped in the middle of commit {commit.hash[:12]}")
            if b"gpgsig" in content:
                header = _SIGNATURE_HEADERS.get(len(name), b"gpgsig")
                commit.ssh_key = signed_key(content[:-1], header)
        return commits

    def _long(self, commit_hash: str, size: int) -> bytes | None:
        """The key of a commit object of ``MAX_HEADER`` bytes or more, whose headers only are
        held: the rest is hashed, or skipped, a piece at a time."""
        head = self._out.read(MAX_HEADER)
        name = _SIGNATURE_HEADERS.get(len(commit_hash), b"gpgsig")
        started = _signature_start(head, size == MAX_HEADER, name)
        left = size - len(head)
        while left > 0 and (piece := self._out.read(min(left, READ_CHUNK))):
            if started is not None:
                started[1].update(piece)
            left -= len(piece)
        if len(head) < MAX_HEADER or left or self._out.read(1) != b"\n":
            raise GitError(f"git cat-file stopped in the middle of commit {commit_hash[:12]}")
        if started is None:
            return None
        proof, hasher = started
        return proof.fingerprint if proof.verifies_digest(hasher.digest()) else None

    def _failure(self, commit_hash: str, line: bytes) -> str:
        if line:
            said = line.decode("utf-8", "replace").strip()[:80]
            return f"git cat-file could not read commit {commit_hash[:12]}: {said}"
        self._process.wait()
        self._errors.seek(0)
        error = self._errors.read(64 << 10)
        return "git cat-file stopped: " + _message(error, self._process.returncode)

    def close(self) -> None:
        """Stop git (at the end of a history it has stopped already) and the feeding thread."""
        if self._feeder is None:
            with contextlib.suppress(OSError, ValueError):
                assert self._process.stdin is not None
                self._process.stdin.close()
        else:
            self._hashes.put(None)
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        if self._feeder is not None:
            self._feeder.join()
        self._out.close()
        self._errors.close()


@functools.lru_cache(maxsize=1)
def _batch_commands() -> bool:
    """Whether this machine's git has ``cat-file --batch-command`` with its ``flush`` (2.36)."""
    try:
        said = _run(["git", "version"]).decode("ascii", "replace")
    except GitError:
        return False
    found = re.search(r"(\d+)\.(\d+)", said)
    return found is not None and (int(found.group(1)), int(found.group(2))) >= (2, 36)


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
    # One decoding for all the paths: a newline is never part of a UTF-8 sequence, so this
    # is each line decoded alone.
    lines = rest.decode("utf-8", "replace").split("\n", MAX_PATHS_READ + 1)
    paths = [line for line in lines[: MAX_PATHS_READ + 1] if line.strip(_ASCII_SPACE)]
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
    fields = header.split(_US, 6)
    if len(fields) != 7:
        raise GitError(f"git log printed a commit this cannot read: {header[:60]!r}")
    hash_, parents, when, email, trailers, committer, subject = fields
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
    # A signature is its committer's, who may apply someone else's patch: it is read, and
    # its key recorded, only for a commit its author committed.
    return Commit(
        hash_.decode("ascii", "replace"),
        len(parents.split()),
        author_time,
        email,
        tuple(coauthors),
        subject.decode("utf-8", "replace"),
        tuple(paths),
        None,
        email == committer or email.strip().lower() == committer.strip().lower(),
    )


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
    if len(paths) == 1:  # most commits: no set to build
        return _path_kind(paths[0])
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


@functools.lru_cache(maxsize=1 << 16)
def _author_only(email: bytes) -> tuple[str]:
    # The handle list of a commit without co-authors, one object an author: no tuple built a
    # commit, and the drafts' cache of encoded lists finds it by identity.
    return (_handle(email),)


def _title(subject: str, commit_hash: str) -> str:
    """The subject as a record title: refused characters replaced, cut to 200 UTF-8 bytes on a
    character boundary; an empty subject becomes ``commit <hash>``."""
    clean = _REFUSED.search(subject) is None  # most subjects: nothing to replace
    text = (subject if clean else _REFUSED.sub("\ufffd", subject)).strip()
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


#: What a commit's record holds besides what every record of its import shares: the
#: arguments of :meth:`protocol.drafts.Drafts.record` before ``sign`` (type, title, artifact
#: digest, handles, time in milliseconds, SSH key).
Fields = tuple[str, str, str, tuple[str, ...], int, "bytes | None"]


def commit_fields(commit: Commit, coauthor_map: dict[bytes, bytes]) -> Fields:
    """The fields of one commit's record, exactly :func:`commit_body`'s and
    :func:`sign_commit`'s (checked by :class:`~protocol.drafts.Drafts` when drafted)."""
    if commit.coauthor_emails:
        emails = [commit.email, *(coauthor_map.get(e, e) for e in commit.coauthor_emails)]
        handles = tuple(dict.fromkeys(_handle(e) for e in emails))[:MAX_ON_BEHALF]
    else:
        handles = _author_only(commit.email)
    return (
        commit_type(commit.paths),
        _title(commit.subject, commit.hash),
        "git:" + commit.hash,
        handles,
        commit.author_time * 1000,
        commit.ssh_key,
    )


def draft_commit(drafts: Drafts, commit: Commit, coauthor_map: dict[bytes, bytes]) -> Draft:
    """The unsigned record of one commit, exactly :func:`sign_commit`'s record before its
    signature, built by ``drafts`` (which checks only what varies from commit to commit)."""
    type_, title, digest, handles, ts, ssh_key = commit_fields(commit, coauthor_map)
    return drafts.draft(
        type=type_, title=title, digest=digest, on_behalf=handles, ts=ts, ssh_key=ssh_key
    )
