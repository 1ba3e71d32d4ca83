"""A node behind a masquerading home router is reached through a seed's relay (issue 14).

Three ``commons node run`` processes in the namespaces of ``nat_lab.py``: a seed on the
"internet", ``home`` behind a router that masquerades (nothing can dial it), and ``open`` on
the internet too, bootstrapped to the seed alone. Expected, with no setting but the
defaults: ``home`` asks the seed to dial it back, which fails at the router, so it finds
itself private, reserves a slot on the seed (a seed relays by default) and advertises the
relayed address; ``open`` is found public. ``open`` learns the relayed address from the seed
by peer exchange and dials through the relay. The seed hosts another project only, so the
project's contributions cross between ``home`` and ``open`` only over their own connection
(relayed, then direct): both ways, checked. Figures printed: seconds to the reservation and
to the relayed connection, and the bytes the relay carried.

Hole punching: then DCUtR upgrades the relayed connection to a direct one (``home`` can
dial ``open``, which is public: the router masquerades that connection like any other), and
the test waits for it; the relay closes the relayed leg a minute later.

Needs root, ``ip`` and ``nft``; skipped, saying why, where they are missing. The namespaces
are removed even when the test fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nat_lab import NatLab, NetnsUnavailable
from netns_node import NsNode
from procs import store_ids
from reliability_harness import FULL
from system_harness import wait_until

#: The only project the seed hosts: not the one the test makes, so it never carries its work.
OTHER_PROJECT = "ab" * 32


class NatNode(NsNode):
    """A ``commons node run`` process in the namespace ``name`` of the NAT lab."""

    def start(self, *extra: str, bootstrap: NatNode | None = None) -> None:
        super().start([] if bootstrap is None else [bootstrap], *extra)

    def status(self) -> dict[str, Any]:
        return dict(self.get("/api/v1/status"))

    def metric(self, line: str) -> float:
        for row in self.lab.call(self.i, self.metrics).splitlines():
            if row.startswith(line + " "):
                return float(row.rsplit(" ", 1)[1])
        return 0.0

    def peers(self) -> set[str]:
        return {p["peer_id"] for p in self.get("/api/v1/peers")}

    def relayed(self, peer: str) -> bool:
        return any(p["relayed"] for p in self.get("/api/v1/peers") if p["peer_id"] == peer)


def _up(network: NatLab) -> Iterator[NatLab]:
    """The lab's namespaces for one test, removed after it even when it fails; the test is
    skipped, saying why, where the lab cannot be built."""
    try:
        network.up()
    except NetnsUnavailable as exc:
        network.down()
        pytest.skip(f"NAT test: {exc}")
    try:
        yield network
    finally:
        network.down()


@pytest.fixture
def lab() -> Iterator[NatLab]:
    yield from _up(NatLab())


def test_a_node_behind_nat_is_reached_through_the_seeds_relay(lab: NatLab, tmp_path: Path) -> None:
    seed, home, open_ = (NatNode(lab, n, tmp_path) for n in ("seed", "home", "open"))
    config = seed.home / "config.toml"
    config.write_text(config.read_text().replace('host = "all"', f'host = ["{OTHER_PROJECT}"]'))
    try:
        seed.start("--seed")
        started = time.monotonic()
        home.start(bootstrap=seed)
        wait_until(
            lambda: home.status()["relays"] == [seed.info["peer_id"]],
            timeout=30,
            what="home to reserve a slot on the seed",
        )
        reserved = time.monotonic() - started
        assert home.status()["reachability"] == "private"
        relayed = [a for a in home.status()["addrs"] if "/p2p-circuit/" in a]
        assert relayed == [f"{seed.addr}/p2p-circuit/p2p/{home.info['peer_id']}"]

        started = time.monotonic()
        open_.start(bootstrap=seed)
        wait_until(
            lambda: home.info["peer_id"] in open_.peers(),
            timeout=45,
            what="open to connect to home through the relay",
        )
        connected = time.monotonic() - started
        wait_until(
            lambda: open_.status()["reachability"] == "public",
            timeout=30,
            what="open to be found public",
        )
        assert open_.metric('commons_relay_circuits_dialled_total{outcome="ok"}') >= 1
        assert seed.metric('commons_relay_hop_circuits_total{outcome="opened"}') >= 1

        project = home.post("/api/v1/projects", {"name": "Behind NAT"})["id"]
        body = {"type": "code", "title": "from behind the router"}
        inside = home.post(f"/api/v1/projects/{project}/contributions", body)["id"]
        wait_until(
            lambda: bytes.fromhex(inside) in store_ids(open_.home),
            timeout=30,
            what="home's record to reach open",
        )
        body = {"type": "code", "title": "from the internet"}
        outside = open_.post(f"/api/v1/projects/{project}/contributions", body)["id"]
        wait_until(
            lambda: bytes.fromhex(outside) in store_ids(home.home),
            timeout=30,
            what="open's record to reach home",
        )
        held = store_ids(seed.home)
        assert bytes.fromhex(inside) not in held
        assert bytes.fromhex(outside) not in held  # so both crossed over the circuit
        carried = seed.metric("commons_relay_hop_bytes_total")
        assert carried > 0
        # Home can dial open (open is public), so the relayed connection becomes a direct
        # one, through the router's masquerade: by DCUtR, or by home's own dial of an
        # address it learnt of open, when that comes first (DCUtR then finds the direct
        # connection there and counts nothing; seen once in CI). DCUtR's own counts are
        # checked in tests/node/test_relay.py.
        wait_until(
            lambda: not open_.relayed(home.info["peer_id"]),
            timeout=30,
            what="the relayed connection to become direct",
        )
        upgrades = {
            o: home.metric(f'commons_relay_dcutr_total{{outcome="{o}"}}')
            + open_.metric(f'commons_relay_dcutr_total{{outcome="{o}"}}')
            for o in ("direct_dial", "punched", "failed")
        }
        assert home.info["peer_id"] in open_.peers()  # connected, and not through the relay
        print(
            f"nat: home reserved a relay slot {reserved:.1f} s after start; open reached it "
            f"through the relay {connected:.1f} s after start; the relay carried "
            f"{carried / 1024:.0f} KiB; records crossed both ways; then it became direct "
            f"(DCUtR outcomes: {upgrades})"
        )
    finally:
        for node in (open_, home, seed):
            node.stop()


@pytest.fixture
def lab2() -> Iterator[NatLab]:
    yield from _up(NatLab(homes=2))


@pytest.mark.skipif(
    not FULL,
    reason="two NATs: full runs only (scripts/reliability); the reduced forms test one NAT",
)
def test_two_nodes_each_behind_nat_meet_through_the_relay(lab2: NatLab, tmp_path: Path) -> None:
    """Both ends behind their own masquerading router: only the relay joins them at first,
    and only DCUtR's simultaneous dial could make it direct. On this virtual network (a
    round trip of a tenth of a millisecond) one side's SYN reaches the other router before
    that side's own SYN has left it, and the router answers with a reset: the exchanges fail
    and the connection stays relayed, carrying the records. Either outcome is accepted and
    printed; what is asserted is that records cross, and that the tries are bounded."""
    seed, home, home2 = (NatNode(lab2, n, tmp_path) for n in ("seed", "home", "home2"))
    try:
        seed.start("--seed")
        home.start(bootstrap=seed)
        for node in (home, home2):
            if node is home2:
                home2.start(bootstrap=seed)
            wait_until(
                lambda node=node: node.status()["relays"] == [seed.info["peer_id"]],
                timeout=30,
                what=f"{node.name} to reserve a slot on the seed",
            )
        wait_until(
            lambda: home.info["peer_id"] in home2.peers(),
            timeout=45,
            what="home2 to connect to home through the relay (learnt by peer exchange)",
        )
        project = home.post("/api/v1/projects", {"name": "Two homes"})["id"]
        body = {"type": "code", "title": "from the first home"}
        first = home.post(f"/api/v1/projects/{project}/contributions", body)["id"]
        wait_until(
            lambda: bytes.fromhex(first) in store_ids(home2.home),
            timeout=30,
            what="home's record to reach home2",
        )

        def outcomes() -> dict[str, float]:
            return {
                o: sum(
                    n.metric(f'commons_relay_dcutr_total{{outcome="{o}"}}') for n in (home, home2)
                )
                for o in ("direct_dial", "punched", "failed", "exhausted")
            }

        wait_until(
            lambda: outcomes()["punched"] >= 1 or outcomes()["failed"] >= 3,
            timeout=90,
            what="DCUtR to succeed or to fail three times",
        )
        time.sleep(10)  # the tries left, if any
        seen = outcomes()
        # Each side drives at most three exchanges a relayed connection (four tries in all),
        # each counted on both sides.
        assert seen["punched"] + seen["failed"] <= 2 * 2 * 3
        relayed = home2.relayed(home.info["peer_id"])
        assert relayed == (seen["punched"] == 0)
        print(
            f"nat, both behind NAT: met through the relay; DCUtR {seen}; the connection "
            f"{'stays relayed' if relayed else 'became direct'}"
        )
    finally:
        for node in (home2, home, seed):
            node.stop()
