"""A project's existing history and the people in it: ``import-git``, ``claim``,
``confirm-claim`` (docs/INTERFACES.md; the record rules are docs/RECORD-FORMAT.md 4.10-5.10).

Records are signed here with the home's key in both modes. Reads (the project, its
maintainers, a claim) come from the home's store, which SQLite lets this process read beside a
running node. Writes go through the running node's ``POST /api/v1/bundles`` when one runs, so
that they are gossiped and offered in reconciliation at once; without a node they are stored
here, in large transactions, and acknowledged only once committed.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from node.cli.client import NodeClient, running_client
from node.cli.errors import CommandError
from node.cli.output import emit, home_of, id_prefix, identity, now_ms
from node.cli.parser import PROJECT_HELP, add_command
from node.cli.store_access import home_policy, open_store
from node.gitlog import CommitCount, GitError, log_pieces, repository_url
from node.gitrecords import BatchSigner, Source
from node.home import Home
from node.metrics import Metrics
from node.store.bulk import MAX_BULK, Attested
from node.store.sqlite import Store
from node.sync.admission import Admission
from node.textout import Progress
from protocol.attest import ClaimBody, ClaimConfirmationBody, handle_from_text
from protocol.bundle import BundleWriter
from protocol.errors import InvalidRecord, ProtocolError
from protocol.ledger import project_state
from protocol.record import Artifact, Body, Record, decode_trusted, sign_record
from protocol.signing import SigningKey
from protocol.sshsig import claim_message, fingerprint_text, parse_armored, parse_proof
from protocol.validation import MAX_CLOCK_SKEW_MS

__all__ = ["register"]

#: The most commits stored per transaction by ``import-git`` without a node: the bulk
#: path's most. Each record's id lands on a random page of the id index, so once the index
#: outgrows the page cache (about a million records) a transaction rewrites nearly every page
#: of it: the bigger the transaction, the fewer times (see ``node.store.bulk.MAX_BULK``).
STORE_BATCH = MAX_BULK
#: The fewest: a history is stored in at least about eight transactions (when it has more
#: commits than this), so that storing one overlaps making the next.
MIN_STORE_BATCH = 5_000
#: The page cache of the import's store connection, in KiB (a node's is 16 MiB): with it,
#: the index pages a batch lands on stay in memory at a million records (measured: a tenth
#: less CPU a record, and a fifth less time, than with 16 MiB).
IMPORT_PAGE_CACHE_KIB = 64 * 1024
#: Bytes of ``git log`` output one task of ``import-git``'s workers takes (about 2,000
#: commits of a synthetic history, a few hundred of Linux's): small beside a store batch, so
#: reading, making records and storing overlap from the start.
PIECE_BYTES = 256 << 10
#: Commits from which ``import-git`` makes records in worker processes (with two cores or
#: more).
PARALLEL_FROM = 10_000
#: Commits read from which ``import-git`` starts its worker processes when git has not
#: counted the history (no terminal to show the count on, or a long count).
UNCOUNTED_PARALLEL_FROM = 2_000
#: The most worker processes one import starts.
MAX_WORKERS = 4
#: Seconds ``import-git`` waits for git to count the commits before it starts without the
#: total: a long history is imported while git counts it, and the progress bar gains its end
#: and time left when the count arrives.
COUNT_WAIT_S = 0.5
#: Records per ``POST /api/v1/bundles`` request through a node (its limit is 4096).
SUBMIT_BATCH = 2000
#: Skipped commits listed one by one; the rest are counted.
SHOWN_SKIPPED = 20


class _Sink:
    """Where signed records go: the running node's API, else the home's store, through the
    home's local policy either way (a block or a quota refuses them as it would a peer's)."""

    def __init__(
        self, home: Home, store: Store, client: NodeClient | None, *, published: bool
    ) -> None:
        self.store = store
        self.client = client
        self.published = published
        self.admit = Admission(store, Metrics(), lambda: home_policy(home, store))
        self.new = 0
        self.held = 0

    def put(self, rows: list[Attested]) -> None:
        """Store an import's rows (:meth:`Admission.attested`), or submit them to the node."""
        if self.client is not None:
            self._submit([row.raw for row in rows])
            return
        flags, refused = self.admit.attested(rows, published=self.published, source="local")
        self._count(flags, refused)

    def put_records(self, records: list[Record]) -> None:
        """Store records of any kind, or submit them to the node."""
        if self.client is not None:
            self._submit([record.raw for record in records])
            return
        stored, refused = self.admit(
            list(enumerate(records)), published=self.published, source="local"
        )
        self._count([new for _, new in stored], refused)

    def _count(self, flags: list[bool], refused: list[tuple[int, str]]) -> None:
        if refused:
            raise CommandError(f"refused by this node's policy: {refused[0][1]}")
        self.new += sum(flags)
        self.held += len(flags) - sum(flags)

    def _submit(self, raws: list[bytes]) -> None:
        assert self.client is not None
        for start in range(0, len(raws), SUBMIT_BATCH):
            chunk = raws[start : start + SUBMIT_BATCH]
            body = BundleWriter.header() + b"".join(map(BundleWriter.frame, chunk))
            _, answer = self.client.post_raw("/api/v1/bundles", body)
            if answer["rejected"]:
                first = answer["rejected"][0]
                raise CommandError(f"the node refused a record: {first['error']}")
            self.new += int(answer["new"])
            self.held += int(answer["duplicates"])


