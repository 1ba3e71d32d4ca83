"""Moderation on the store, without a network: refused ids, purges, blocks, bans, limits,
the offline ``commons admin`` and ``commons import`` under a policy."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import trio

from node import runtime
from node.cli import run as run_cli
from node.cli.errors import CommandError
from node.cli.main import main
from node.home import Home, HomeError, parse_config
from node.metrics import Metrics
from node.moderation import ModerationError, block, parse_duration, unblock
from node.policy import Policy
from node.store.sqlite import Store
from node.sync.ingest import Ingestor
from node.views.cache import ViewCache
from protocol import negentropy
from protocol.bundle import encode_bundle
from protocol.signing import peer_id
from protocol.testing import RecordFactory
from protocol.validation import META_SCOPE

NOW = 1_790_000_000_000


@pytest.fixture
def f() -> RecordFactory:
    return RecordFactory(now_ms=NOW - 60_000)


def test_refused_ids_are_items_but_never_served(store: Store, f: RecordFactory) -> None:
    p = f.project("alice")
    kept, blocked = f.contribution("carol", p), f.contribution("bob", p)
    store.add([p, kept])
    scope = p.id.hex()
    version = store.scope_version(scope)
    assert store.note_refused([blocked]) == 1
    assert store.note_refused([blocked]) == 0
    assert store.scope_version(scope) != version  # the cached item list is stale
    assert (blocked.ts, blocked.id) in store.items(scope)
    assert sorted(store.items(scope)) == store.items(scope)
    # The sync streams the same pairs, held and refused merged, into negentropy's storage.
    assert list(store.build_items(scope, negentropy.Storage)) == store.items(scope)
    assert store.raw_many([blocked.id, kept.id]) == [kept.raw]
    assert store.is_refused(blocked.id)
    assert not store.has(blocked.id)
    # A held record the policy blocks is not served either.
    policy = Policy(blocked_authors=frozenset({f.pub("carol")}))
    assert store.raw_many([kept.id, p.id], served=policy.served) == [p.raw]
    # Lifting the block forgets the refused id: reconciliation will fetch it again.
    assert (
        store.release_refused(Policy(blocked_authors=frozenset({f.pub("bob")})).still_refused) == 0
    )
    assert store.release_refused(Policy().still_refused) == 1
    assert (blocked.ts, blocked.id) not in store.items(scope)


def test_purge_removes_records_and_views_for_good(tmp_path: Path, f: RecordFactory) -> None:
    path = tmp_path / "ledger.db"
    p, q = f.project("alice"), f.project("dave")
    by_bob = [f.contribution("bob", p), f.contribution("bob", q), f.profile("bob", name="Bob")]
    others = [f.contribution("carol", p), f.contribution("carol", q)]
    with Store.open(path) as store:
        store.add([p, q, *by_bob, *others])
        ViewCache(store, tallies=False).ledger(p.id.hex())
        policy = Policy()
        outcome = block(store, policy, "author", f.pub("bob"), purge=True)
        assert outcome.records == 3
        assert outcome.changed
        assert outcome.policy.refusal(by_bob[0]) is not None
        assert store.integrity_check() == "ok"
        outcome = block(store, outcome.policy, "project", q.id, purge=True)
        assert outcome.records == 2  # q's genesis and carol's contribution to it
    with Store.open(path) as store:
        scopes = (META_SCOPE, p.id.hex(), q.id.hex())
        held = {i for scope in scopes for _, i in store.items(scope)}
        assert store.count() == 2  # p and carol's contribution to it
        for record in [q, *by_bob, others[1]]:
            assert not store.has(record.id)
            assert store.is_refused(record.id)
            assert record.id in held  # known to reconciliation, so never fetched again
        assert {kind for kind, _, _ in store.blocks()} == {"author", "project"}
        assert (
            ViewCache(store, cache=False, tallies=False).ledger(p.id.hex())[0]["id"]
            == others[0].id.hex()
        )


def test_unblock_refuses_a_configured_block_and_releases_stored_ones(
    store: Store, f: RecordFactory
) -> None:
    p = f.project("alice")
    c = f.contribution("bob", p)
    store.add([p, c])
    configured = Policy(
        blocked_projects=frozenset({p.id}), configured=frozenset({("project", p.id)})
    )
    with pytest.raises(ModerationError, match=r"blocked in config\.toml"):
        unblock(store, configured, "project", p.id)
    outcome = block(store, Policy(), "project", p.id, purge=True)
    assert outcome.records == 2
    again = block(store, outcome.policy, "project", p.id, purge=False)
    assert not again.changed
    lifted = unblock(store, again.policy, "project", p.id)
    assert lifted.changed
    assert lifted.records == 2
    assert lifted.policy.refusal(p) is None
    assert store.refused_count() == 0
    assert not unblock(store, lifted.policy, "project", p.id).changed


def test_bans_are_kept_with_their_end(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Store.open(path) as store:
        store.add_ban("12D3KooWA", None, now_ms=NOW)
        store.add_ban("12D3KooWB", NOW + 1000, now_ms=NOW)
        store.add_ban("12D3KooWC", NOW + 10, now_ms=NOW)
    with Store.open(path) as store:
        assert store.bans(now_ms=NOW + 100) == [("12D3KooWA", None), ("12D3KooWB", NOW + 1000)]
        assert store.remove_ban("12D3KooWA")
        assert not store.remove_ban("12D3KooWA")
        assert store.bans(now_ms=NOW + 5000) == []
    assert parse_duration(None) is None
    assert parse_duration("90") == 90
    assert parse_duration("30m") == 1800
    assert parse_duration("2d") == 172_800
    for bad in ("", "soon", "-5", "0", "nanh", "99999w"):
        with pytest.raises(ModerationError):
            parse_duration(bad)


def _ingestor(store: Store, policy: Policy, metrics: Metrics) -> Ingestor:
    return Ingestor(store, now_ms=lambda: NOW, metrics=metrics, policy=lambda: policy)


def test_limits_refuse_new_records_keep_the_held_ones_and_log_once(
    store: Store, f: RecordFactory, caplog: pytest.LogCaptureFixture
) -> None:
    p = f.project("alice")
    first = [f.contribution("bob", p, title=f"C{i}") for i in range(3)]
    later = [f.contribution("bob", p, title=f"D{i}") for i in range(3)]
    metrics = Metrics()
    ingestor = _ingestor(store, Policy(max_project_records=3), metrics)

    async def run() -> None:
        got = await ingestor.ingest([r.raw for r in [p, *first]], source="sync")
        assert [r.id for r in got.new] == [p.id, *(r.id for r in first[:2])]
        assert [i for i, _ in got.rejected] == [3]
        assert got.rejected[0][1].startswith("over-quota: project ")
        again = await ingestor.ingest([r.raw for r in [p, *later]], source="sync")
        assert [r.id for r in again.duplicates] == [p.id]  # held: no refusal
        assert len(again.rejected) == 3

    with caplog.at_level(logging.WARNING, logger="node.sync.admission"):
        trio.run(run)
    assert store.count() == 3
    assert store.raw_many([p.id]) == [p.raw]  # still served
    assert metrics.get("commons_policy_refused_total", source="sync", reason="over-quota") == 4
    lines = [r for r in caplog.records if "refusing new records" in r.getMessage()]
    assert len(lines) == 1
    assert store.integrity_check() == "ok"


def test_the_store_size_limit(store: Store, f: RecordFactory) -> None:
    p = f.project("alice")
    store.add([p])
    metrics = Metrics()
    full = Policy(max_store_bytes=store.size_bytes())
    ingestor = _ingestor(store, full, metrics)
    profile = f.profile("bob", name="Bob")

    async def run() -> None:
        got = await ingestor.ingest([profile.raw], source="api")
        assert got.rejected[0][1].startswith("over-quota: the store reached its size limit")

    trio.run(run)
    assert not store.has(profile.id)
    assert store.size_bytes() > 0


def test_blocked_records_are_refused_and_remembered_by_the_ingestor(
    store: Store, f: RecordFactory
) -> None:
    p = f.project("alice")
    c = f.contribution("bob", p)
    metrics = Metrics()
    ingestor = _ingestor(store, Policy(blocked_authors=frozenset({f.pub("bob")})), metrics)

    async def run() -> None:
        got = await ingestor.ingest([p.raw, c.raw], source="sync")
        assert [r.id for r in got.new] == [p.id]
        assert got.rejected == [
            (1, f"blocked: blocked by local policy (author {peer_id(f.pub('bob'))})")
        ]

    trio.run(run)
    assert store.is_refused(c.id)
    assert (c.ts, c.id) in store.items(p.id.hex())
    assert metrics.get("commons_policy_refused_total", source="sync", reason="blocked") == 1
    assert store.items(META_SCOPE) == [(p.ts, p.id)]


def test_offline_admin_and_import(
    tmp_path: Path, f: RecordFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    Home(home).init()
    p, q = f.project("alice"), f.project("dave")
    bob = peer_id(f.pub("bob"))

    def run(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--home", str(home)])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("admin", "block-project", q.id.hex())[0] == 0
    code, out, _ = run("admin", "block-author", bob, "--json")
    assert code == 0
    assert json.loads(out) == {
        "kind": "author",
        "key": bob,
        "blocked": True,
        "changed": True,
        "purged": 0,
    }
    bundle = tmp_path / "in.bundle"
    records = [p, q, f.contribution("bob", p), f.contribution("carol", p)]
    bundle.write_bytes(encode_bundle([r.raw for r in records]))
    code, out, err = run("import", str(bundle), "--json")
    assert code == 1
    rejected = json.loads(out)["rejected"]
    assert [r["index"] for r in rejected] == [1, 2]
    assert all(r["error"].startswith("blocked: blocked by local policy") for r in rejected)
    code, out, _ = run("admin", "blocks", "--json")
    assert [(b["kind"], b["key"], b["source"]) for b in json.loads(out)] == [
        ("project", q.id.hex(), "admin"),
        ("author", bob, "admin"),
    ]
    code, out, _ = run("admin", "unblock-author", bob)
    assert code == 0
    assert out.startswith(f"unblocked author {bob}: 1 refused records")
    code, _, err = run("admin", "unblock-author", bob)
    assert code == 1
    assert err == f"error: {bob} is not blocked\n"
    code, _, err = run("admin", "block-project", "abcd")
    assert code == 1
    assert "is not a project id" in err
    code, out, _ = run("admin", "ban", bob, "--for", "1h")
    assert code == 0
    assert out.startswith(f"banned peer {bob} until ")
    code, out, _ = run("admin", "bans", "--json")
    assert [b["peer"] for b in json.loads(out)] == [bob]
    assert run("admin", "unban", bob)[0] == 0
    code, _, err = run("admin", "ban", "nobody")
    assert code == 1
    assert err.startswith("error: ")
    with Store.open(home / "ledger.db") as store:
        assert store.count() == 2  # p and carol's contribution
        assert store.bans() == []


def test_the_policy_table_of_config_toml(f: RecordFactory) -> None:
    p = f.project("alice")
    bob = peer_id(f.pub("bob"))
    config = parse_config(
        f'[policy]\nhost = ["{p.id.hex()}"]\nblock_authors = ["{bob}"]\n'
        "max_store_mb = 0\nmax_project_records = 10\n"
    )
    assert config.host == [p.id.hex()]
    policy, follow = run_cli._policy(config, [])
    assert follow == [p.id]
    assert policy.blocked_authors == {f.pub("bob")}
    assert policy.max_store_bytes is None
    assert policy.max_project_records == 10
    assert policy.configured == {("author", f.pub("bob"))}
    # The followed projects are narrowed to the hosted ones; none in common is an error.
    assert run_cli._policy(config, [p.id, b"\1" * 32])[1] == [p.id]
    with pytest.raises(CommandError, match="share none"):
        run_cli._policy(config, [b"\1" * 32])
    assert run_cli._policy(parse_config(""), [b"\1" * 32])[1] == [b"\1" * 32]
    for bad, message in (
        ('host = "some"', "policy.host is"),
        ("host = []", "policy.host is"),
        ("max_project_records = -1", "must be positive"),
        ("block_projects = [1]", "list of strings"),
    ):
        with pytest.raises(HomeError, match=message):
            parse_config(f"[policy]\n{bad}\n")
    with pytest.raises(CommandError, match=r"config\.toml: policy\.block_projects"):
        run_cli._policy(parse_config('[policy]\nblock_projects = ["abc"]\n'), [])


def test_a_block_taken_out_of_config_toml_releases_its_records_at_start(
    store: Store, f: RecordFactory
) -> None:
    p = f.project("alice")
    c, d = f.contribution("bob", p), f.contribution("dave", p)
    store.add([p])
    store.note_refused([c, d])
    store.add_block("author", f.pub("dave"))
    configured = Policy(blocked_authors=frozenset({f.pub("bob")}))
    policy = runtime._start_policy(configured, store)
    assert policy.blocked_authors == {f.pub("bob"), f.pub("dave")}
    assert store.is_refused(c.id)
    runtime._start_policy(Policy(), store)  # bob's block left config.toml
    assert not store.is_refused(c.id)
    assert store.is_refused(d.id)  # dave's block is the operator's, in the store
