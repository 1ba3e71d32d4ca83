"""Deterministic benchmark data: signed records from seeded keys, cached as bundles and stores.

Every record is a pure function of its dataset's parameters and its index (keys from
``protocol.testing.seed``, timestamps from ``protocol.testing.EPOCH_MS``), so the chunks can be
signed in two processes and a cached file is the same as a fresh one. Caches live in
``$COMMONS_BENCH_CACHE`` (default ``bench-out/cache`` at the repository root, git-ignored),
named by the parameters; nothing is checked in.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from bench.common import REPO, log
from protocol.bundle import BundleReader, BundleWriter
from protocol.record import ContributionBody, EndorsementBody, ProjectBody, Record, sign_record
from protocol.testing import EPOCH_MS, key

#: Bump when the generators change, so that old caches are not reused.
DATA_VERSION = 1
CONTRIBUTORS = 50
CHUNK = 5000


def cache_dir() -> Path:
    path = Path(os.environ.get("COMMONS_BENCH_CACHE") or REPO / "bench-out" / "cache")
    path.mkdir(parents=True, exist_ok=True)
    return path


def genesis(name: str) -> Record:
    owner = key(f"bench-owner:{name}")
    return sign_record(owner, body=ProjectBody(name=f"Bench {name}"), ts=EPOCH_MS)


def _contributions(name: str, project: bytes, start: int, stop: int) -> list[bytes]:
    keys = [key(f"bench-contributor:{i}") for i in range(CONTRIBUTORS)]
    out = []
    for k in range(start, stop):
        body = ContributionBody(type="code", title=f"Contribution {k}", effort_minutes=k % 600)
        record = sign_record(
            keys[k % CONTRIBUTORS], body=body, ts=EPOCH_MS + 1000 + k, project=project
        )
        out.append(record.raw)
    return out


def _endorsements(name: str, project: bytes, targets: list[bytes], start: int) -> list[bytes]:
    owner = key(f"bench-owner:{name}")
    out = []
    for j, target in enumerate(targets, start):
        body = EndorsementBody(target=target, weight=1 + j % 10)
        ts = EPOCH_MS + 10_000_000 + j
        out.append(sign_record(owner, body=body, ts=ts, project=project).raw)
    return out


def _parallel(jobs: list[tuple], fn) -> list[bytes]:  # type: ignore[no-untyped-def]
    if len(jobs) == 1:
        return fn(*jobs[0])
    out: list[bytes] = []
    with ProcessPoolExecutor(2) as pool:
        for part in pool.map(fn, *zip(*jobs, strict=True)):
            out.extend(part)
    return out


def project_records(name: str, contributions: int, endorsements: int = 0) -> list[bytes]:
    """Genesis, then ``contributions`` contributions by 50 authors, then ``endorsements``
    endorsements by the owner (a maintainer) of every tenth contribution, cycling."""
    path = cache_dir() / f"v{DATA_VERSION}-{name}-c{contributions}-e{endorsements}.bundle"
    if path.exists():
        return read_bundle(path)
    started = time.monotonic()
    log(f"generating {name}: {contributions} contributions, {endorsements} endorsements")
    g = genesis(name)
    jobs = [(name, g.id, s, min(contributions, s + CHUNK)) for s in range(0, contributions, CHUNK)]
    contribs = _parallel(jobs, _contributions)
    raws = [g.raw, *contribs]
    if endorsements:
        ids = [hashlib.sha256(r).digest() for r in contribs[::10]]
        targets = [ids[j % len(ids)] for j in range(endorsements)]
        ejobs = [(name, g.id, targets[s : s + CHUNK], s) for s in range(0, endorsements, CHUNK)]
        raws += _parallel(ejobs, _endorsements)
    write_bundle(path, raws)
    log(f"generated {len(raws)} records in {time.monotonic() - started:.1f} s -> {path.name}")
    return raws


def _attested(name: str, project: bytes, start: int, stop: int, authors: int) -> list[bytes]:
    from protocol.attest import email_handle
    from protocol.record import Artifact

    owner = key(f"bench-owner:{name}")
    url = f"https://git.example.org/{name}.git"
    out = []
    for k in range(start, stop):
        digest = hashlib.sha1(f"{name}:{k}".encode()).hexdigest()
        body = ContributionBody(
            type="docs" if k % 10 == 3 else "code",
            title=f"subsystem {k % 97}: fix the handling of case {k}",
            artifacts=(Artifact(uri=url, digest=f"git:{digest}"),),
            on_behalf=(email_handle(f"author{(k * 7919) % authors}@example.org"),),
        )
        # Commit times are seconds: a tenth of the commits share their second with the next.
        ts = EPOCH_MS + 1000 * (k - k // 10)
        out.append(sign_record(owner, body=body, ts=ts, project=project).raw)
    return out


def attested_records(name: str, contributions: int, authors: int) -> list[bytes]:
    """Genesis, then ``contributions`` contributions its owner attests on behalf of
    ``authors`` email handles, shaped as ``commons import-git`` makes them (a commit's
    title, its hash and repository as artifact, no effort)."""
    path = cache_dir() / f"v{DATA_VERSION}-{name}-attested-c{contributions}-a{authors}.bundle"
    if path.exists():
        return read_bundle(path)
    started = time.monotonic()
    log(f"generating {name}: {contributions} attested contributions by {authors} authors")
    g = genesis(name)
    jobs = [
        (name, g.id, s, min(contributions, s + CHUNK), authors)
        for s in range(0, contributions, CHUNK)
    ]
    raws = [g.raw, *_parallel(jobs, _attested)]
    write_bundle(path, raws)
    log(f"generated {len(raws)} records in {time.monotonic() - started:.1f} s -> {path.name}")
    return raws


def write_bundle(path: Path, raws: Sequence[bytes]) -> None:
    tmp = path.with_name(path.name + ".partial")
    with tmp.open("wb") as f:
        f.write(BundleWriter.header())
        for raw in raws:
            f.write(BundleWriter.frame(raw))
    tmp.replace(path)


def read_bundle(path: Path) -> list[bytes]:
    reader = BundleReader()
    out: list[bytes] = []
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            # The bench's bundles are written above and never hold an oversized record.
            out.extend(e for e in reader.feed(chunk) if isinstance(e, bytes))
    reader.close()
    return out


def bundle_path(name: str, contributions: int, endorsements: int = 0) -> Path:
    project_records(name, contributions, endorsements)
    return cache_dir() / f"v{DATA_VERSION}-{name}-c{contributions}-e{endorsements}.bundle"


def template_store(name: str, contributions: int, endorsements: int = 0) -> Path:
    """A ledger.db holding the dataset, built once with the node's own Store (no validation:
    the records were signed here), to be copied into node homes."""
    stem = f"v{DATA_VERSION}-{name}-c{contributions}-e{endorsements}"
    return _store(stem, lambda: project_records(name, contributions, endorsements))


def attested_store(name: str, contributions: int, authors: int) -> Path:
    """A ledger.db holding :func:`attested_records`, as :func:`template_store`."""
    stem = f"v{DATA_VERSION}-{name}-attested-c{contributions}-a{authors}"
    return _store(stem, lambda: attested_records(name, contributions, authors))


def _store(stem: str, records: Callable[[], list[bytes]]) -> Path:
    from node.store.sqlite import SCHEMA_VERSION, Store
    from protocol.record import decode_trusted

    # Named by the schema too: a store made by an older schema would be migrated (and its
    # tallies filled in) by every node the bench starts on a copy of it.
    path = cache_dir() / f"{stem}-s{SCHEMA_VERSION}.db"
    if path.exists():
        return path
    raws = records()
    tmp = path.with_name(path.name + ".partial")
    for suffix in ("", "-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    started = time.monotonic()
    with Store.open(tmp, synchronous="NORMAL") as store:
        for start in range(0, len(raws), 5000):
            store.add([decode_trusted(r) for r in raws[start : start + 5000]], published=True)
    # Closing checkpoints the WAL into the main file: one self-contained file.
    tmp.replace(path)
    log(f"built store {path.name} in {time.monotonic() - started:.1f} s")
    return path


def chunks(items: Sequence[bytes], size: int) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