def _project(store: Store, text: str) -> bytes:
    try:
        return store.resolve_prefix(id_prefix(text), kind="project")
    except ProtocolError as exc:
        raise CommandError(f"--project {text}: {exc.message}") from None


def _require_maintainer(store: Store, pid: bytes, key: SigningKey, what: str) -> None:
    """Refuse unless ``key`` is a maintainer of the project now.

    Only the genesis and the project updates decide it, and updates travel in the meta scope:
    reading those, rather than folding the project, keeps a re-import of a million-commit
    history from folding a million records first.
    """
    genesis = store.get(pid)
    if genesis is None:
        raise CommandError(f"project {pid.hex()[:16]} is not held here")
    updates = [decode_trusted(raw) for raw in store.raw_many([i for _, i in store.items("meta")])]
    if key.public_key not in project_state(genesis, updates).maintainers:
        raise CommandError(f"only a maintainer of the project can {what}; you are not one")


def _sign(key: SigningKey, body: Body, project: bytes) -> Record:
    try:
        return sign_record(key, body=body, ts=now_ms(), project=project)
    except InvalidRecord as exc:
        raise CommandError(f"{exc.code}: {exc.message}") from None


def cmd_import_git(args: argparse.Namespace) -> int:
    home = home_of(args)
    key = identity(home)
    repo = str(Path(args.repo))
    if args.rev.startswith("-"):
        raise CommandError(f"--rev {args.rev!r}: a revision or range does not start with '-'")
    if args.mailmap is not None and not Path(args.mailmap).is_file():
        raise CommandError(f"--mailmap {args.mailmap}: no such file")
    try:
        url = args.url or repository_url(repo)
        Artifact(uri=url, digest="git:0")
        # git walks every commit to count them: only for a progress bar someone sees.
        count = CommitCount(repo, args.rev, no_merges=args.no_merges) if _shows_progress() else None
    except GitError as exc:
        raise CommandError(f"{repo}: {exc}") from None
    except InvalidRecord as exc:
        raise CommandError(f"repository URL {url[:80]!r}: {exc.message}") from None
    try:
        total = None if count is None else count.wait(COUNT_WAIT_S)
        with open_store(home) as store:
            pid = _project(store, args.project)
            _require_maintainer(store, pid, key, "import its history")
            client = None if args.dry_run else running_client(home)
            sink = _Sink(home, store, client, published=True)
            store.use_page_cache(IMPORT_PAGE_CACHE_KIB)
            summary = _import(args, repo, url, key, pid, sink, count, total)
    except GitError as exc:
        raise CommandError(f"{repo}: {exc}") from None
    finally:
        if count is not None:
            count.close()
    text = (
        f"{_count(summary['commits'], 'commit')} by {_count(summary['authors'], 'author')}: "
        f"{_count(summary['new'], 'new contribution')}, {summary['held']} already held, "
        f"{len(summary['skipped'])} skipped"
        + (" (dry run: nothing stored)" if args.dry_run else "")
    )
    lines = [f"skipped {s['commit'][:12]}: {s['reason']}" for s in summary["skipped"]]
    if len(lines) > SHOWN_SKIPPED:
        lines = [*lines[:SHOWN_SKIPPED], f"... {len(lines) - SHOWN_SKIPPED} more skipped"]
    emit(args, summary, "\n".join([*lines, text]))
    return 0


