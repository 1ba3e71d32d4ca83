"""Peer exchange decisions in the pure service (``node.peering`` inside ``NodeService``):
whom to ask, what to keep, what to offer, and how learned addresses are dialled."""

from __future__ import annotations

import random

from node.peering import AskPeers
from node.service import Dial, NodeService, ServiceConfig

ME, SEED = "12D3KooWme", "12D3KooWseed"


def peer(n: int) -> str:
    """A peer id as the codec checks them (base58, 32 characters or more)."""
    return "12D3KooWpeer" + "x" * 24 + chr(ord("a") + n)


def public(n: int, net: int = 1) -> str:
    return f"/ip4/93.184.{net}.{n}/tcp/4710/p2p/{peer(n)}"


def service(**kw: object) -> NodeService:
    return NodeService(our_peer=ME, rng=random.Random(3), config=ServiceConfig(**kw))  # type: ignore[arg-type]


def asks(effects: list[object]) -> list[AskPeers]:
    return [e for e in effects if isinstance(e, AskPeers)]


def dials(effects: list[object]) -> list[Dial]:
    return [e for e in effects if isinstance(e, Dial)]


def test_a_node_short_of_peers_asks_each_new_peer_then_again_after_the_interval() -> None:
    s = service(exchange_interval=30.0, max_pending_asks=1)
    s.connected(SEED, 0.0)
    s.connected(peer(1), 0.0)
    first = asks(s.tick(0.0))
    assert len(first) == 1  # one in flight at most
    assert asks(s.tick(0.5)) == []
    s.peers_offered(first[0].peer, [], 1.0)
    second = asks(s.tick(1.0))
    assert [a.peer for a in first + second] == sorted([SEED, peer(1)])
    s.peers_offered(second[0].peer, [], 1.5)
    assert asks(s.tick(20.0)) == []
    assert [a.peer for a in asks(s.tick(30.0))] == [first[0].peer]


def test_a_node_at_its_target_asks_nobody() -> None:
    s = service(target_peers=2)
    s.connected(SEED, 0.0)
    s.connected(peer(1), 0.0)
    assert asks(s.tick(0.0)) == []


def test_learned_addresses_are_dialled_and_counted_as_exchange() -> None:
    s = service()
    s.connected(SEED, 0.0)
    new, over = s.peers_offered(SEED, [public(1), public(2, net=2), f"/x/p2p/{ME}"], 0.0)
    assert (new, over) == (2, 0)
    got = dials(s.tick(0.5))
    assert {d.addr for d in got} == {public(1), public(2, net=2)}
    assert {d.source for d in got} == {"exchange"}


def test_one_source_fills_at_most_its_share_of_the_address_book() -> None:
    s = service(max_learned_per_source=3)
    s.connected(SEED, 0.0)
    new, over = s.peers_offered(SEED, [public(n, net=n) for n in range(1, 6)], 0.0)
    assert (new, over) == (3, 2)
    assert s.peers_offered(SEED, [public(9, net=9)], 1.0) == (0, 1)


def test_connections_spread_over_networks() -> None:
    """Five peers offered on one /24 and two elsewhere: at most two go into that /24."""
    s = service(max_per_group=2, max_pending_dials=10)
    s.connected(SEED, 0.0)
    crowded = [public(n, net=7) for n in range(1, 6)]
    s.peers_offered(SEED, [*crowded, public(10, net=8), public(11, net=9)], 0.0)
    got = {d.addr for d in dials(s.tick(0.5))}
    assert len(got & set(crowded)) == 2
    assert {public(10, net=8), public(11, net=9)} <= got


def test_bootstrap_peers_are_dialled_even_at_the_target() -> None:
    """Learned peers alone may fill the target; a bootstrap peer is still redialled."""
    s = service(target_peers=1)
    boot = public(50, net=50)
    s.address_learned(boot, bootstrap=True)
    s.address_learned(public(51, net=51))
    s.connected(peer(60), 0.0)
    assert [d.addr for d in dials(s.tick(0.5))] == [boot]


def test_the_offer_leaves_out_the_asker_and_local_addresses_for_remote_askers() -> None:
    s = service()
    loop = f"/ip4/127.0.0.1/tcp/1/p2p/{peer(2)}"
    listing = [(peer(1), [public(1)]), (peer(2), [loop]), (peer(3), [public(3), "garbage"])]
    assert sorted(s.exchange.offer(peer(3), False, 16, listing)) == [public(1)]
    assert sorted(s.exchange.offer(peer(3), True, 16, listing)) == sorted([public(1), loop])
    assert len(s.exchange.offer(peer(9), True, 1, listing)) == 1
    opened = service(offer_local=True)
    assert loop in opened.exchange.offer(peer(3), False, 16, listing)
