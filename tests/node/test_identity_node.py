"""Persons across real nodes (docs/IDENTITY.md): a laptop links a phone, both contribute, the
shares count the person once on every node; the laptop revokes the phone, and what the phone
signs afterwards counts for nothing on every node, after gossip and reconciliation."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio
from test_node import addr, running, wait_until

from node.clock import now_ms
from node.recovery import code_bytes, new_code
from node.runtime import Node
from protocol.identity_records import DeviceLinkBody, ticket_key
from protocol.record import sign_record
from protocol.signing import SigningKey, peer_id
from protocol.validation import META_TOPIC, project_topic


def _shares(node: Node, pid: str) -> list[dict[str, Any]]:
    return node.views.shares(pid)


async def test_two_devices_count_once_and_a_revoked_one_counts_for_nothing(
    tmp_path: Path,
) -> None:
    recovery = SigningKey(bytes(range(32)))
    person = peer_id(recovery.public_key)
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            laptop = await stack.enter_async_context(running(tmp_path, "laptop"))
            phone = await stack.enter_async_context(
                running(tmp_path, "phone", bootstrap=[addr(laptop)])
            )
            keeper = await stack.enter_async_context(
                running(tmp_path, "keeper", bootstrap=[addr(laptop)])
            )
            nodes = (laptop, phone, keeper)
            await wait_until(lambda: len(laptop.transport.connected_peers()) == 2)
            await wait_until(lambda: all(n.transport.mesh_peers(META_TOPIC) for n in nodes))

            # The laptop's person: its recovery key links a ticket, the laptop joins with it.
            first = new_code()
            ticket = ticket_key(code_bytes(first)).public_key
            body = DeviceLinkBody(person=recovery.public_key, ticket=ticket)
            founding = sign_record(recovery, body=body, ts=now_ms())
            await laptop.submit(founding.raw)
            await laptop.author("join", {"code": first})
            # The laptop links the phone: a code shown there, typed here.
            code = new_code()
            link = await laptop.author("link", {"code": code})
            await wait_until(lambda: phone.store.has(link.id))
            joined = await phone.author("join", {"code": code})
            await wait_until(lambda: all(n.store.has(joined.id) for n in nodes))
            for node in nodes:
                assert node.views.people().person_now(phone.key.public_key) == recovery.public_key

            project = await keeper.author("project", {"name": "Bikes"})
            pid = project.id.hex()
            topic = project_topic(project.id)
            await wait_until(lambda: all(n.service.subscribed(topic) for n in nodes))
            await wait_until(lambda: all(n.transport.mesh_peers(topic) for n in nodes))
            fields = {"project": pid, "type": "hardware"}
            on_laptop = await laptop.author(
                "contribution", {**fields, "title": "Frame", "minutes": 60}
            )
            on_phone = await phone.author(
                "contribution", {**fields, "title": "Wheels", "minutes": 30}
            )
            for c in (on_laptop, on_phone):
                await wait_until(lambda c=c: keeper.store.has(c.id))
                await keeper.author("endorsement", {"target": c.id.hex(), "weight": 2})
            once = [
                {
                    "contributor": person,
                    "person": person,
                    "contributions": 2,
                    "claimed_minutes": 90,
                    "endorsed_value": 180,
                    "share": 1,
                }
            ]
            await wait_until(lambda: all(_shares(n, pid) == once for n in nodes), 20)

            # The phone is stolen: the laptop revokes it (cut: now).
            revoke = await laptop.author("revoke", {"device": phone.peer_id})
            await wait_until(lambda: all(n.store.has(revoke.id) for n in nodes))
            # The thief's node still signs; a maintainer (pressed) even endorses its work.
            stolen = await phone.author(
                "contribution", {**fields, "title": "Thief", "minutes": 900}
            )
            await wait_until(lambda: keeper.store.has(stolen.id))
            late = await keeper.author(
                "endorsement", {"target": stolen.id.hex(), "weight": 10, "force": True}
            )
            await wait_until(
                lambda: all(n.store.has(late.id) and n.store.has(stolen.id) for n in nodes)
            )
            for node in nodes:
                assert _shares(node, pid) == once
                listed = {e["id"] for e in node.views.ledger(pid)}
                assert listed == {on_laptop.id.hex(), on_phone.id.hex()}
            # Reconciliation agrees with gossip: a fresh node that syncs sees the same.
            late_node = await stack.enter_async_context(
                running(tmp_path, "late", bootstrap=[addr(keeper)])
            )
            await wait_until(lambda: late_node.store.has(late.id), 30)
            await wait_until(lambda: late_node.store.has(revoke.id), 30)
            assert _shares(late_node, pid) == once
