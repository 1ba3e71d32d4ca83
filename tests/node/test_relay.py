"""Circuit relay v2 and the dial-back reachability test, in one process on loopback: a node
that cannot be dialled reserves a slot on a relay and is reached through it (gossip and
reconciliation run over the circuit); a full relay refuses with a reason and nobody stops."""

from __future__ import annotations

import hashlib
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import trio
from test_node import addr, running, wait_until

from node.net.relay import RelaySettings, judge, split_circuit
from node.net.transport import TransportConfig, TransportError, open_transport
from node.service import ServiceConfig
from protocol.testing import RecordFactory

NO_EXCHANGE = ServiceConfig(max_pending_asks=0)
RELAY = RelaySettings(hop=True, reachability="public", reserve=False)
#: No hole punching: on loopback it would turn the circuit into a direct connection at once.
BEHIND_NAT = RelaySettings(reachability="private", hole_punch=False)


def _config(name: str, listen: str = "/ip4/127.0.0.1/tcp/0", **kw: object) -> TransportConfig:
    seed = hashlib.sha256(b"relay-test-" + name.encode()).digest()
    return TransportConfig(seed=seed, listen=(listen,), **kw)  # type: ignore[arg-type]


def _relayed(addrs: list[str]) -> list[str]:
    return [a for a in addrs if "/p2p-circuit/" in a]


async def test_a_node_behind_nat_is_reached_through_a_relay(tmp_path: Path) -> None:
    """The relay follows another project, so P's records can reach the far side only over
    the circuit: by reconciliation first (B's records, held before C came), then by gossip."""
    f = RecordFactory()
    niche, other = f.project("alice", name="Niche"), f.project("bob", name="Other")
    early = f.contribution("alice", niche, title="before the circuit")
    late = f.contribution("carol", niche, title="over the circuit")
    later = f.contribution("alice", niche, title="back over the circuit")
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            s = await stack.enter_async_context(
                running(tmp_path, "s", follow=[other.id], relay=RELAY, tuning=NO_EXCHANGE)
            )
            b = await stack.enter_async_context(
                running(
                    tmp_path,
                    "b",
                    follow=[niche.id],
                    relay=BEHIND_NAT,
                    bootstrap=[addr(s)],
                    tuning=NO_EXCHANGE,
                    sync_interval=3600,
                )
            )
            await b.submit(niche.raw)
            await b.submit(early.raw)
            await wait_until(lambda: bool(_relayed(b.transport.advertised_addrs())), 15)
            relayed = _relayed(b.transport.advertised_addrs())[0]
            _relay_addr, relay, target = split_circuit(relayed)
            assert (relay, target) == (s.peer_id, b.peer_id)
            assert b.status()["reachability"] == "private"
            assert b.status()["relays"] == [s.peer_id]
            assert relayed in b.home.running_node()["addrs"]  # node.json: what `commons id` shows
            # Identify was pushed: the relay already tells others the relayed address.
            await wait_until(lambda: relayed in _addrs_of(s, b.peer_id), 5)

            c = await stack.enter_async_context(
                running(
                    tmp_path,
                    "c",
                    follow=[niche.id],
                    bootstrap=[relayed],
                    tuning=NO_EXCHANGE,
                    sync_interval=3600,
                )
            )
            await wait_until(lambda: c.store.has(early.id), 20)  # reconciliation over it
            # Then gossip, both ways (no periodic reconciliation: its interval is an hour). B's
            # addresses changed with its reservation: its gossip must carry its new signed
            # peer record at once, or C, which has that one from identify, ignores it.
            await c.submit(late.raw)
            await wait_until(lambda: b.store.has(late.id), 5)
            await b.submit(later.raw)
            await wait_until(lambda: c.store.has(later.id), 5)
            assert not s.store.has(early.id)
            assert not s.store.has(late.id)
            hop = s.transport.relay.service.stats
            assert hop.circuits.get("opened", 0) >= 1
            assert hop.bytes_relayed > 0
            assert hop.reservations.get("accepted") == 1
            assert c.transport.relay.stats.circuits_dialled.get("ok", 0) >= 1
            metrics = s.metrics.render()
            assert 'commons_relay_reservations{role="relay"} 1' in metrics
            assert 'commons_relay_hop_circuits_total{outcome="opened"}' in metrics
            assert "commons_relay_reachable 0" in b.metrics.render()


def _ids(peers: list) -> set[str]:  # type: ignore[type-arg]
    return {p.peer_id for p in peers}


def _addrs_of(node, peer: str) -> list[str]:  # type: ignore[no-untyped-def]
    return next((p.addrs for p in node.transport.connected_peers() if p.peer_id == peer), [])


