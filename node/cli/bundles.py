"""Bundle files: ``export``, ``import``, ``verify``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from node.cli.bundlefile import STDIO, BundleScan, bundle_size, read_entries, scan_bundle
from node.cli.client import NodeClient, running_client
from node.cli.errors import CommandError
from node.cli.output import emit, home_of, id_prefix, now_ms
from node.cli.parser import add_command
from node.cli.store_access import home_policy, open_store
from node.metrics import Metrics
from node.policy import Policy
from node.sync.admission import Admission, validate_batch
from node.textout import Progress
from protocol.bundle import BundleWriter
from protocol.errors import ProtocolError
from protocol.record import Record

__all__ = ["register"]


#: Records validated and stored per batch by ``commons import``.
IMPORT_BATCH = 1000
#: Bytes of records handed to a running node in one request (its limit is 16 MiB).
SUBMIT_BYTES = 8 << 20
#: Refused records that ``import`` and ``verify`` describe one by one; the rest are counted
#: by error code (``--json`` lists them all).
SHOWN_PROBLEMS = 20
#: A bundle of at most this many records has every record listed by ``verify``.
LISTED_RECORDS = 100


def problem_report(problems: list[str], total: int, rejected: list[dict[str, Any]]) -> list[str]:
    """The first :data:`SHOWN_PROBLEMS` of ``problems`` (one line each, in file order) out of
    ``total``, then, when some were left out, what they were: a count per error code of
    ``rejected``, so that a bundle with a million bad records is summed up rather than cut
    off unannounced."""
    lines = problems[:SHOWN_PROBLEMS]
    if total > SHOWN_PROBLEMS:
        codes: dict[str, int] = {}
        for refusal in rejected:
            code = str(refusal["error"]).partition(":")[0]
            codes[code] = codes.get(code, 0) + 1
        by_code = ", ".join(f"{n} {code}" for code, n in sorted(codes.items(), key=_most))
        lines.append(
            f"... {total - SHOWN_PROBLEMS} more not shown"
            + (f"; invalid records by error: {by_code}" if by_code else "")
            + " (--json lists every one)"
        )
    return lines


def _most(item: tuple[str, int]) -> tuple[int, str]:
    return (-item[1], item[0])


def cmd_export(args: argparse.Namespace) -> int:
    path = Path(args.file)
    to_stdout = path == STDIO
    if to_stdout and sys.stdout.isatty():
        raise CommandError(
            "a bundle is binary: redirect the output (`commons export - > FILE`) or give a FILE"
        )
    if not to_stdout and not args.force and path.exists():
        raise CommandError(f"{path} exists: give --force to replace it")
    home = home_of(args)
    with open_store(home) as store:
        if args.project:
            raws: list[bytes] = []
            for text in args.project:
                try:
                    pid = store.resolve_prefix(id_prefix(text), kind="project")
                except ProtocolError as exc:
                    raise CommandError(f"--project {text}: {exc.message}") from None
                genesis, records = store.project_records(pid)
                assert genesis is not None
                raws.append(genesis.raw)
                raws.extend(r.raw for r in records)
            source: Any = iter(raws)
            total = len(raws)
        else:
            total = store.count()
            source = store.iter_raw()
        where = "standard output" if to_stdout else path.name
        progress = Progress(f"exporting to {where}", total=total)
        try:
            if to_stdout:
                count = _write_bundle(sys.stdout.buffer, source, progress)
                sys.stdout.buffer.flush()
            else:
                count = _export_to_file(path, source, progress)
        finally:
            progress.finish()
    summary = {"records": count}
    if to_stdout:
        # Standard output carries the bundle and nothing else: the summary goes beside it.
        sys.stderr.write((json.dumps(summary) if args.json else f"exported {count} records") + "\n")
    else:
        emit(args, summary, f"exported {count} records to {path}")
    return 0


def _write_bundle(out: BinaryIO, source: Iterator[bytes], progress: Progress) -> int:
    """Write a bundle of the records of ``source`` to ``out``; return how many."""
    out.write(BundleWriter.header())
    count = 0
    for raw in source:
        frame = BundleWriter.frame(raw)
        out.write(frame)
        count += 1
        progress.add_bytes(len(frame))
        progress.advance()
    return count


def _export_to_file(path: Path, source: Iterator[bytes], progress: Progress) -> int:
    """Write the bundle beside ``path`` and rename it into place: never a half-written file."""
    tmp = path.with_name(path.name + ".partial")
    try:
        with tmp.open("wb") as f:
            count = _write_bundle(f, source, progress)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None
    return count


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    home = home_of(args)
    scan = BundleScan()
    try:
        size = bundle_size(path)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    progress = Progress(f"importing {_name(path)}", total=size, unit="bytes")
    client = running_client(home)
    try:
        if client is not None:
            # A node runs for this home: it takes the records, so that they are gossiped and
            # offered in reconciliation like any it receives (stored behind its back, they
            # would wait for the next sync with a peer that lacks them).
            _import_through(client, path, scan, progress)
        else:
            with open_store(home) as store:
                _import_into(store, home_policy(home, store), path, scan, progress)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        progress.finish()
    problems = [f"record {r['index']}: rejected: {r['error']}" for r in scan.rejected]
    lines = problem_report(problems, len(problems), scan.rejected)
    summary = (
        f"imported {scan.accepted} new records, {scan.duplicates} already held, "
        f"{len(scan.rejected)} rejected"
    )
    emit(args, scan.to_json(), "\n".join([*lines, summary]))
    if scan.rejected:
        raise CommandError(f"{len(scan.rejected)} record(s) rejected and not stored")
    return 0


def _name(path: Path) -> str:
    """How a progress bar names the bundle it reads."""
    return "standard input" if path == STDIO else path.name


def _import_into(
    store: Any, policy: Policy, path: Path, scan: BundleScan, progress: Progress
) -> None:
    """Read the bundle in batches, validate on two threads, store each batch in one commit
    (what local policy admits: a blocked or over-limit record is refused like an invalid one).

    A record too large to read is refused by its index and the import goes on after it;
    framing damage stores the records before it, is reported as the last refusal, and ends
    the import.
    """
    from protocol.bundle import OversizedRecord
    from protocol.errors import BundleError

    pending: list[bytes] = []
    indexes: list[int] = []  # each pending record's index in the bundle
    clock = now_ms()
    admit = Admission(store, Metrics(), lambda: policy)

    def flush(executor: ThreadPoolExecutor) -> None:
        if not pending:
            return
        half = (len(pending) + 1) // 2
        parts = [(pending[:half], 0), (pending[half:], half)]
        futures = [executor.submit(validate_batch, part, clock, None) for part, _ in parts]
        good: list[tuple[int, Record]] = []  # (index in pending, record)
        for (_, offset), future in zip(parts, futures, strict=True):
            ok, bad = future.result()
            good += [(offset + i, r) for i, r in ok]
            for i, error in bad:
                scan.rejected.append({"index": indexes[offset + i], "error": error})
        for start in range(0, len(good), IMPORT_BATCH):
            chunk = good[start : start + IMPORT_BATCH]
            stored, refused = admit(chunk, published=True, source="import")
            for i, error in refused:
                scan.rejected.append({"index": indexes[i], "error": error})
            progress.add_records(len(chunk))
            new = sum(flag for _, flag in stored)
            scan.accepted += new
            scan.duplicates += len(stored) - new
        pending.clear()
        indexes.clear()

    index = 0
    with ThreadPoolExecutor(2) as executor:
        try:
            for entry in read_entries(path, progress.advance):
                if isinstance(entry, OversizedRecord):
                    scan.rejected.append({"index": index, "error": str(entry)})
                else:
                    pending.append(entry)
                    indexes.append(index)
                    if len(pending) >= IMPORT_BATCH:
                        flush(executor)
                index += 1
        except BundleError as exc:
            flush(executor)
            scan.rejected.append({"index": exc.index, "error": str(exc)})
        else:
            flush(executor)
    # Refusals of a batch are found when it is flushed, after the oversized records read
    # while it filled: put them back in file order.
    scan.rejected.sort(key=_by_index)


def _import_through(client: NodeClient, path: Path, scan: BundleScan, progress: Progress) -> None:
    """Hand the bundle's records to the running node in ``POST /api/v1/bundles`` chunks."""
    from protocol.bundle import OversizedRecord
    from protocol.errors import BundleError

    pending: list[bytes] = []
    indexes: list[int] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if not pending:
            return
        body = BundleWriter.header() + b"".join(BundleWriter.frame(raw) for raw in pending)
        _, answer = client.post_raw("/api/v1/bundles", body)
        scan.accepted += int(answer["new"])
        scan.duplicates += int(answer["duplicates"])
        for refusal in answer["rejected"]:
            scan.rejected.append({"index": indexes[refusal["index"]], "error": refusal["error"]})
        pending.clear()
        indexes.clear()
        size = 0

    index = 0
    try:
        for entry in read_entries(path, progress.advance):
            if isinstance(entry, OversizedRecord):
                scan.rejected.append({"index": index, "error": str(entry)})
            else:
                if len(pending) >= IMPORT_BATCH or size + len(entry) > SUBMIT_BYTES:
                    flush()
                pending.append(entry)
                indexes.append(index)
                size += len(entry) + 8
            index += 1
    except BundleError as exc:
        flush()
        scan.rejected.append({"index": exc.index, "error": str(exc)})
    else:
        flush()
    scan.rejected.sort(key=_by_index)


