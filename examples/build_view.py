"""Build a project's views (ledger, shares) from records, as every node does.

Run: python examples/build_view.py [BUNDLE]

With a bundle file (``commons export FILE`` writes one) it reads the file in chunks, validates
every record, and prints the views of every project in it. Without one it signs a small
ledger of its own first: Alice's project, with Carol as a co-maintainer; Bob and Dave (with
Erin as coauthor) contribute; the maintainers endorse. Needs only the protocol library.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

from protocol import (
    BundleError,
    BundleReader,
    BundleWriter,
    ContributionBody,
    EndorsementBody,
    InvalidRecord,
    ProfileBody,
    ProjectBody,
    ProjectView,
    Record,
    SigningKey,
    parse_record,
    profiles,
    sign_record,
)

CHUNK = 64 * 1024


def demo_bundle(now_ms: int) -> bytes:
    """A small signed ledger, framed as a bundle file would be."""
    alice, bob, carol, dave, erin = (SigningKey.generate() for _ in range(5))
    ts = iter(range(now_ms - 10_000, now_ms))
    records = [
        sign_record(person, body=ProfileBody(name=name), ts=next(ts))
        for person, name in ((alice, "Alice"), (bob, "Bob"), (carol, "Carol"), (dave, "Dave"))
    ]
    project = sign_record(
        alice,
        body=ProjectBody(name="Open Tractor", maintainers=(carol.public_key,)),
        ts=next(ts),
    )
    chassis = sign_record(
        bob,
        body=ContributionBody(type="design", title="Chassis CAD", effort_minutes=360),
        ts=next(ts),
        project=project.id,
    )
    manual = sign_record(
        dave,
        body=ContributionBody(
            type="docs", title="Assembly manual", effort_minutes=120, coauthors=(erin.public_key,)
        ),
        ts=next(ts),
        project=project.id,
    )
    endorsements = [
        sign_record(
            carol,
            body=EndorsementBody(target=chassis.id, weight=3),
            ts=next(ts),
            project=project.id,
        ),
        sign_record(alice, body=EndorsementBody(target=manual.id), ts=next(ts), project=project.id),
    ]
    writer = BundleWriter()
    frames = [writer.frame(r.raw) for r in (*records, project, chassis, manual, *endorsements)]
    return writer.header() + b"".join(frames)


def read_bundle(chunks: Iterator[bytes], now_ms: int) -> tuple[list[Record], int]:
    """Every valid record of a bundle, and how many were refused; stops at framing damage."""
    reader = BundleReader()
    records: list[Record] = []
    refused = 0
    try:
        for chunk in chunks:
            for raw in reader.feed(chunk):
                try:
                    records.append(parse_record(raw, now_ms=now_ms))
                except InvalidRecord as exc:
                    refused += 1
                    print(f"refused record {reader.records_read}: {exc}")
        reader.close()
    except BundleError as exc:
        print(f"the bundle is damaged, keeping the records before it: {exc}")
    return records, refused


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def show(view: ProjectView, names: dict[bytes, str]) -> None:
    """Print one project's views, people by display name when they published one."""

    def who(key: bytes, peer_id: str) -> str:
        return f"{names[key]} ({peer_id[-8:]})" if key in names else peer_id

    state = view.state
    maintainers = ", ".join(
        who(k, p) for k, p in zip(state.sorted_maintainers, state.maintainer_peer_ids, strict=True)
    )
    print(f"project {state.name} {state.id.hex()[:16]}, maintained by {maintainers}")
    print("ledger, newest first:")
    for entry in view.live_contributions():
        people = [who(entry.record.author, entry.author_peer_id)]
        people += [
            who(k, p)
            for k, p in zip(entry.body.coauthors or (), entry.coauthor_peer_ids, strict=True)
        ]
        print(
            f"  {entry.id.hex()[:16]}  {entry.body.type:<8} {entry.body.title!r} by "
            f"{' and '.join(people)}: {entry.body.minutes} min, endorsed weight {entry.weight}"
        )
    print("shares (endorsed value = minutes x endorsed weight, split among participants):")
    for share in view.shares():
        print(
            f"  {who(share.contributor, share.contributor_peer_id)}: {float(share.share):.1%} "
            f"(claimed {float(share.claimed_minutes):g} min, endorsed value "
            f"{float(share.endorsed_value):g})"
        )


def main(argv: list[str]) -> int:
    now_ms = time.time_ns() // 1_000_000
    chunks = file_chunks(Path(argv[1])) if len(argv) > 1 else iter([demo_bundle(now_ms)])
    records, refused = read_bundle(chunks, now_ms)
    print(f"{len(records)} valid records, {refused} refused")
    # The latest profile per author names people; any record set may hold several projects.
    names = {
        key: r.body.name for key, r in profiles(records).items() if isinstance(r.body, ProfileBody)
    }
    for genesis in (r for r in records if isinstance(r.body, ProjectBody)):
        show(ProjectView.build(genesis, records), names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
