"""``commons admin`` from outside, against a running seed: block with purge, ban, a restart,
unblock; each a separate ``commons`` process talking to the node's API."""

from __future__ import annotations

import pytest
from system_harness import Nodes, wait_connected, wait_until

from protocol.signing import peer_id

#: A peer id nobody runs, to ban.
STRANGER = peer_id(bytes(range(32)))


@pytest.mark.slow
def test_admin_moderates_a_running_seed(nodes: Nodes) -> None:
    seed = nodes.home("seed")
    alice = nodes.home("alice")
    seed.init()
    alice.init()
    seed.start(extra=("--seed",))
    alice.start(seed)
    wait_connected(seed, alice)
    project = alice.cli("project", "create", "Moderated")["id"]
    wait_until(lambda: seed.has_record(project), what="the project to reach the seed")

    blocked = seed.cli("admin", "block-author", alice.peer_id, "--purge")
    assert blocked == {
        "kind": "author",
        "key": alice.peer_id,
        "blocked": True,
        "changed": True,
        "purged": 1,
    }
    assert not seed.has_record(project)
    later = alice.cli(
        "contribute", project, "--type", "code", "--title", "After the block", "--minutes", "5"
    )["id"]
    assert seed.cli("sync")["received"] == 0
    assert not seed.has_record(later)
    banned = seed.cli("admin", "ban", STRANGER, "--for", "1h")
    assert banned["peer"] == STRANGER
    assert isinstance(banned["until"], int)
    refusal = seed.run("admin", "unblock-project", "ab" * 32, expect=1)
    assert refusal.error_lines == [f"error: {'ab' * 32} is not blocked"]
    metrics = seed.request("GET", "/metrics").text
    assert 'commons_policy_refused_total{reason="blocked",source="sync"}' in metrics

    # Both survive a restart; reconciliation still fetches nothing of alice's.
    seed.stop()
    seed.start(alice)
    wait_connected(seed, alice)
    assert [b["key"] for b in seed.cli("admin", "blocks")] == [alice.peer_id]
    assert [b["peer"] for b in seed.cli("admin", "bans")] == [STRANGER]
    assert seed.cli("sync")["received"] == 0
    assert "banned" in seed.cli("admin", "unban", STRANGER, json=False)

    unblocked = seed.cli("admin", "unblock-author", alice.peer_id)
    assert unblocked["released"] == 2
    seed.cli("sync")  # or a sync the node started meanwhile brought them
    wait_until(
        lambda: seed.has_record(project) and seed.has_record(later),
        what="the unblocked records to return",
    )
