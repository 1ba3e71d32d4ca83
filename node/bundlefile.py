"""Reading and writing bundle files on disk, with per-record verdicts for verify and import."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from protocol.bundle import BundleReader
from protocol.errors import BundleError, InvalidRecord
from protocol.record import Record
from protocol.validation import parse_record

__all__ = ["BundleScan", "Verdict", "scan_bundle"]

#: Bytes read from the file at a time: records are at most 64 KiB, so this holds several.
CHUNK_SIZE = 1 << 20


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


def scan_bundle(
    path: Path, *, now_ms: int, progress: Callable[[int], None] | None = None
) -> Iterator[Verdict]:
    """Yield a verdict per record of the bundle at ``path``, in file order.

    Framing damage ends the scan with one final verdict whose error names the byte offset;
    every complete record before it has been yielded. Raises OSError if the file cannot be
    read at all.
    """
    reader = BundleReader()
    index = 0
    with path.open("rb") as f:
        while True:
            chunk = f.read(CHUNK_SIZE)
            try:
                raws = reader.feed(chunk) if chunk else []
                if not chunk:
                    reader.close()
            except BundleError as exc:
                yield Verdict(index=exc.index, record=None, error=str(exc))
                return
            for raw in raws:
                try:
                    record = parse_record(raw, now_ms=now_ms)
                except InvalidRecord as exc:
                    yield Verdict(index=index, record=None, error=str(exc))
                else:
                    yield Verdict(index=index, record=record, error=None)
                index += 1
            if progress is not None:
                progress(len(chunk))
            if not chunk:
                return
            # Damage found after the records above: report it on the next loop turn.
            if reader.broken:
                chunk_after_damage = b""
                try:
                    reader.feed(chunk_after_damage)
                except BundleError as exc:
                    yield Verdict(index=exc.index, record=None, error=str(exc))
                return