def _count(n: int, thing: str) -> str:
    """``1 commit``, ``2 commits``."""
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _import(
    args: argparse.Namespace,
    repo: str,
    url: str,
    key: SigningKey,
    pid: bytes,
    sink: _Sink,
    count: CommitCount | None,
    total: int | None,
) -> dict[str, Any]:
    """Read, make and store the records of the commits in batches; what happened, as
    ``--json`` prints it.

    This process reads ``git log`` and stores; the records are made (drafted, signed,
    finished: :class:`node.gitrecords.RecordMaker`) in worker processes when the history is long
    enough to pay for starting them, else here. ``total`` is the number of commits if git
    counted them quickly (None for a long history, counted meanwhile by ``count``, or for one
    not counted at all: no terminal shows the progress). The summary is returned only after
    every batch is committed.
    """
    progress = Progress(f"importing {Path(repo).resolve().name}", total=total)
    authors: set[bytes] = set()
    skipped: list[dict[str, str]] = []
    unstored: list[Attested] = []
    commits = 0
    latest_ms = now_ms() + MAX_CLOCK_SKEW_MS
    source = Source(repo, args.mailmap)
    signer = BatchSigner(key, pid, url, source, workers=_workers(total))
    writer = ThreadPoolExecutor(1, thread_name_prefix="import-git-store")
    writing: Future[None] | None = None

    def store_batch() -> int:
        # About an eighth of the history (of what has been read, while git counts).
        known = progress.total or commits
        return max(1, min(STORE_BATCH, max(MIN_STORE_BATCH, known // 8)))

    def store(wait_all: bool = False) -> None:
        nonlocal commits
        for made in signer.done(wait_all=wait_all):
            unstored.extend(map(Attested._make, made.rows))
            skipped.extend({"commit": commit, "reason": reason} for commit, reason in made.skipped)
            authors.update(made.authors)
            commits += len(made.rows) + len(made.skipped)
            while len(unstored) >= store_batch():
                put()
            progress.advance(len(made.rows) + len(made.skipped))
        while wait_all and unstored:
            put()

    def put() -> None:
        # The batch is committed in the writer thread while this one reads the next: SQLite
        # works without the GIL, so the commit costs this thread little. One batch is
        # written at a time; waiting for the one before raises its refusal, if any.
        nonlocal writing
        if not unstored:
            return
        # In the order made (by time): the store inserts them in id order itself.
        size = store_batch()
        rows = unstored[:size]
        del unstored[:size]
        if writing is not None:
            writing.result()
        writing = writer.submit(write, rows)

    def write(rows: list[Attested]) -> None:
        if args.dry_run:
            held = len(rows) - len(sink.store.missing([r.id for r in rows]))
            sink.new += len(rows) - held
            sink.held += held
        else:
            sink.put(rows)

    pieces = log_pieces(
        repo, args.rev, no_merges=args.no_merges, mailmap=args.mailmap, size=PIECE_BYTES
    )
    # The import's objects are freed as they go (nothing it makes refers to itself), while
    # the collector walked every row waiting to be stored, again and again: with it off,
    # this process spends a third less CPU at a million commits.
    collecting = gc.isenabled()
    gc.disable()
    try:
        # This process reads git's output and stores; each piece of it is parsed and made
        # into records by a worker (or here, while the history read is short).
        for piece in pieces:
            if progress.total is None and count is not None:
                progress.total = count.poll()
            if not signer.workers:
                signer.start_workers(_workers(progress.total, commits))
            signer.submit(piece, latest_ms)
            store()
        # git's output has ended: what is made already is stored while the workers make
        # the last pieces, so that only those are stored after them, on one core.
        put()
        store(wait_all=True)
        if writing is not None:
            writing.result()  # every batch committed: the summary may be acknowledged
    except GitError as exc:
        raise CommandError(f"{repo}: {exc}") from None
    except BrokenExecutor:
        raise CommandError("a worker process stopped unexpectedly (out of memory?)") from None
    finally:
        pieces.close()
        signer.close()
        writer.shutdown(wait=True, cancel_futures=True)
        progress.finish()
        if collecting:
            gc.enable()
    return {
        "project": pid.hex(),
        "url": url,
        "commits": commits,
        "authors": len(authors),
        "new": sink.new,
        "held": sink.held,
        "skipped": skipped,
        "dry_run": bool(args.dry_run),
    }


def _workers(total: int | None, read: int = 0) -> int:
    """Worker processes for an import of ``total`` commits, or, when git has not counted
    them (None), of which ``read`` are read so far: none for a short history (that would
    spend more on starting them than they save: fewer than :data:`PARALLEL_FROM` commits,
    or fewer than :data:`UNCOUNTED_PARALLEL_FROM` read) or on one core, else one a core, up
    to :data:`MAX_WORKERS`. Measured per commit on the 2-core reference machine at a million
    commits: the workers 42 microseconds of CPU (the signature 23 of it), ``git log`` 21 and
    the workers' ``git cat-file`` 5.4, this process (reading, storing) 18; with a worker a
    core, they keep both cores busy, where one worker beside this process (then parsing too)
    left a core idle a quarter of the time."""
    short = read < UNCOUNTED_PARALLEL_FROM if total is None else total < PARALLEL_FROM
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if short or (cores or 1) < 2:
        return 0
    return min(cores or 1, MAX_WORKERS)


def _shows_progress() -> bool:
    """Whether the progress bar is drawn (stderr is a terminal): only then is the history
    counted, for the bar's end and ETA."""
    return sys.stderr.isatty()


def cmd_claim(args: argparse.Namespace) -> int:
    home = home_of(args)
    key = identity(home)
    try:
        handle = handle_from_text(args.handle)
    except InvalidRecord as exc:
        raise CommandError(exc.message) from None
    with open_store(home) as store:
        pid = _project(store, args.project)
        proof = None
        if args.ssh_key is not None:
            proof = _ssh_proof(args.ssh_key, claim_message(key.public_key, pid, handle))
        record = _sign(key, ClaimBody(handle=handle, proof=proof), pid)
        how = _deliver(home, store, record)
    fingerprint = None if proof is None else fingerprint_text(parse_proof(proof).fingerprint)
    summary = {"id": record.id.hex(), "handle": handle, "project": pid.hex()}
    if fingerprint is None:
        then = (
            "it counts once a maintainer of the project runs: commons confirm-claim "
            + record.id.hex()[:16]
        )
    else:
        summary["proof"] = fingerprint
        then = (
            f"proven by SSH key {fingerprint}, it counts without a confirmation where a "
            f"maintainer's import recorded that key for {handle} (see: commons claims "
            f"--project {pid.hex()[:16]})"
        )
    emit(args, summary, f"claim {record.id.hex()} of {handle} {how}; {then}")
    return 0


#: The longest ``ssh-keygen -Y sign`` is given to sign a claim (it may ask for a passphrase).
SSH_SIGN_TIMEOUT = 300


def _ssh_proof(key_path: str, message: bytes) -> bytes:
    """The SSH signature of ``message`` by the key at ``key_path`` (a private key, or a public
    key whose private half an agent holds), made by ``ssh-keygen -Y sign`` in the
    ``commons-claim`` namespace, checked here before it is sent.

    The message is written to a private temporary file rather than piped, so that
    ``ssh-keygen`` keeps the terminal to ask for a passphrase."""
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        raise CommandError("--ssh-key needs ssh-keygen (OpenSSH 8.1 or later) on the PATH")
    if not Path(key_path).is_file():
        raise CommandError(f"--ssh-key {key_path}: no such file")
    with tempfile.TemporaryDirectory(prefix="commons-claim-") as folder:
        target = Path(folder) / "claim"
        target.write_bytes(message)
        command = [ssh_keygen, "-q", "-Y", "sign", "-f", key_path, "-n", "commons-claim"]
        try:
            done = subprocess.run(
                [*command, str(target)],
                capture_output=True,
                timeout=SSH_SIGN_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CommandError("ssh-keygen did not sign in time") from None
        signature = Path(f"{target}.sig")
        if done.returncode != 0 or not signature.is_file():
            said = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise CommandError(
                f"ssh-keygen could not sign with {key_path}: "
                + (said[-1] if said else f"exit {done.returncode}")
            )
        text = signature.read_text("ascii", "replace")
    try:
        blob = parse_armored(text)
    except InvalidRecord as exc:
        # ssh-keygen signs well: what fails here is the kind of key (RSA, ECDSA, a security key).
        raise CommandError(
            f"{key_path}: only an Ed25519 SSH key can prove a claim ({exc.message})"
        ) from None
    if not parse_proof(blob).verifies(message):  # pragma: no cover - ssh-keygen signed it
        raise CommandError("ssh-keygen made a signature that does not verify")
    return blob


def cmd_confirm_claim(args: argparse.Namespace) -> int:
    home = home_of(args)
    key = identity(home)
    with open_store(home) as store:
        try:
            claim = store.get(store.resolve_prefix(id_prefix(args.claim), kind="claim"))
        except ProtocolError as exc:
            raise CommandError(f"{args.claim}: {exc.message}") from None
        assert claim is not None
        assert claim.project is not None
        if claim.author == key.public_key:
            raise CommandError("this is your own claim: another maintainer must confirm it")
        _require_maintainer(store, claim.project, key, "confirm a claim")
        record = _sign(key, ClaimConfirmationBody(claim=claim.id), claim.project)
        how = _deliver(home, store, record)
    handle = str(getattr(claim.body, "handle", ""))
    emit(
        args,
        {"id": record.id.hex(), "claim": claim.id.hex(), "handle": handle},
        f"claim-confirmation {record.id.hex()} {how}: {handle} now counts for "
        f"{claim.author_peer_id} in this project (withdraw it with: commons retract "
        f"{record.id.hex()[:16]})",
    )
    return 0


def _deliver(home: Home, store: Store, record: Record) -> str:
    """Publish one record through the node, or store it for the node to publish later."""
    client = running_client(home)
    _Sink(home, store, client, published=False).put_records([record])
    if client is not None:
        return "published"
    return "stored (no node is running: it spreads when the node next runs)"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add = partial(add_command, sub, common)
    p = add(
        "import-git",
        cmd_import_git,
        "record a git repository's history: one attested contribution per commit, on behalf "
        "of its author's and co-authors' hashed emails",
    )
    p.add_argument("repo", metavar="REPO", help="the repository's folder")
    p.add_argument("--project", required=True, metavar="PROJECT", help=PROJECT_HELP)
    p.add_argument("--rev", default="HEAD", metavar="RANGE", help="what to import (default HEAD)")
    p.add_argument("--no-merges", action="store_true", help="leave merge commits out")
    p.add_argument("--mailmap", metavar="FILE", help="a mailmap file to resolve emails with")
    p.add_argument(
        "--url", metavar="URL", help="the repository's public URL (default: its origin remote)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="read and sign, count what is new, store nothing"
    )
    p = add(
        "claim",
        cmd_claim,
        "claim a handle (email:ADDRESS, forge:HOST/USER, orcid:ID) as yours in a project",
    )
    p.add_argument("handle", metavar="HANDLE", help="email:ADDRESS is hashed before it is sent")
    p.add_argument("--project", required=True, metavar="PROJECT", help=PROJECT_HELP)
    p.add_argument(
        "--ssh-key",
        metavar="PATH",
        help="prove it with the Ed25519 SSH key that signed your commits (signed by "
        "ssh-keygen -Y sign; a .pub file signs through ssh-agent)",
    )
    p = add("confirm-claim", cmd_confirm_claim, "as a maintainer, confirm someone's claim")
    p.add_argument("claim", metavar="CLAIM", help="the claim's id, or a prefix of at least 8")