async def test_a_full_relay_refuses_with_a_reason_and_keeps_running() -> None:
    small = RelaySettings(hop=True, reachability="public", reserve=False, max_reservations=1)
    with trio.fail_after(30):
        async with (
            open_transport(_config("relay", relay=small)) as relay,
            open_transport(_config("first", relay=BEHIND_NAT)) as first,
            open_transport(_config("second", relay=BEHIND_NAT)) as second,
            open_transport(_config("dialler")) as dialler,
        ):
            await first.connect(relay.listen_addrs()[0])
            await wait_until(lambda: bool(first.relay.reservations()), 10)
            await second.connect(relay.listen_addrs()[0])
            await wait_until(lambda: bool(second.relay.stats.reservations_made.get("refused")))
            assert not second.relay.reservations()
            assert not _relayed(second.advertised_addrs())
            assert second.relay._last_reason[relay.peer_id].startswith("over the relay's limits")
            assert relay.relay.service.stats.reservations == {"accepted": 1, "full": 1}
            # Asking again at once is refused by the rate limit, with its own reason.
            with pytest.raises(Exception, match="reservation refused"):
                await second.relay.reserve_now(relay.peer_id)
            assert relay.relay.service.stats.reservations.get("rate_limited") == 1
            # A node without a slot cannot be dialled through the relay: refused, with why.
            circuit = f"{relay.listen_addrs()[0]}/p2p-circuit/p2p/{second.peer_id}"
            with pytest.raises(TransportError, match="no reservation"):
                await dialler.connect(circuit)
            assert relay.relay.service.stats.circuits.get("no_reservation") == 1
            # The one with a slot can.
            circuit = f"{relay.listen_addrs()[0]}/p2p-circuit/p2p/{first.peer_id}"
            assert await dialler.connect(circuit) == first.peer_id
            # Circuits are rate-limited a peer: with a limit of one a minute, the next is refused.
            relay.relay.service._circuits_per_minute = 1
            await dialler.disconnect(first.peer_id)
            await wait_until(lambda: first.peer_id not in _ids(dialler.connected_peers()))
            with pytest.raises(TransportError, match="over the relay's limits"):
                await dialler.connect(circuit)
            assert relay.relay.service.stats.circuits.get("rate_limited") == 1
            await second.subscribe("still-here")  # everyone is still running
            assert first.peer_id in {p.peer_id for p in relay.connected_peers()}


async def test_the_dial_back_tells_reachable_from_unreachable() -> None:
    """A node listening on 127.0.0.2 dials out from 127.0.0.1, the address its peer dials
    back: nothing listens there, as behind a NAT. One listening on 127.0.0.1 is reachable,
    and its DHT client becomes a server."""
    auto = RelaySettings(reachability="auto")
    with trio.fail_after(40):
        async with (
            open_transport(_config("seed", relay=RELAY, dht="server")) as seed,
            open_transport(_config("hidden", "/ip4/127.0.0.2/tcp/0", relay=auto)) as hidden,
            open_transport(_config("open", relay=auto, dht="client", dht_promote=True)) as open_,
        ):
            await hidden.connect(seed.listen_addrs()[0])
            await open_.connect(seed.listen_addrs()[0])
            await wait_until(lambda: hidden.relay.reachability == "private", 20)
            await wait_until(lambda: open_.relay.reachability == "public", 20)
            await wait_until(lambda: bool(_relayed(hidden.advertised_addrs())), 10)
            assert not _relayed(open_.advertised_addrs())
            await wait_until(lambda: open_.dht.mode == "server", 5)
            served = seed.relay.stats.dialbacks_served
            assert served.get("reachable") == 1
            assert served.get("unreachable") == 1


def test_the_verdict() -> None:
    assert judge([]) is None
    assert judge([False, False]) == "private"
    assert judge([False, True]) == "public"


def test_relay_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_reservations"):
        RelaySettings(max_reservations=0)
    with pytest.raises(ValueError, match="reachability"):
        RelaySettings(reachability="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not <relay address>"):
        split_circuit("/ip4/127.0.0.1/tcp/1/p2p-circuit")


