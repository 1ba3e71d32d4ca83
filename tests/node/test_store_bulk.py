"""``Store.add_attested`` (the bulk path of ``commons import-git``) leaves the store exactly as
``Store.add`` of the same records decoded: every row of every table, the flags it returns, the
caches and the views; a batch of another shape is refused; ``Admission.attested`` judges local
policy as ``Admission`` does."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.metrics import Metrics
from node.policy import Policy
from node.store import bulk
from node.store.bulk import Attested
from node.store.sqlite import Store
from node.sync.admission import Admission
from protocol.attest import email_handle
from protocol.drafts import Drafts
from protocol.record import Record
from protocol.testing import RecordFactory

AT = 1_700_000_000_000
TABLES = (
    "records",
    "units",
    "scopes",
    "kinds",
    "credits",
    "typed",
    "tallies",
    "type_tallies",
    "project_totals",
    "kind_totals",
)
HANDLES = [email_handle(f"person{i}@example.org".encode()) for i in range(6)]


def _made(
    f: RecordFactory, project: Record, specs: list[tuple[str, tuple[int, ...], int]]
) -> list[tuple[Attested, Record]]:
    """Attested contributions by alice in ``project``, made as an import makes them: each
    spec a (type, handle numbers, ts)."""
    signer = f.key("alice")
    drafts = Drafts(signer.public_key, project.id, "https://git.example/r")
    out = []
    for n, (kind, handles, ts) in enumerate(specs):
        on_behalf = tuple(dict.fromkeys(HANDLES[h] for h in handles))
        draft = drafts.draft(
            type=kind, title=f"Commit {n}", digest=f"git:{n:040x}", on_behalf=on_behalf, ts=ts
        )
        sig = signer.sign(draft.signing_input)
        raw, record_id = drafts.finish(draft, sig)
        out.append((Attested(record_id, raw, ts, kind, on_behalf), drafts.signed(draft, sig)))
    return out


#: The tables whose rows name participants by their number in ``units``: compared with the
#: participant's key in its place, since each path numbers the participants a batch brings
#: in the order it meets them (the bulk path, the batch's order; ``add``, its records').
BY_UNIT = {
    "records": "SELECT r.seq, r.id, r.raw, r.kind, u.key, r.ts, r.project, r.scope, r.target,"
    " r.received_at, r.published FROM records r JOIN units u ON u.n = r.author",
    "units": "SELECT key, handle FROM units",
    "credits": "SELECT c.project, u.key, c.ts, c.seq FROM credits c JOIN units u ON u.n = c.unit",
    "tallies": "SELECT t.project, u.key, t.parts, t.contributions, t.minutes"
    " FROM tallies t JOIN units u ON u.n = t.unit",
}


def _tables(path: Path) -> dict[str, list[Any]]:
    conn = sqlite3.connect(path)
    try:
        return {
            t: sorted(conn.execute(BY_UNIT.get(t, f"SELECT * FROM {t}")).fetchall()) for t in TABLES
        }
    finally:
        conn.close()


SPEC = st.tuples(
    st.sampled_from(["code", "docs", "testing", "translation"]),
    st.lists(st.integers(0, len(HANDLES) - 1), min_size=1, max_size=4).map(tuple),
    st.integers(AT, AT + 10_000),
)


@pytest.mark.parametrize(
    ("window", "scan_rows"),
    [(bulk.HELD_WINDOW, bulk.HELD_SCAN_ROWS), (2, 1)],
    ids=["as-set", "tiny"],
)
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    specs=st.lists(SPEC, min_size=1, max_size=30),
    cuts=st.lists(st.integers(1, 12), min_size=1, max_size=6),
    repeats=st.lists(st.integers(0, 29), max_size=5),
)
def test_bulk_path_stores_what_add_stores(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    window: int,
    scan_rows: int,
    specs: list[tuple[str, tuple[int, ...], int]],
    cuts: list[int],
    repeats: list[int],
) -> None:
    """In batches of any sizes, with records repeated in a batch and across batches and a
    record of another project held before, both paths leave every table row for row alike
    (``add`` given each batch in id order, the order the bulk path inserts and numbers a
    batch's records in) and report the same records new; with tiny time windows, the held
    records are found by scans and, where a window's stretch is crowded, id by id."""
    monkeypatch.setattr(bulk, "HELD_WINDOW", window)
    monkeypatch.setattr(bulk, "HELD_SCAN_ROWS", scan_rows)
    f = RecordFactory()
    project = f.project("alice", name="History")
    other = f.project("bob", name="Other")
    made = _made(f, project, specs)
    made += [made[i % len(made)] for i in repeats]
    before = [project, other, f.contribution("bob", other, minutes=5)]
    root = tmp_path_factory.mktemp("bulk")
    flags: dict[str, list[bool]] = {"add": [], "bulk": []}
    for name in flags:
        with Store.open(root / f"{name}.db") as store:
            store.add(before, now_ms=AT)
            start = 0
            for cut in [*cuts, len(made)]:
                batch = made[start : start + cut]
                start += cut
                if name == "add":
                    # In id order, as the bulk path inserts a batch (numbering its records).
                    records = [r for _, r in batch]
                    ordered = sorted(records, key=lambda r: r.id)
                    added = store.add(ordered, published=True, now_ms=AT)
                    newly = {r.id for r, is_new in zip(ordered, added, strict=True) if is_new}
                    seen: set[bytes] = set()
                    for r in records:
                        flags[name].append(r.id in newly and r.id not in seen)
                        seen.add(r.id)
                else:
                    rows = [row for row, _ in batch]
                    flags[name] += store.add_attested(rows, published=True, now_ms=AT)
                if start >= len(made):
                    break
    assert flags["add"] == flags["bulk"]
    assert _tables(root / "add.db") == _tables(root / "bulk.db")


def test_held_records_are_found_whatever_their_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-run finds every record held, by scans where the times are close and id by id
    where a window's stretch of the time index is crowded (times far apart, or equal); a
    record of another scope at the same time is not mistaken for one held."""
    monkeypatch.setattr(bulk, "HELD_WINDOW", 4)
    by_id: list[int] = []
    held_by_id = Store._held

    def counting(conn: sqlite3.Connection, ids: list[bytes]) -> set[bytes]:
        by_id.append(len(ids))
        return held_by_id(conn, ids)

    monkeypatch.setattr(Store, "_held", staticmethod(counting))
    f = RecordFactory()
    project = f.project("alice", name="History")
    other = f.project("alice", name="Elsewhere")
    close = [("code", (0,), AT + i) for i in range(12)]
    apart = [("docs", (1,), AT + i * 10**9) for i in range(6)]
    equal = [("testing", (2,), AT) for _ in range(40)]
    made = _made(f, project, close + apart + equal)
    rows = [row for row, _ in made]
    with Store.open(tmp_path / "s.db") as store:
        store.add([project, other])
        # The other project's records at the same times, with the same bodies.
        store.add_attested([row for row, _ in _made(f, other, close + apart + equal)])
        by_id.clear()
        assert store.add_attested(rows[:12]) == [True] * 12
        assert by_id == []  # close times: each window's stretch scanned
        assert store.add_attested(rows) == [False] * 12 + [True] * 46
        assert store.add_attested(rows[::-1]) == [False] * 58
        assert by_id, "the crowded stretches (40 records at one time) were looked up by id"
        assert store.count() == 2 + 2 * 58


def test_a_cached_project_sees_the_bulk_records(tmp_path: Path) -> None:
    f = RecordFactory()
    project = f.project("alice", name="History")
    made = _made(f, project, [("code", (0,), AT + i) for i in range(3)])
    with Store.open(tmp_path / "s.db") as store:
        store.add([project, made[0][1]])
        assert store.project_records(project.id)[1] == [made[0][1]]
        assert store.add_attested([row for row, _ in made]) == [False, True, True]
        assert store.project_records(project.id)[1] == [r for _, r in made]


def test_a_batch_of_another_shape_is_refused(tmp_path: Path) -> None:
    f = RecordFactory()
    project = f.project("alice", name="History")
    timed = f.attested("alice", project, (HANDLES[0],), minutes=5)
    plain = f.contribution("alice", project)
    with Store.open(tmp_path / "s.db") as store:
        for record in (timed, plain, project):
            row = Attested(record.id, record.raw, record.ts, "code", (HANDLES[0],))
            with pytest.raises(ValueError, match="attested contributions claiming no time"):
                store.add_attested([row])
        assert store.add_attested([]) == []
        assert not store.has(timed.id)


def test_admission_judges_bulk_rows_by_local_policy(tmp_path: Path) -> None:
    """Blocked, the rows are refused and noted as refused; under a project limit, those past
    it are refused; otherwise they are stored."""
    f = RecordFactory()
    project = f.project("alice", name="History")
    made = _made(f, project, [("code", (i % 3,), AT + i) for i in range(5)])
    rows = [row for row, _ in made]
    with Store.open(tmp_path / "s.db") as store:
        store.add([project])
        policy = Policy()
        admit = Admission(store, Metrics(), lambda: policy)
        policy = policy.with_block("author", f.pub("alice"), True)
        flags, refused = admit.attested(rows, published=True, source="local")
        assert flags == [False] * 5
        assert [i for i, _ in refused] == list(range(5))
        assert all("blocked" in reason for _, reason in refused)
        assert not any(store.has(row.id) for row in rows)
        policy = Policy(max_project_records=3)
        flags, refused = admit.attested(rows, published=True, source="local")
        assert flags == [True, True, False, False, False]
        assert [i for i, _ in refused] == [2, 3, 4]
        policy = Policy()
        flags, refused = admit.attested(rows, published=True, source="local")
        assert (flags, refused) == ([False, False, True, True, True], [])
