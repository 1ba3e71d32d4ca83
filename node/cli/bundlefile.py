"""Reading and writing bundle files on disk, with per-record verdicts for verify and import."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from protocol.bundle import Entry, OversizedRecord, iter_bundle
from protocol.errors import BundleError, InvalidRecord
from protocol.record import Record
from protocol.validation import parse_record

__all__ = ["STDIO", "BundleScan", "Verdict", "bundle_size", "read_entries", "scan_bundle"]

#: Bytes read from the file at a time: records are at most 64 KiB, so this holds several.
CHUNK_SIZE = 1 << 20
#: The file name that means standard input (``import -``) or output (``export -``).
STDIO = Path("-")


def bundle_size(path: Path) -> int | None:
    """The size of the bundle at ``path`` for a progress bar, None for standard input.

    Raises OSError if the file cannot be read."""
    return None if path == STDIO else path.stat().st_size


@dataclass(frozen=True)
class Verdict:
    """One entry of a bundle: a valid record, or the reason it is not one."""

    index: int
    record: Record | None
    error: str | None


@dataclass
class BundleScan:
    """What a scan found so far: the shape of ``commons import/verify --json``."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


def read_entries(path: Path, progress: Callable[[int], None] | None = None) -> Iterator[Entry]:
    """Yield the entries of the bundle at ``path`` (``-``: standard input) in file order,
    reading it chunk by chunk.

    An oversized record comes back as a :class:`OversizedRecord` (its bytes are never read
    into memory) and reading goes on after it. Framing damage raises ``BundleError`` once
    every entry before it has been yielded. ``progress`` is told the size of each chunk once
    its entries have been taken. Raises OSError if the file cannot be read.
    """

    def read(f: BinaryIO) -> Iterator[bytes]:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk
            if progress is not None:
                progress(len(chunk))

    def chunks() -> Iterator[bytes]:
        if path == STDIO:
            yield from read(sys.stdin.buffer)  # left open: it is not ours to close
        else:
            with path.open("rb") as f:
                yield from read(f)

    yield from iter_bundle(chunks())


def scan_bundle(
    path: Path, *, now_ms: int, progress: Callable[[int], None] | None = None
) -> Iterator[Verdict]:
    """Yield a verdict per record of the bundle at ``path``, in file order.

    A record too large to read is refused by its index like any invalid record, and the
    scan goes on. Framing damage ends the scan with one final verdict whose error names the
    byte offset; every complete record before it has been yielded. Raises OSError if the
    file cannot be read at all.
    """
    index = 0
    try:
        for entry in read_entries(path, progress):
            if isinstance(entry, OversizedRecord):
                yield Verdict(index=index, record=None, error=str(entry))
            else:
                try:
                    record = parse_record(entry, now_ms=now_ms)
                except InvalidRecord as exc:
                    yield Verdict(index=index, record=None, error=str(exc))
                else:
                    yield Verdict(index=index, record=record, error=None)
            index += 1
    except BundleError as exc:
        yield Verdict(index=exc.index, record=None, error=str(exc))
