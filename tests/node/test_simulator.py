"""The simulator's scenarios (``tests/node/simulator.py``) at fixed seeds: each checks its
properties itself and, failing, names the one command that replays it
(``scripts/simulate --scenario NAME --seed N --nodes N``; without ``--seed`` it picks one)."""

from __future__ import annotations

import pytest
from sim_scenarios import Report, converge, flood, liveness, star
from simulator import Simulation

from node.service import NodeService


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_records_converge_after_a_partition_heals(seed: int) -> None:
    report = converge(seed)
    assert report.converged_after is not None
    assert report.sim.stats.hangups  # liveness dropped the links the partition stalled
    assert sum(report.sim.stats.syncs.values()) > len(report.sim.nodes)
    # Reachability is reported per change: a peer is first lost, then found, lost ... by each
    # node in one life, never twice in a row the same way, however many dials the partition failed.
    assert report.sim.stats.reachability
    last: dict[tuple[int, int, str], bool] = {}
    for by, life, peer, reachable in report.sim.stats.reachability:
        assert last.get((by, life, peer), True) != reachable, (by, life, peer, reachable)
        last[(by, life, peer)] = reachable


@pytest.mark.parametrize("seed", [1, 2])
def test_floods_ban_the_offenders_and_never_an_honest_peer(seed: int) -> None:
    report = flood(seed)
    assert report.sim.forged  # the forger did send


@pytest.mark.parametrize("seed", [1, 2])
def test_liveness_drops_a_stalled_peer_and_keeps_a_gossip_only_one(seed: int) -> None:
    liveness(seed)


@pytest.mark.parametrize("seed", [1, 2])
def test_nodes_bootstrapped_to_one_seed_meet_by_peer_exchange(seed: int) -> None:
    report = star(seed)
    assert report.sim.stats.learned >= len(report.sim.nodes)


def test_a_seed_replays_exactly() -> None:
    first, again, other = (converge(seed, nodes=12).sim.fingerprint() for seed in (5, 5, 6))
    assert first == again
    assert first != other


def test_rate_limited_gossip_does_not_count_against_its_forwarder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Were a refusal for the rate held against the forwarder, the flood scenario would see
    an honest relay banned: at seed 1, node 3 forwards the spammer's records that it took
    from several neighbours, faster than the limit."""
    monkeypatch.setattr(NodeService, "blames", lambda self, refusal: True)
    with pytest.raises(AssertionError, match=r"honest peers were banned .*\(15, 3, 'rejects'\)"):
        flood(1)


def test_a_failed_property_names_the_command_that_replays_it() -> None:
    report = Report("converge", 9, 12, Simulation(9, ["full"] * 12), 0.0)
    with pytest.raises(AssertionError) as failed:
        report.check(False, "node 3 lacks 2 of 40 records")
    assert str(failed.value) == (
        "node 3 lacks 2 of 40 records (seed 9; reproduce: "
        "scripts/simulate --scenario converge --seed 9 --nodes 12)"
    )