def _by_index(refusal: dict[str, Any]) -> int:
    index: int = refusal["index"]
    return index


def cmd_verify(args: argparse.Namespace) -> int:
    path = Path(args.file)
    scan = BundleScan()
    seen: set[bytes] = set()
    problems: list[str] = []
    listed: list[str] = []  # every record, while the bundle is small enough to list
    try:
        size = bundle_size(path)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    progress = Progress(f"verifying {_name(path)}", total=size, unit="bytes")
    try:
        for verdict in scan_bundle(path, now_ms=now_ms(), progress=progress.advance):
            progress.add_records(1)
            line = None
            if verdict.record is None:
                scan.rejected.append({"index": verdict.index, "error": verdict.error})
                line = f"record {verdict.index}: invalid: {verdict.error}"
            elif verdict.record.id in seen:
                scan.duplicates += 1
                line = f"record {verdict.index}: duplicate of an earlier record"
            else:
                seen.add(verdict.record.id)
                scan.accepted += 1
                if len(listed) <= LISTED_RECORDS:
                    r = verdict.record
                    listed.append(f"record {verdict.index}: ok  {r.id.hex()[:16]}  {r.kind}")
            if line is not None:
                # Problem lines beyond those shown are only counted: memory stays bounded.
                if len(problems) <= SHOWN_PROBLEMS:
                    problems.append(line)
                if len(listed) <= LISTED_RECORDS:
                    listed.append(line)
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        progress.finish()
    summary = f"{scan.accepted} valid, {scan.duplicates} duplicate, {len(scan.rejected)} invalid"
    if len(listed) <= LISTED_RECORDS:
        lines = listed
    else:
        count = len(scan.rejected) + scan.duplicates
        lines = problem_report(problems, count, scan.rejected)
    emit(args, scan.to_json(), "\n".join([*lines, summary]))
    if scan.rejected:
        raise CommandError(
            f"{path}: {len(scan.rejected)} invalid record(s); first: {scan.rejected[0]['error']}"
        )
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add = partial(add_command, sub, common)
    p = add("export", cmd_export, "write records to a bundle file")
    p.add_argument("file", metavar="FILE", help="the bundle file to write; - for standard output")
    p.add_argument(
        "--project", action="append", metavar="PROJECT", help="only this project (repeatable)"
    )
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    p = add("import", cmd_import, "validate and store every record of a bundle file")
    p.add_argument("file", metavar="FILE", help="the bundle file to read; - for standard input")
    p = add(
        "verify",
        cmd_verify,
        "check a bundle offline: every record's form and signature; stores nothing",
    )
    p.add_argument("file", metavar="FILE", help="the bundle file to check; - for standard input")
