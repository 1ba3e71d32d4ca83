"""A seed with a local policy, among real in-process nodes on 127.0.0.1: blocked records never
reach its store nor pass through it, a second reconciliation fetches nothing, a purge and a
ban survive a restart, an unblock lets records return, and a full seed keeps serving."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import trio
from test_node import addr, running, wait_until

from node.api.app import build_app
from node.policy import Policy
from node.runtime import Node
from protocol.record import Record
from protocol.signing import peer_id
from protocol.testing import RecordFactory

#: A peer id nobody runs, to ban.
STRANGER = peer_id(bytes(range(32)))


def _factory() -> RecordFactory:
    return RecordFactory(now_ms=int(time.time() * 1000) - 60_000)


def fetched(node: Node) -> float:
    return node.metrics.total("commons_sync_records_fetched_total")


async def _submit(node: Node, records: list[Record]) -> None:
    result = await node.submit_many([r.raw for r in records])
    assert not result.rejected


def _holds(node: Node, records: list[Record]) -> bool:
    return all(node.store.has(r.id) for r in records)


@asynccontextmanager
async def _admin(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(node))
    auth = {"Authorization": f"Bearer {node.home.api_token()}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://node", headers=auth) as c:
        yield c


async def test_a_seed_never_holds_nor_relays_blocked_records(tmp_path: Path) -> None:
    f = _factory()
    blocked_project = f.project("alice", name="Blocked")
    hosted = f.project("alice", name="Hosted")
    allowed = [hosted, f.contribution("carol", hosted), f.profile("carol", name="Carol")]
    blocked = [
        blocked_project,
        f.contribution("carol", blocked_project),
        f.contribution("bob", hosted),
        f.profile("bob", name="Bob"),
    ]
    policy = Policy(
        blocked_projects=frozenset({blocked_project.id}),
        blocked_authors=frozenset({f.pub("bob")}),
    )
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            seed = await stack.enter_async_context(
                running(tmp_path, "seed", seed=True, policy=policy)
            )
            a = await stack.enter_async_context(running(tmp_path, "a", bootstrap=[addr(seed)]))
            c = await stack.enter_async_context(running(tmp_path, "c", bootstrap=[addr(seed)]))
            await wait_until(lambda: len(seed.transport.connected_peers()) == 2)
            # Everything reaches a: by gossip to the seed, which refuses the blocked ones.
            await _submit(a, allowed + blocked)
            await wait_until(lambda: _holds(seed, allowed))
            await seed.sync_now()
            await c.sync_now()
            await wait_until(lambda: _holds(c, allowed))
            for node in (seed, c):
                assert not any(node.store.has(r.id) for r in blocked), node.peer_id
            refused = seed.metrics.total("commons_policy_refused_total")
            assert refused >= len(blocked)
            assert seed.store.refused_count() == len(blocked)
            # Known and refused, not missing: a second round fetches nothing, and sync with
            # the seed never ended in an error (the refusals blamed no one).
            before = fetched(seed)
            totals = await seed.sync_now()
            assert totals["received"] == 0
            assert fetched(seed) == before
            assert (
                seed.metrics.get("commons_sync_sessions_total", role="client", outcome="error") == 0
            )
            assert a.metrics.get("commons_sync_sessions_total", role="server", outcome="error") == 0
            assert seed.transport.banned_peers() == []


async def test_purge_ban_and_unblock_through_the_admin_api_survive_a_restart(
    tmp_path: Path,
) -> None:
    f = _factory()
    project = f.project("alice", name="Taken down")
    kept = f.project("alice", name="Kept")
    records = [project, f.contribution("carol", project), f.contribution("dave", project)]
    with trio.fail_after(90):
        async with running(tmp_path, "a") as a:
            await _submit(a, [*records, kept])
            async with running(tmp_path, "seed", seed=True, bootstrap=[addr(a)]) as seed:
                await wait_until(lambda: _holds(seed, [*records, kept]))
                async with _admin(seed) as http:
                    body = {"kind": "project", "key": project.id.hex(), "purge": True}
                    answer = await http.post("/api/v1/admin/blocks", json=body)
                    assert answer.status_code == 201, answer.text
                    assert answer.json()["purged"] == len(records)
                    banned = await http.post("/api/v1/admin/bans", json={"peer": STRANGER})
                    assert banned.status_code == 201
                    assert banned.json()["until"] is None
                    bad = await http.post("/api/v1/admin/blocks", json={"kind": "x", "key": "y"})
                    assert bad.status_code == 422
                    assert (
                        await http.get("/api/v1/admin/bans", headers={"Authorization": ""})
                    ).status_code == 401
                assert not any(seed.store.has(r.id) for r in records)
                assert (await seed.sync_now())["received"] == 0
                assert STRANGER in seed.transport.banned_peers()
            async with running(tmp_path, "seed", seed=True, bootstrap=[addr(a)]) as seed:
                await wait_until(lambda: len(seed.transport.connected_peers()) == 1)
                assert (await seed.sync_now())["received"] == 0
                assert not any(seed.store.has(r.id) for r in records)
                assert seed.store.has(kept.id)
                assert STRANGER in seed.transport.banned_peers()
                async with _admin(seed) as http:
                    listed = (await http.get("/api/v1/admin/blocks")).json()
                    assert [(b["kind"], b["key"]) for b in listed] == [
                        ("project", project.id.hex())
                    ]
                    answer = await http.delete(f"/api/v1/admin/blocks/project/{project.id.hex()}")
                    assert answer.status_code == 200
                    assert answer.json()["released"] == len(records)
                    again = await http.delete(f"/api/v1/admin/blocks/project/{project.id.hex()}")
                    assert again.status_code == 404
                    lifted = await http.delete(f"/api/v1/admin/bans/{STRANGER}")
                    assert lifted.status_code == 200
                assert STRANGER not in seed.transport.banned_peers()
                # Unblocked: the records return through sync (this one, or one the node
                # started meanwhile).
                await seed.sync_now()
                await wait_until(lambda: _holds(seed, records))


async def test_a_seed_at_its_limit_keeps_serving_what_it_holds(tmp_path: Path) -> None:
    f = _factory()
    project = f.project("alice", name="Busy")
    contributions = [f.contribution("carol", project, title=f"Part {i}") for i in range(4)]
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            a = await stack.enter_async_context(running(tmp_path, "a"))
            await _submit(a, [project, *contributions])
            seed = await stack.enter_async_context(
                running(
                    tmp_path,
                    "seed",
                    seed=True,
                    bootstrap=[addr(a)],
                    policy=Policy(max_project_records=3),
                )
            )
            await wait_until(lambda: seed.store.count() == 3)
            await seed.sync_now()
            assert seed.store.count() == 3
            assert (
                seed.metrics.get("commons_policy_refused_total", source="sync", reason="over-quota")
                >= 2
            )
            assert seed.store.integrity_check() == "ok"
            # A member who can reach only the seed gets everything the seed holds (a full
            # seed still relays gossip it does not store, so the member may get more).
            c = await stack.enter_async_context(running(tmp_path, "c", bootstrap=[addr(seed)]))
            held = [i for _, i in seed.store.items(project.id.hex())] + [project.id]
            await wait_until(lambda: all(c.store.has(i) for i in held))


async def test_a_record_blocked_but_held_is_not_served(tmp_path: Path) -> None:
    f = _factory()
    project = f.project("alice", name="Kept")
    good, bad = f.contribution("carol", project), f.contribution("bob", project)
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            seed = await stack.enter_async_context(running(tmp_path, "seed", seed=True))
            # Stored as if received by sync: not published, so not in gossip's message cache
            # (which answers a peer's IWANT for a few seconds without asking anyone).
            got = await seed.ingestor.ingest([project.raw, good.raw, bad.raw], source="sync")
            assert len(got.new) == 3
            answer = await seed.admin_block("author", peer_id(f.pub("bob")), purge=False, on=True)
            assert answer["purged"] == 0
            assert seed.store.has(bad.id)  # held, not purged
            c = await stack.enter_async_context(running(tmp_path, "c", bootstrap=[addr(seed)]))
            await wait_until(lambda: _holds(c, [project, good]))
            assert (await c.sync_now())["received"] == 0
            assert not c.store.has(bad.id)
