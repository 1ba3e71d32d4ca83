"""Followers of a niche project meet through the DHT (issue 14), with real network namespaces.

Twelve ``commons node run`` processes, each in its own network namespace on one bridge
(``netns_lab.py``): two seeds, DHT servers whose ``[policy] host`` lists two other projects and
none of P; three followers of P that know only the seeds (``--bootstrap``) and each hold P's
genesis and their own contribution; seven more nodes that follow the other projects. The
seeds run with ``node.peer_exchange = false``: a seed of thousands hands out the two other
followers of a niche project with negligible odds, and the test must not depend on a seed
of twelve doing so. Peer exchange stays on everywhere else, mDNS is off.

Checked: within ``CONVERGE_LIMIT`` seconds of the ten members' launch, each follower holds
all four of P's records; the followers reached each other by dialling providers a DHT lookup
found (``commons_dials_total{source="provider"}``); the seeds hold none of P's work, and
their routing tables only each other (the members run as DHT clients, which open DHT
streams too, and py-libp2p 0.8.1 admitted them: ``node/net/_compat/kad.py``). The
figure printed (and kept in docs/SCALING.md) is the time from launch to converged.

Needs root and ``ip``; it is skipped, saying why, where namespaces cannot be created. The
namespaces are removed even when the test fails.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from netns_lab import NetnsLab, NetnsUnavailable
from netns_node import NsNode
from system_harness import wait_until

from node.store.sqlite import Store
from protocol.record import Record
from protocol.testing import RecordFactory

NODES = 12
SEEDS = (0, 1)
FOLLOWERS = (2, 3, 4)
CONVERGE_LIMIT = float(os.environ.get("COMMONS_DHT_CONVERGE_LIMIT", "90"))


@pytest.fixture
def lab() -> Any:
    if os.geteuid() != 0:
        pytest.skip("DHT namespace test: network namespaces need root (run as root, or in CI)")
    network = NetnsLab(NODES, net=232)
    try:
        network.up()
    except NetnsUnavailable as exc:
        network.down()
        pytest.skip(f"DHT namespace test: cannot create network namespaces here: {exc}")
    try:
        yield network
    finally:
        network.down()


def preload(node: NsNode, records: list[Record]) -> None:
    with Store.open(node.home / "ledger.db") as store:
        store.add(records, published=True)


def configure(node: NsNode, hosted: list[bytes]) -> None:
    """A seed's config.toml: it hosts only ``hosted`` and does no peer exchange."""
    path = node.home / "config.toml"
    text = path.read_text()
    listed = ", ".join(f'"{p.hex()}"' for p in hosted)
    for old, new in (
        ('host = "all"', f"host = [{listed}]"),
        ("peer_exchange = true", "peer_exchange = false"),
    ):
        assert old in text, f"config.toml no longer has {old!r}"
        text = text.replace(old, new)
    path.write_text(text)


def sample(metrics: str, name: str, **labels: str) -> float:
    """One sample of ``name`` with exactly ``labels`` from a /metrics text; 0 when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(f"{name}{{{wanted}}}" if labels else name) + r" ([0-9.e+]+)$"
    for line in metrics.splitlines():
        if match := re.match(pattern, line):
            return float(match.group(1))
    return 0.0


def test_followers_of_a_project_no_seed_hosts_meet_through_the_dht(
    lab: NetnsLab, tmp_path: Path
) -> None:
    f = RecordFactory()
    niche = f.project("alice", name="Niche")
    work = [
        f.contribution(who, niche, title=f"part by {who}") for who in ("alice", "carol", "dave")
    ]
    hosted = [f.project(who, name=f"Hosted by {who}") for who in ("erin", "frank")]
    wanted = {niche.id, *(r.id for r in work)}
    nodes = [NsNode(lab, i, tmp_path) for i in range(NODES)]
    members = [n for n in nodes if n.i not in SEEDS]
    for node in nodes:
        if node.i in SEEDS:
            configure(node, [p.id for p in hosted])
        elif node.i in FOLLOWERS:
            preload(node, [niche, work[FOLLOWERS.index(node.i)]])
        else:
            preload(node, [hosted[node.i % 2]])
    try:
        seeds = [nodes[i] for i in SEEDS]
        seeds[0].start([], "--seed")
        seeds[1].start([seeds[0]], "--seed")
        launched = time.monotonic()
        for node in members:
            project = niche if node.i in FOLLOWERS else hosted[node.i % 2]
            # DHT clients for good (an explicit --dht client is never promoted to server): in
            # this lab every member is publicly reachable, and promoted members would enter
            # the seeds' routing tables, where the test checks that clients never do.
            node.start(seeds, "--follow", project.id.hex(), "--dht", "client", wait=False)
        for node in members:
            node.wait_ready(timeout=60)
        ready = time.monotonic() - launched
        followers = [nodes[i] for i in FOLLOWERS]

        def converged() -> bool:
            return all(wanted <= n.ids() for n in followers)

        try:
            wait_until(
                converged, timeout=CONVERGE_LIMIT, interval=0.2, what="P's followers to converge"
            )
        except AssertionError:
            for node in (*seeds, *followers):
                text = lab.call(node.i, node.metrics)
                dht = [
                    ln
                    for ln in text.splitlines()
                    if ln.startswith(("commons_dht", "commons_dials"))
                ]
                print(f"{node.name}: holds {len(wanted & node.ids())} of P, {dht}")
            raise
        took = time.monotonic() - launched

        follower_ids = {n.info["peer_id"] for n in followers}
        provider_dials = 0.0
        for node in followers:
            peers = {p["peer_id"] for p in node.get("/api/v1/peers")}
            assert peers & follower_ids, f"{node.name} is connected to no other follower of P"
            text = lab.call(node.i, node.metrics)
            provider_dials += sample(text, "commons_dials_total", source="provider")
            assert sample(text, "commons_dht_provides_total", outcome="ok") >= 1
        # The seeds exchange no peers, so followers learn of each other only through the DHT,
        # by a provider lookup's dial; then peer exchange between joined followers may add the
        # rest. A CI run saw one provider dial, so one at least is what is asserted.
        assert provider_dials >= 1, provider_dials
        for seed in seeds:
            assert not {r.id for r in work} & seed.ids(), f"{seed.name} holds P's work"
            text = lab.call(seed.i, seed.metrics)
            # Only DHT servers enter routing tables: the other seed, none of the ten clients
            # that opened DHT streams to it.
            assert sample(text, "commons_dht_routing_table_peers") == 1
        print(
            f"dht-netns: {NODES} namespaces, 2 seeds hosting none of P, 3 followers of P: "
            f"members up {ready:.1f} s after launch, P's followers converged {took:.1f} s "
            f"after launch ({provider_dials:.0f} provider dials)"
        )
    finally:
        for node in nodes:
            node.stop()
