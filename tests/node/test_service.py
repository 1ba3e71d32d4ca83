"""The node's decision state machine, driven with a fake clock and a seeded rng (no I/O).

Each test feeds past-tense inputs and asserts the exact effects that come out."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from node.service import (
    NOT_FOLLOWED,
    RATE_LIMITED,
    REFUSED_AGAIN,
    REJECTS,
    Ban,
    Check,
    Dial,
    Effect,
    Hangup,
    ListProjects,
    NodeService,
    NoteDialFailure,
    Publish,
    PublishUnpublished,
    Reachability,
    RefreshViews,
    RememberPeer,
    ServiceConfig,
    StartSync,
    Subscribe,
    WakeAt,
)
from protocol.errors import InvalidRecord
from protocol.testing import RecordFactory
from protocol.validation import META_TOPIC, project_topic

A, B, C, D = "12D3KooWA", "12D3KooWB", "12D3KooWC", "12D3KooWD"
CONFIG = ServiceConfig()


def service(peer: str = B, **kw: object) -> NodeService:
    return NodeService(our_peer=peer, rng=random.Random(7), config=ServiceConfig(**kw))  # type: ignore[arg-type]


def without_wake(effects: list[Effect]) -> list[Effect]:
    return [e for e in effects if not isinstance(e, WakeAt)]


def test_the_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="sync_interval"):
        ServiceConfig(sync_interval=-1.0)
    with pytest.raises(ValueError, match="liveness_misses"):
        ServiceConfig(liveness_misses=0)


# ------------------------------------------------------------------------------- sync, dials


def test_only_the_smaller_peer_starts_a_sync_on_connect() -> None:
    s = service(B)
    assert s.connected(C, 0.0) == [StartSync(peer=C, reason="connected")]
    assert s.connected(A, 0.0) == []


def test_a_connected_peer_with_addresses_is_remembered_and_redialled_later() -> None:
    s = service(B)
    addr = "/ip4/10.0.0.3/tcp/4710/p2p/" + A
    assert s.connected(A, 0.0, [addr]) == [RememberPeer(A, (addr,))]
    s.disconnected(A, 1.0)
    assert without_wake(s.tick(1.0)) == [Dial(addr)]


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
    assert [e for e in s.tick(6.5) if isinstance(e, StartSync)] == []  # 6.5 < 1 + sync_retry
    # The next periodic turn (6.5 + 5) is past the retry delay (1 + sync_retry).
    assert 1.0 + CONFIG.sync_retry <= 6.5 + 5.0
    assert [e for e in s.tick(11.6) if isinstance(e, StartSync)] == [
        StartSync(peer=C, reason="periodic")
    ]


def test_a_peer_without_the_sync_protocol_is_not_asked_again_on_that_connection() -> None:
    s = service(A, sync_interval=1.0, max_pending_asks=0)  # no peer exchange
    assert s.connected(C, 0.0) == [StartSync(peer=C, reason="connected")]
    s.sync_finished(C, False, 0.1, unsupported=True)
    assert not s.speaks_sync(C)
    s.tick(0.0)  # arms the periodic timer
    # Every periodic turn, long past the retry delay: never C, only the peer that syncs.
    for turn in range(1, 50):
        assert without_wake(s.tick(turn * 1.0 + CONFIG.sync_retry)) == []
    assert s.dial_succeeded("/ip4/127.0.0.1/tcp/4/p2p/C", C, 60.0) == []  # still connected
    s.connected(D, 60.0)
    s.sync_finished(D, True, 60.1)
    assert without_wake(s.tick(61.0)) == [StartSync(peer=D, reason="periodic")]
    # A new connection is a new chance (the peer may run another program now).
    s.disconnected(C, 70.0)
    assert s.speaks_sync(C)
    assert s.connected(C, 71.0) == [StartSync(peer=C, reason="connected")]
    # Learned too late, after a disconnect, it is not remembered.
    s.disconnected(C, 72.0)
    s.sync_finished(C, False, 72.5, unsupported=True)
    assert s.speaks_sync(C)


def test_periodic_sync_picks_a_connected_peer() -> None:
    s = service(D, sync_interval=10.0, max_pending_asks=0)  # no peer exchange
    for peer in (A, B, C):
        s.connected(peer, 0.0)
    assert without_wake(s.tick(0.0)) == []
    effects = without_wake(s.tick(10.0))
    assert len(effects) == 1
    assert isinstance(effects[0], StartSync)
    assert effects[0].peer in {A, B, C}
    # Not again before the interval has passed.
    s.sync_finished(effects[0].peer, True, 10.5)
    assert without_wake(s.tick(15.0)) == []


def test_dials_bootstrap_first_and_backs_off_exponentially() -> None:
    s = service(A)
    x, y = "/ip4/127.0.0.1/tcp/1/p2p/X", "/ip4/127.0.0.1/tcp/2/p2p/Y"
    s.address_learned(x)
    s.address_learned(y, bootstrap=True)
    assert without_wake(s.tick(0.0)) == [Dial(y), Dial(x)]
    assert without_wake(s.tick(0.1)) == []  # both pending
    # Y keeps failing: the delay doubles (with jitter of +-25%) up to the cap.
    now = 0.0
    for failures in range(1, 13):
        # The first failure also reports Y unreachable (once: see the reachability tests).
        unreachable = [Reachability("Y", y, reachable=False)] if failures == 1 else []
        assert s.dial_failed(y, now) == [NoteDialFailure("Y"), *unreachable]
        delay = min(CONFIG.dial_backoff_max, CONFIG.dial_backoff_min * 2 ** (failures - 1))
        assert Dial(y) not in s.tick(now + 0.75 * delay - 0.001)
        now += 1.25 * delay
        assert Dial(y) in s.tick(now)
    assert delay == CONFIG.dial_backoff_max


def test_no_dials_when_enough_peers_and_bounded_in_flight() -> None:
    s = service(A, target_peers=1)
    for i in range(10):
        s.address_learned(f"/ip4/127.0.0.1/tcp/{i}/p2p/P{i}")
    assert len(without_wake(s.tick(0.0))) == CONFIG.max_pending_dials
    s.dial_succeeded("/ip4/127.0.0.1/tcp/0/p2p/P0", "P0", 0.5)
    assert without_wake(s.tick(1.0)) == []


def test_a_connected_peer_is_not_dialled_and_our_own_address_is_ignored() -> None:
    s = service(A, max_pending_asks=0)  # no peer exchange
    s.address_learned("/ip4/127.0.0.1/tcp/9/p2p/" + A)
    s.address_learned("/ip4/127.0.0.1/tcp/8", peer="Z")  # the peer id is appended
    s.connected("Z", 0.0)
    assert without_wake(s.tick(0.0)) == []
    s.disconnected("Z", 1.0)
    assert without_wake(s.tick(1.0)) == [Dial("/ip4/127.0.0.1/tcp/8/p2p/Z")]


def test_dialling_a_peer_starts_a_sync_even_from_the_larger_id() -> None:
    s = service(C)
    s.address_learned("/ip4/127.0.0.1/tcp/1/p2p/" + A)
    s.tick(0.0)
    assert s.dial_succeeded("/ip4/127.0.0.1/tcp/1/p2p/" + A, A, 0.1) == [
        StartSync(peer=A, reason="dialled")
    ]
    # The connected event that follows does not start a second session.
    assert s.connected(A, 0.1) == []


# ------------------------------------------------------------------------------- gossip, bans


def test_the_rate_limit_is_a_token_bucket_per_forwarding_peer() -> None:
    s = service(B, gossip_rate=10)
    key = b"k" * 32
    verdicts = [s.gossip_arrived(META_TOPIC, key, A, 0.0) for _ in range(25)]
    assert verdicts == [None] * 20 + [RATE_LIMITED] * 5  # a burst of twice the rate
    assert s.gossip_arrived(META_TOPIC, key, C, 0.0) is None  # another peer's bucket
    assert s.gossip_arrived(META_TOPIC, key, A, 0.1) is None  # one token back after 0.1 s
    assert s.gossip_arrived(META_TOPIC, key, A, 0.1) == RATE_LIMITED
    # Our own publishes are never limited.
    assert all(s.gossip_arrived(META_TOPIC, key, B, 0.1) is None for _ in range(50))


def test_refusals_for_good_are_remembered_by_topic_and_message() -> None:
    f = RecordFactory()
    project = f.project("alice", name="P")
    s = service(B)
    bad, ahead = b"b" * 32, b"f" * 32
    forged = InvalidRecord("bad-signature", "the signature does not verify")
    assert s.gossip_validated(META_TOPIC, bad, forged) == "bad-signature"
    assert s.gossip_arrived(META_TOPIC, bad, A, 1.0) == REFUSED_AGAIN
    # A copy of a refused message is dropped without blame (GossipSub's own IWANT may fetch
    # it again); the refusal on its merits counts against the forwarder.
    assert not s.blames(REFUSED_AGAIN)
    assert not s.blames("rate-limited")
    assert s.blames("bad-signature")
    assert s.gossip_arrived(project_topic(project.id), bad, A, 1.0) is None  # another topic
    # A record from the future may be accepted later: it is judged again each time.
    late = InvalidRecord("future-timestamp", "ts is 3600 s ahead")
    assert s.gossip_validated(META_TOPIC, ahead, late) == "future-timestamp"
    assert s.gossip_arrived(META_TOPIC, ahead, A, 1.0) is None
    # The field path is not part of the reason.
    deep = InvalidRecord("bad-field:body.name", "not text")
    assert s.gossip_validated(META_TOPIC, b"d" * 32, deep) == "bad-field"
    assert s.gossip_validated(META_TOPIC, project.id, project) is None


def test_the_follow_rule_admits_meta_records_and_followed_projects_only() -> None:
    f = RecordFactory()
    mine, other = f.project("alice", name="Mine"), f.project("alice", name="Other")
    in_mine = f.contribution("bob", mine, title="yes")
    in_other = f.contribution("bob", other, title="no")
    s = service(B, follow=frozenset({mine.id}))
    assert s.gossip_validated(META_TOPIC, other.id, other) is None  # genesis: meta scope
    assert s.gossip_validated(project_topic(mine.id), in_mine.id, in_mine) is None
    topic = project_topic(other.id)
    assert s.gossip_validated(topic, in_other.id, in_other) == NOT_FOLLOWED
    assert s.gossip_arrived(topic, in_other.id, A, 0.0) == REFUSED_AGAIN
    assert s.refusal(in_other) == "not-followed: this node does not hold that project"
    assert s.hello({"meta": 2, other.id.hex(): 1}).scopes == tuple(sorted(["meta", mine.id.hex()]))
    assert not s.hello({}).follow_all
    everything = service(B)
    assert everything.hello({"meta": 2, other.id.hex(): 1}).scopes == tuple(
        sorted(["meta", other.id.hex()])
    )


def test_a_peer_forwarding_rejects_is_banned_once_after_n_in_the_window() -> None:
    s = service(B, max_rejects_per_peer=3, reject_window=60.0, reject_ban=600.0)
    assert s.gossip_rejected(A, 0.0) == []
    assert s.gossip_rejected(A, 50.0) == []
    assert s.gossip_rejected(A, 70.0) == []  # 3 in 70 s: outside the window
    assert s.gossip_rejected(A, 80.0) == [Ban(A, 600.0, REJECTS)]  # 50, 70, 80
    assert s.banned(A, 80.0)
    assert s.gossip_rejected(A, 81.0) == []  # its ban is running: counted afresh
    assert s.sync_misbehaved(A, "invalid-record", 82.0) == []
    assert not s.banned(A, 680.0)
    assert s.gossip_rejected(C, 80.0) == []  # another peer's count


def test_a_sync_peer_that_breaks_the_protocol_is_banned_once() -> None:
    s = service(B)
    assert s.sync_misbehaved(A, "invalid-record", 5.0) == [Ban(A, 300.0, "invalid-record")]
    # Two sessions with one peer failing together: one ban.
    assert s.sync_misbehaved(A, "invalid-record", 5.1) == []
    assert s.sync_misbehaved(A, "bad-frame", 305.0) == [Ban(A, 300.0, "bad-frame")]


# ------------------------------------------------------------------------------- records


def test_start_subscribes_lists_projects_and_publishes_offline_records() -> None:
    s = service(B, warm_delay=0.5, liveness_interval=5.0, subscription_refresh=10.0)
    assert s.started(100.0) == [Subscribe(META_TOPIC), ListProjects(), PublishUnpublished(500)]
    assert s.subscribed(META_TOPIC)
    # The first tick arms the sync timer and wakes for the views' first fold.
    assert s.tick(100.0) == [WakeAt(100.5)]
    assert s.tick(100.5) == [RefreshViews(first=True, budget=60_000), WakeAt(101.0)]
    assert s.tick(101.0) == [WakeAt(101.5)]  # no second fold before the first is done
    s.views_refreshed(101.2)
    assert RefreshViews(first=False, budget=60_000) in s.tick(103.2)


def test_stored_records_subscribe_followed_projects_and_publish_local_ones() -> None:
    f = RecordFactory()
    mine, other = f.project("alice", name="Mine"), f.project("alice", name="Other")
    contribution = f.contribution("bob", mine, title="c")
    s = service(B, follow=frozenset({mine.id}))
    assert s.records_stored([mine, other, contribution], "gossip") == [
        Subscribe(project_topic(mine.id))
    ]
    assert s.records_stored([mine], "sync") == []  # once
    assert s.records_stored([contribution], "local") == [Publish(contribution)]
    assert s.records_stored([other], "api") == [Publish(other)]
    assert s.projects_listed([mine.id, other.id]) == []


def test_subscriptions_stop_at_the_cap() -> None:
    f = RecordFactory()
    projects = [f.project("alice", name=f"P{i}") for i in range(5)]
    s = service(B, max_subscriptions=3)
    assert s.started(0.0)[0] == Subscribe(META_TOPIC)
    effects = s.projects_listed(p.id for p in projects)
    assert effects == [Subscribe(project_topic(p.id)) for p in projects[:2]]
    assert not s.subscribed(project_topic(projects[2].id))
    assert s.projects_listed(p.id for p in projects) == []


def test_the_project_list_is_read_again_every_refresh() -> None:
    s = service(B, subscription_refresh=10.0)
    s.started(0.0)
    assert ListProjects() not in s.tick(9.9)
    assert ListProjects() in s.tick(10.0)
    assert ListProjects() not in s.tick(15.0)
    assert ListProjects() in s.tick(20.1)


# ------------------------------------------------------------------------------- liveness


def live(**kw: object) -> NodeService:
    s = service(B, liveness_interval=5.0, warm_delay=1000.0, **kw)
    s.started(0.0)
    return s


def checks(effects: list[Effect]) -> list[Effect]:
    return [e for e in effects if isinstance(e, Check | Hangup)]


def test_each_connection_is_checked_every_round_and_a_silent_one_hung_up() -> None:
    s = live()
    s.connected(A, 0.0)
    s.connected(C, 0.0)
    assert s.link(A) == 1
    assert checks(s.tick(4.9)) == []
    assert checks(s.tick(5.0)) == [Check(A, 1, "ping", 5.0), Check(C, 1, "ping", 5.0)]
    assert s.check_finished(A, 1, True) == []
    assert s.check_finished(C, 1, False) == []  # one miss
    assert checks(s.tick(10.0)) == [Check(A, 1, "ping", 5.0), Check(C, 1, "ping", 5.0)]
    s.check_finished(A, 1, True)
    assert s.check_finished(C, 1, False) == [Hangup(C, "unresponsive")]  # two in a row


def test_a_check_still_running_at_the_next_round_is_a_miss() -> None:
    s = live()
    s.connected(A, 0.0)
    assert checks(s.tick(5.0)) == [Check(A, 1, "ping", 5.0)]
    assert checks(s.tick(10.0)) == []  # still running: miss 1, no second check
    assert checks(s.tick(15.0)) == [Hangup(A, "unresponsive")]  # miss 2
    # Its late answer (a miss too) is counted: every second miss hangs up again.
    assert s.check_finished(A, 1, False) == []
    assert s.check_finished(A, 1, False) == [Hangup(A, "unresponsive")]


def test_an_answer_resets_the_misses() -> None:
    s = live()
    s.connected(A, 0.0)
    for round_ in range(1, 6):
        s.tick(round_ * 5.0)
        assert s.check_finished(A, 1, round_ % 2 == 0) == []


def test_a_peer_refusing_ping_is_probed_on_that_connection_only() -> None:
    s = live()
    s.connected(A, 0.0)
    s.tick(5.0)
    assert s.check_finished(A, 1, True, ping_refused=True) == []
    assert checks(s.tick(10.0)) == [Check(A, 1, "probe", 5.0)]
    s.check_finished(A, 1, True)
    s.disconnected(A, 11.0)
    s.connected(A, 12.0)
    assert s.link(A) == 3
    assert checks(s.tick(15.0)) == [Check(A, 3, "ping", 5.0)]


def test_answers_about_an_old_connection_are_ignored() -> None:
    s = live()
    s.connected(A, 0.0)
    s.tick(5.0)
    s.disconnected(A, 6.0)
    s.connected(A, 6.5)
    for _ in range(4):
        assert s.check_finished(A, 1, False) == []
    assert checks(s.tick(10.0)) == [Check(A, 3, "ping", 5.0)]


def test_liveness_checks_at_most_max_peers_and_wakes_for_short_rounds() -> None:
    s = service(B, liveness_interval=0.1, max_peers=2, warm_delay=1000.0)
    s.started(0.0)
    for peer in (A, C, D):
        s.connected(peer, 0.0)
    effects = s.tick(0.1)
    assert checks(effects) == [Check(A, 1, "ping", 5.0), Check(C, 1, "ping", 5.0)]
    assert effects[-1] == WakeAt(0.2)


def test_the_service_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list[Effect]:
        s = NodeService(our_peer=B, rng=random.Random(seed), config=replace(CONFIG))
        for i in range(20):
            s.address_learned(f"/ip4/10.0.0.{i}/tcp/1/p2p/P{i}")
        out: list[Effect] = []
        for t in range(200):
            for effect in s.tick(t * 0.5):
                out.append(effect)
                if isinstance(effect, Dial):
                    out += s.dial_failed(effect.addr, t * 0.5)
        return out

    assert run(1) == run(1)
    assert run(1) != run(2)


def reach(effects: list[Effect]) -> list[Reachability]:
    return [e for e in effects if isinstance(e, Reachability)]


def test_reachability_is_reported_once_per_change_not_per_dial() -> None:
    s = service(A)
    addr = "/ip4/127.0.0.1/tcp/2/p2p/Y"
    s.address_learned(addr, peer="Y", bootstrap=True)
    reports: list[Reachability] = []
    now = 0.0
    for _ in range(6):  # six failed dials, each after its back-off: one report
        assert Dial(addr=addr) in s.tick(now)
        reports += reach(s.dial_failed(addr, now, reason="refused"))
        now = s._addresses[addr].next_try
    assert reports == [Reachability(peer="Y", addr=addr, reachable=False, reason="refused")]
    effects = s.dial_succeeded(addr, "Y", now)
    assert Reachability(peer="Y", addr=addr, reachable=True) in effects
    s.disconnected("Y", now)
    # Back again by a connection of its own: nothing to report, it was never lost since.
    assert not reach(s.connected("Y", now))
    # Lost again, then it dials us: reported as reachable, once.
    s.disconnected("Y", now)
    assert reach(s.dial_failed(addr, now)) == [Reachability(peer="Y", addr=addr, reachable=False)]
    assert s.dial_failed(addr, now) == [NoteDialFailure("Y")]  # the address book still hears
    assert reach(s.connected("Y", now)) == [Reachability(peer="Y", addr=None, reachable=True)]


def test_an_address_without_a_peer_id_is_reported_by_its_address() -> None:
    s = service(A)
    addr = "/ip4/127.0.0.1/tcp/3"
    s.address_learned(addr)
    assert s.dial_failed(addr, 0.0) == [Reachability(peer=addr, addr=addr, reachable=False)]
    assert s.dial_failed(addr, 1.0) == []
    assert Reachability(peer="Z", addr=addr, reachable=True) in s.dial_succeeded(addr, "Z", 2)
    s.disconnected("Z", 3.0)
    assert s.dial_failed(addr, 3.0)[0].peer == "Z"  # now known by its peer id
