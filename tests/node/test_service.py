"""The node's decision state machine, driven with a fake clock and a seeded rng (no I/O)."""

from __future__ import annotations

import random

from node.service import (
    DIAL_BACKOFF_MAX,
    MAX_PENDING_DIALS,
    SYNC_RETRY,
    Dial,
    Reachability,
    Service,
    StartSync,
)

A, B, C, D = "12D3KooWA", "12D3KooWB", "12D3KooWC", "12D3KooWD"


def service(peer: str = B, **kw: object) -> Service:
    return Service(our_peer=peer, rng=random.Random(7), **kw)  # type: ignore[arg-type]


def test_only_the_smaller_peer_starts_a_sync_on_connect() -> None:
    s = service(B)
    assert s.connected(C, 0.0) == [StartSync(peer=C, reason="connected")]
    assert s.connected(A, 0.0) == []


def test_never_two_sessions_with_one_peer() -> None:
    s = service(B)
    assert s.connected(C, 0.0) == [StartSync(peer=C, reason="connected")]
    assert s.sync_requested(C, 1.0) == []
    s.sync_finished(C, True, 2.0)
    assert s.sync_requested(C, 3.0) == [StartSync(peer=C, reason="requested")]


def test_a_failed_sync_waits_before_the_periodic_retry() -> None:
    s = service(B, sync_interval=5.0)
    s.connected(C, 0.0)
    s.sync_finished(C, False, 1.0)
    s.tick(1.0)  # arms the periodic timer
    assert [e for e in s.tick(6.5) if isinstance(e, StartSync)] == []  # 6.5 < 1 + SYNC_RETRY
    # The next periodic turn (6.5 + 5) is past the retry delay (1 + SYNC_RETRY).
    assert 1.0 + SYNC_RETRY <= 6.5 + 5.0
    assert [e for e in s.tick(11.6) if isinstance(e, StartSync)] == [
        StartSync(peer=C, reason="periodic")
    ]


def test_a_peer_without_the_sync_protocol_is_not_asked_again_on_that_connection() -> None:
    s = service(A, sync_interval=1.0)
    assert s.connected(C, 0.0) == [StartSync(peer=C, reason="connected")]
    s.sync_finished(C, False, 0.1, unsupported=True)
    assert not s.speaks_sync(C)
    s.tick(0.0)  # arms the periodic timer
    # Every periodic turn, long past the retry delay: never C, only the peer that syncs.
    for turn in range(1, 50):
        assert s.tick(turn * 1.0 + SYNC_RETRY) == []
    assert s.dial_succeeded("/ip4/127.0.0.1/tcp/4/p2p/C", C, 60.0) == []  # still connected
    s.connected(D, 60.0)
    s.sync_finished(D, True, 60.1)
    assert s.tick(61.0) == [StartSync(peer=D, reason="periodic")]
    # A new connection is a new chance (the peer may run another program now).
    s.disconnected(C, 70.0)
    assert s.speaks_sync(C)
    assert s.connected(C, 71.0) == [StartSync(peer=C, reason="connected")]
    # Learned too late, after a disconnect, it is not remembered.
    s.disconnected(C, 72.0)
    s.sync_finished(C, False, 72.5, unsupported=True)
    assert s.speaks_sync(C)


def test_periodic_sync_picks_a_connected_peer() -> None:
    s = service(D, sync_interval=10.0)
    for peer in (A, B, C):
        s.connected(peer, 0.0)
    assert s.tick(0.0) == []
    effects = s.tick(10.0)
    assert len(effects) == 1
    assert isinstance(effects[0], StartSync)
    assert effects[0].peer in {A, B, C}
    # Not again before the interval has passed.
    s.sync_finished(effects[0].peer, True, 10.5)
    assert s.tick(15.0) == []


