"""When the pure service provides and looks up projects in the DHT (``node.providers``), and
which providers it dials."""

from __future__ import annotations

import random

from node.providers import DhtConfig, FindProviders, Provide, ProviderPlan
from node.service import Dial, NodeService, ServiceConfig
from protocol.peers import provider_key

P, Q = b"\x01" * 32, b"\x02" * 32


def plan(**kw: object) -> ProviderPlan:
    return ProviderPlan(DhtConfig(**kw))  # type: ignore[arg-type]


def test_a_followed_project_is_looked_up_and_provided_then_again_at_its_intervals() -> None:
    p = plan(provide_interval=100.0, lookup_interval=10.0)
    p.follow(P)
    assert p.due(0.0) == [FindProviders(P, provider_key(P), 7), Provide(P, provider_key(P))]
    assert p.due(5.0) == []
    assert p.due(10.0) == [FindProviders(P, provider_key(P), 7)]
    assert Provide(P, provider_key(P)) in p.due(100.0)


def test_the_budget_bounds_operations_and_lookups_go_first() -> None:
    p = plan(ops_per_minute=2)
    p.follow(P)
    p.follow(Q)
    assert [type(e) for e in p.due(0.0)] == [FindProviders, FindProviders]
    assert p.due(1.0) == []  # the bucket refills at 2 a minute
    assert [type(e) for e in p.due(31.0)] == [Provide]
    # What waited is counted once however many ticks it waited: P's and Q's provides.
    assert p.deferred == {"provide": 2}
    p.due(32.0)
    assert p.deferred == {"provide": 2}


def test_a_re_lookup_is_skipped_when_enough_followers_share_the_mesh() -> None:
    p = plan(ops_per_minute=1, provider_dials=3, lookup_interval=10.0)
    p.follow(P)
    assert [type(e) for e in p.due(0.0)] == [FindProviders]
    assert not p.skip_lookup(P, 2)  # two followers: look for more
    assert not p.skip_lookup(Q, 5)  # not followed
    assert p.due(10.0) == []  # the budget: one operation a minute
    assert [type(e) for e in p.due(60.0)] == [FindProviders]
    assert p.skip_lookup(P, 3)
    assert p.skipped == 1
    # Its token came back: the provide that waited for it runs at once.
    assert [type(e) for e in p.due(60.5)] == [Provide]


def test_failures_are_retried_sooner_with_back_off() -> None:
    p = plan(retry=5.0, lookup_interval=600.0)
    p.follow(P)
    p.due(0.0)
    p.provided(P, False, 0.0)
    assert p.found(P, [], "me", set(), 0.0) == []
    assert [type(e) for e in p.due(5.0)] == [FindProviders, Provide]
    p.provided(P, False, 5.0)
    assert p.found(P, [], "me", set(), 5.0) == []
    assert p.due(14.0) == []
    assert len(p.due(15.0)) == 2  # 10 s the second time


def test_at_most_a_few_providers_are_dialled_never_us_nor_connected_ones() -> None:
    p = plan(provider_dials=2)
    found = [("me", ["/a/p2p/me"]), ("x", ["/x/p2p/x"]), ("y", []), ("z", ["/z/p2p/z"])]
    found += [("w", ["/w/p2p/w"])]
    assert p.found(P, found, "me", {"x"}, 0.0) == ["/z/p2p/z", "/w/p2p/w"]


def test_without_a_dht_the_service_never_asks_for_one() -> None:
    s = NodeService(
        our_peer="me", rng=random.Random(1), config=ServiceConfig(follow=frozenset({P}))
    )
    s.started(0.0)
    assert not [e for e in s.tick(0.0) if isinstance(e, Provide | FindProviders)]


def test_providers_are_dialled_even_at_the_target() -> None:
    config = ServiceConfig(follow=frozenset({P}), dht=DhtConfig(), target_peers=1)
    s = NodeService(our_peer="me", rng=random.Random(1), config=config)
    effects = s.started(0.0)
    assert not [e for e in effects if isinstance(e, Provide | FindProviders)]
    assert FindProviders(P, provider_key(P), 7) in s.tick(0.0)  # followed from the start
    s.connected("12D3KooWother", 0.0)
    s.address_learned("/ip4/127.0.0.1/tcp/1/p2p/12D3KooWpeer", provider=True)
    s.address_learned("/ip4/127.0.0.1/tcp/2/p2p/12D3KooWknown")
    dials = [e for e in s.tick(1.0) if isinstance(e, Dial)]
    assert [(d.addr, d.source) for d in dials] == [
        ("/ip4/127.0.0.1/tcp/1/p2p/12D3KooWpeer", "provider")
    ]
    # A provider that cannot be dialled is forgotten, not retried: the DHT may lie.
    s.dial_failed("/ip4/127.0.0.1/tcp/1/p2p/12D3KooWpeer", 2.0)
    for t in (10.0, 100.0, 1000.0):
        assert not [e for e in s.tick(t) if isinstance(e, Dial) and e.source == "provider"]