async def test_peer_exchange_passes_on_the_relayed_address(tmp_path: Path) -> None:
    """B advertises only its relayed address (``no_announce`` hides the direct one); C,
    bootstrapped to the relay alone, learns it by peer exchange and dials through."""
    hidden = ["/ip4/127.0.0.0/ipcidr/8"]
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            s = await stack.enter_async_context(running(tmp_path, "s", relay=RELAY))
            b = await stack.enter_async_context(
                running(tmp_path, "b", relay=BEHIND_NAT, bootstrap=[addr(s)], no_announce=hidden)
            )
            await wait_until(lambda: bool(_relayed(b.transport.advertised_addrs())), 15)
            assert b.transport.advertised_addrs() == _relayed(b.transport.advertised_addrs())
            # C hides its direct address too: B, told of C by the relay's peer exchange, could
            # otherwise dial C itself, and the connection would not be the one under test.
            c = await stack.enter_async_context(
                running(tmp_path, "c", bootstrap=[addr(s)], no_announce=hidden)
            )
            await wait_until(
                lambda: b.peer_id in {p.peer_id for p in c.transport.connected_peers()}, 30
            )
            assert c.transport.relay.stats.circuits_dialled.get("ok", 0) >= 1
            assert c.metrics.get("commons_dials_total", source="exchange") >= 1


async def test_a_relayed_connection_becomes_direct_where_a_dial_works(tmp_path: Path) -> None:
    """On loopback the direct addresses answer (B only claims to be private): DCUtR's plain
    dial upgrades the relayed connection to a direct one (the relayed one is closed 60 s
    later by the library)."""
    punching = RelaySettings(reachability="public", reserve=False, hole_punch=True)
    private = RelaySettings(reachability="private", hole_punch=True)
    with trio.fail_after(60):
        async with AsyncExitStack() as stack:
            s = await stack.enter_async_context(running(tmp_path, "s", relay=RELAY))
            b = await stack.enter_async_context(
                running(tmp_path, "b", relay=private, bootstrap=[addr(s)], tuning=NO_EXCHANGE)
            )
            await wait_until(lambda: bool(_relayed(b.transport.advertised_addrs())), 15)
            relayed = _relayed(b.transport.advertised_addrs())[0]
            c = await stack.enter_async_context(
                running(tmp_path, "c", relay=punching, bootstrap=[relayed], tuning=NO_EXCHANGE)
            )
            await wait_until(
                lambda: b.peer_id in {p.peer_id for p in c.transport.connected_peers()}, 15
            )
            await wait_until(lambda: not c.transport.is_relayed(b.peer_id), 20)
            # Both ends drive DCUtR; whichever dialled first made the direct connection.
            line = 'commons_relay_dcutr_total{outcome="direct_dial"} 1'
            await wait_until(lambda: any(line in n.metrics.render() for n in (b, c)), 15)


async def test_gossip_carries_the_signed_peer_record_identify_issued_last() -> None:
    """Gossip reuses our signed peer record for 10 s, but not once identify has issued a
    newer one (after a relay reservation changed our addresses): a peer holding the newer
    record ignores every RPC that carries the older one."""
    from libp2p.peer.peerstore import issue_and_cache_local_record

    from node.net._compat import sender_record

    async with open_transport(_config("record")) as t:
        host = t._host
        first, _ = sender_record._sender_record(host)
        assert sender_record._sender_record(host)[0] == first  # reused
        newer = issue_and_cache_local_record(host)  # what identify does on a change
        assert newer != first
        assert sender_record._sender_record(host)[0] == newer


def test_the_relay_section_of_config_toml_is_checked() -> None:
    from node.home import HomeError, parse_config

    config = parse_config('[relay]\nhop = true\nreachability = "private"\nmax_circuit_mb = 8\n')
    assert (config.hop, config.reachability, config.max_circuit_mb) == (True, "private", 8)
    assert parse_config("").hop == "auto"
    for bad, why in (
        ('[relay]\nhop = "sometimes"', "relay.hop must be auto or true or false"),
        ('[relay]\nreachability = "maybe"', "relay.reachability must be auto or public"),
        ("[relay]\nmax_reservations = 0", "must be positive"),
        ("[relay]\nreserve = 1", "wrong type"),
        ("[relay]\nslots = 3", "unknown key"),
    ):
        with pytest.raises(HomeError, match=why):
            parse_config(bad)


def test_status_text_says_whether_the_node_is_reachable() -> None:
    from node.cli.network import _status_text

    status = {
        "peer_id": "12D3KooWB",
        "version": "0",
        "running": True,
        "follow": [],
        "seed": False,
        "started": 0,
        "uptime_seconds": 1.0,
        "listen": [],
        "addrs": [],
        "api": None,
        "catching_up": False,
        "syncing": 0,
        "peers": 1,
        "records": 0,
        "projects": 0,
        "reachability": "private",
        "relays": ["12D3KooWS"],
    }
    text = _status_text(status)
    assert "reachable:   no (behind NAT or a firewall); relayed by 12D3KooWS" in text
    assert "reachable:   yes" in _status_text({**status, "reachability": "public", "relays": []})