def test_dials_bootstrap_first_and_backs_off_exponentially() -> None:
    s = service(A)
    s.add_address("/ip4/127.0.0.1/tcp/1/p2p/X", peer="X")
    s.add_address("/ip4/127.0.0.1/tcp/2/p2p/Y", peer="Y", bootstrap=True)
    first = s.tick(0.0)
    assert first[0] == Dial(addr="/ip4/127.0.0.1/tcp/2/p2p/Y")
    assert len(first) == 2
    assert s.tick(0.1) == []  # both pending
    # Y keeps failing: the delay doubles (with jitter of +-25%) up to the cap.
    delays = []
    now = 0.0
    for _ in range(12):
        s.dial_failed("/ip4/127.0.0.1/tcp/2/p2p/Y", now)
        y = s._addresses["/ip4/127.0.0.1/tcp/2/p2p/Y"]
        delays.append(y.next_try - now)
        now = y.next_try
        assert Dial(addr=y.addr) in s.tick(now)
    assert delays[0] < delays[3] < delays[6]
    assert max(delays) <= DIAL_BACKOFF_MAX * 1.25


def test_no_dials_when_enough_peers_and_bounded_in_flight() -> None:
    s = service(A, target_peers=1)
    for i in range(10):
        s.add_address(f"/ip4/127.0.0.1/tcp/{i}/p2p/P{i}", peer=f"P{i}")
    assert len(s.tick(0.0)) == MAX_PENDING_DIALS
    s.dial_succeeded("/ip4/127.0.0.1/tcp/0/p2p/P0", "P0", 0.5)
    assert s.tick(1.0) == []


def test_a_connected_peer_is_not_dialled_and_our_own_address_is_ignored() -> None:
    s = service(A)
    s.add_address("/ip4/127.0.0.1/tcp/9/p2p/" + A, peer=A)
    s.add_address("/ip4/127.0.0.1/tcp/8/p2p/Z", peer="Z")
    s.connected("Z", 0.0)
    assert s.tick(0.0) == []


def test_dialling_a_peer_starts_a_sync_even_from_the_larger_id() -> None:
    s = service(C)
    s.add_address("/ip4/127.0.0.1/tcp/1/p2p/" + A, peer=A)
    s.tick(0.0)
    assert s.dial_succeeded("/ip4/127.0.0.1/tcp/1/p2p/" + A, A, 0.1) == [
        StartSync(peer=A, reason="dialled")
    ]
    # The connected event that follows does not start a second session.
    assert s.connected(A, 0.1) == []


def test_reachability_is_reported_once_per_change_not_per_dial() -> None:
    s = service(A)
    addr = "/ip4/127.0.0.1/tcp/2/p2p/Y"
    s.add_address(addr, peer="Y", bootstrap=True)
    reports: list[Reachability] = []
    now = 0.0
    for _ in range(6):  # six failed dials, each after its back-off: one report
        assert Dial(addr=addr) in s.tick(now)
        reports += [
            e for e in s.dial_failed(addr, now, reason="refused") if isinstance(e, Reachability)
        ]
        now = s._addresses[addr].next_try
    assert reports == [Reachability(peer="Y", addr=addr, reachable=False, reason="refused")]
    effects = s.dial_succeeded(addr, "Y", now)
    assert Reachability(peer="Y", addr=addr, reachable=True) in effects
    s.disconnected("Y", now)
    # Back again by a connection of its own: nothing to report, it was never lost since.
    assert not [e for e in s.connected("Y", now) if isinstance(e, Reachability)]
    # Lost again, then it dials us: reported as reachable, once.
    s.disconnected("Y", now)
    assert s.dial_failed(addr, now)[0] == Reachability(peer="Y", addr=addr, reachable=False)
    assert s.dial_failed(addr, now) == []
    assert [e for e in s.connected("Y", now) if isinstance(e, Reachability)] == [
        Reachability(peer="Y", addr=None, reachable=True)
    ]


def test_an_address_without_a_peer_id_is_reported_by_its_address() -> None:
    s = service(A)
    addr = "/ip4/127.0.0.1/tcp/3"
    s.add_address(addr, peer=None)
    assert s.dial_failed(addr, 0.0) == [Reachability(peer=addr, addr=addr, reachable=False)]
    assert s.dial_failed(addr, 1.0) == []
    assert Reachability(peer="Z", addr=addr, reachable=True) in s.dial_succeeded(addr, "Z", 2)
    s.disconnected("Z", 3.0)
    assert s.dial_failed(addr, 3.0)[0].peer == "Z"  # now known by its peer id
