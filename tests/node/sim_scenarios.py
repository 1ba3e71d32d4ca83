"""The simulator's scenarios: each builds a :class:`~simulator.Simulation`, runs it and checks
its properties, naming the command that replays a failure.

    scripts/simulate --scenario converge --seed 7 --nodes 1000
    scripts/simulate --nodes 40                    # a random seed, printed first
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: this folder holds simulator.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from simulator import Kind, Net, Simulation, record_pool

from node.service import RATE_LIMITED, REJECTS, ServiceConfig
from protocol.record import Record
from protocol.validation import META_SCOPE, scope_of


@dataclass
class Report:
    name: str
    seed: int
    nodes: int
    sim: Simulation
    seconds: float  # wall time
    converged_after: float | None = None  # simulated seconds from the heal

    def command(self) -> str:
        return f"scripts/simulate --scenario {self.name} --seed {self.seed} --nodes {self.nodes}"

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            raise AssertionError(f"{what} (seed {self.seed}; reproduce: {self.command()})")


def converge(seed: int, nodes: int = 24, *, settle: float = 300.0) -> Report:
    """Records authored all over a lossy network (5 % of gossip lost) that is partitioned in
    two for a minute, with restarts and offline authoring; once healed, every node comes to
    hold every record (one node, following one project, that project's and the meta
    records) within ``settle`` seconds, nothing was forwarded twice and nobody was banned."""
    started = time.perf_counter()
    projects, per_project = 3, max(10, min(60, nodes // 2))
    pool = record_pool(projects, per_project)
    follower, followed = nodes - 1, pool[0].id
    sim = Simulation(
        seed,
        ["full"] * nodes,
        net=Net(loss=0.05),
        config=ServiceConfig(sync_interval=15.0),
        follow={follower: frozenset({followed})},
    )
    rng = random.Random(seed ^ 0x5EED)
    cut, heal = 40.0, 100.0
    for n, record in enumerate(pool):  # authored over the first 90 s, offline ones too
        sim.at(2.0 + n * 88.0 / len(pool), sim.author, rng.randrange(nodes - 1), record)
    sim.at(cut, sim.partition, {i: i % 2 for i in range(nodes)})
    sim.at(heal, sim.heal)
    for i in rng.sample(range(nodes - 1), max(1, nodes // 10)):
        sim.at(rng.uniform(5.0, heal), sim.restart, i, rng.uniform(1.0, 20.0))
    everything = {r.id for r in pool}
    wanted = [
        everything if node.index != follower else _followed(pool, followed) for node in sim.nodes
    ]

    def lacking() -> list[int]:
        return [i for i, node in enumerate(sim.nodes) if not wanted[i] <= node.records.keys()]

    sim.run_until(heal)
    while lacking() and sim.now < heal + settle:
        sim.run_until(sim.now + 5.0)
    report = Report("converge", seed, nodes, sim, time.perf_counter() - started)
    report.converged_after = sim.now - heal
    for i, node in enumerate(sim.nodes):
        missing = len(wanted[i] - node.records.keys())
        report.check(missing == 0, f"node {i} lacks {missing} of {len(wanted[i])} records")
        report.check(node.records.keys() <= wanted[i], f"node {i} holds unfollowed records")
    _never_twice(report)
    report.check(sim.stats.bans == [], f"honest peers were banned: {sim.stats.bans[:3]}")
    return report


def _followed(pool: Sequence[Record], project: bytes) -> set[bytes]:
    return {r.id for r in pool if scope_of(r) in (META_SCOPE, project.hex())}


def _never_twice(report: Report) -> None:
    twice = [key for key, n in report.sim.stats.forwards.items() if n > 1]
    report.check(not twice, f"{len(twice)} messages forwarded twice by a node, first {twice[:1]}")


def flood(seed: int, nodes: int = 20, *, duration: float = 90.0, spam: int = 600) -> Report:
    """A spammer (``spam`` valid records of its own, at twice the rate limit), a forger
    (forged gossip under the limit) and a lying sync server join an honest network. The
    forger and the liar are banned by every honest node they reached; the spammer's excess
    is refused and nobody, the honest relays of its records above all, is banned for the
    rate; nothing forged was forwarded. Then a burst of honest gossip reaches everyone."""
    started = time.perf_counter()
    pool = record_pool(2, 30)
    kinds: list[Kind] = ["full"] * nodes
    spammer, forger, liar = nodes - 3, nodes - 2, nodes - 1
    kinds[spammer], kinds[forger], kinds[liar] = "spammer", "forger", "liar"
    rate = 25
    # Peer exchange off: the sparse overlay of the bootstrap links makes honest nodes relay
    # the spammer's records (with it, most nodes link to the spammer directly).
    config = ServiceConfig(gossip_rate=rate, sync_interval=10.0, max_pending_asks=0)
    sim = Simulation(seed, kinds, config=config, flood_rate=2.0 * rate, spam=spam)
    rng = random.Random(seed ^ 0xF100D)
    honest = range(nodes - 3)
    for n, record in enumerate(pool):  # a burst: all of it within a second, from anyone
        sim.at(30.0 + n / len(pool), sim.author, rng.choice(honest), record)
    sim.run_until(duration)
    report = Report("flood", seed, nodes, sim, time.perf_counter() - started)
    bans = sim.stats.bans
    wronged = [ban for ban in bans if ban[1] in honest]
    report.check(not wronged, f"honest peers were banned (by, whom, why): {wronged}")
    report.check(all(whom != spammer for _, whom, _ in bans), f"the spammer was banned: {bans}")
    for bad in (forger, liar):
        banned_by = {by for by, whom, _ in bans if whom == bad}
        if bad == forger:
            reached = {by for by, whom, _ in sim.stats.rejects if whom == bad}
        else:
            reached = {client for client, server in sim.synced_with if server == bad}
        reached &= set(honest)
        report.check(bool(banned_by), f"node {bad} ({kinds[bad]}) was never banned")
        report.check(reached <= banned_by, f"{bad} not banned by {sorted(reached - banned_by)}")
        for i in honest:
            report.check(bad not in sim.nodes[i].conns, f"node {i} is still linked to {bad}")
    report.check(
        all(why == REJECTS for _, whom, why in bans if whom == forger)
        and all(why != REJECTS for _, whom, why in bans if whom == liar),
        f"bans for the wrong reason: {bans}",
    )
    limited = {by for (by, whom, why) in sim.stats.rejects if whom == spammer}
    report.check(bool(limited), "the spammer was never rate-limited")
    report.check(
        all(why == RATE_LIMITED for (_, whom, why) in sim.stats.rejects if whom == spammer),
        "the spammer's valid records were refused for something else than the rate",
    )
    forwarded = {key for (_, key) in sim.stats.forwards}
    report.check(not forwarded & sim.forged, "a forged message was forwarded")
    _never_twice(report)
    everything = {r.id for r in pool}
    for i in honest:
        missing = len(everything - set(sim.nodes[i].records))
        report.check(missing == 0, f"node {i} lacks {missing} records after the burst")
    return report


def liveness(seed: int, nodes: int = 12, *, duration: float = 120.0) -> Report:
    """A node stalls (its connections carry nothing, and stay open) and a gossip-only peer
    (no ping, no sync) is connected throughout: liveness hangs up on the stalled node only,
    within three rounds, and the gossip-only peer keeps its connections and its records."""
    started = time.perf_counter()
    pool = record_pool(1, 20)
    kinds: list[Kind] = ["full"] * nodes
    stalled, gossip_only = 1, nodes - 1
    kinds[gossip_only] = "gossip-only"
    sim = Simulation(seed, kinds, config=ServiceConfig(liveness_interval=5.0))
    rng = random.Random(seed ^ 0x11FE)
    for n, record in enumerate(pool):
        sim.at(5.0 + n, sim.author, rng.randrange(2, nodes - 1), record)
    stall_at = duration / 2

    def stall() -> None:
        sim.nodes[stalled].stalled = True

    sim.at(stall_at, stall)
    sim.run_until(stall_at - 0.001)
    links = sorted(sim.nodes[stalled].conns)
    report = Report("liveness", seed, nodes, sim, 0.0)
    report.check(bool(links), "the node to stall had no connections")
    sim.run_until(stall_at + 3 * sim.nodes[0].config.liveness_interval + 5.0)
    report.check(
        sim.nodes[stalled].conns == {},
        f"the stalled node is still linked to {sim.nodes[stalled].conns}",
    )
    sim.run_until(duration)
    report.seconds = time.perf_counter() - started
    report.check(bool(sim.nodes[gossip_only].conns), "the gossip-only peer lost its connections")
    report.check(
        all(stalled in pair for pair in sim.stats.hangups), f"hang-ups: {sim.stats.hangups}"
    )
    missing = {r.id for r in pool} - set(sim.nodes[gossip_only].records)
    report.check(not missing, f"the gossip-only peer lacks {len(missing)} records")
    report.check(
        sim.stats.syncs["unsupported"] > 0, "nobody tried to sync with the gossip-only peer"
    )
    return report


def star(seed: int, nodes: int = 20, *, meet: float = 30.0) -> Report:
    """Every node is bootstrapped to node 0 only (a seed). By peer exchange each comes to
    hold at least 3 connections besides the seed within ``meet`` seconds; then the seed
    stops, and a record authored afterwards still reaches every other node."""
    started = time.perf_counter()
    pool = record_pool(1, 2)
    sim = Simulation(seed, ["full"] * nodes)
    seed_node = sim.nodes[0]
    # As ``commons node run --seed`` does (seed_max_peers): a seed accepts many more peers.
    seed_node.config = replace(seed_node.config, max_peers=256)
    for node in sim.nodes[1:]:
        node.bootstrap = [seed_node.addr]
    sim.run_until(meet)
    report = Report("star", seed, nodes, sim, 0.0)
    for node in sim.nodes[1:]:
        others = [j for j in node.conns if j != 0]
        report.check(len(others) >= 3, f"node {node.index} holds {len(others)} peers but the seed")
    report.check(sim.stats.learned > 0, "no address was learned by peer exchange")
    sim.stop(0)
    sim.at(sim.now + 1.0, sim.author, 1, pool[0])
    sim.run_until(sim.now + 30.0)
    lacking = [node.index for node in sim.nodes[1:] if pool[0].id not in node.records]
    report.check(not lacking, f"without the seed, nodes {lacking[:5]} lack the new record")
    report.seconds = time.perf_counter() - started
    return report


SCENARIOS: dict[str, Callable[..., Report]] = {
    "converge": converge,
    "flood": flood,
    "star": star,
    "liveness": liveness,
}


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/simulate", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="converge")
    parser.add_argument("--seed", type=int, help="default: a random one (printed)")
    parser.add_argument("--nodes", type=int, help="default: the scenario's")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    extra = {} if args.nodes is None else {"nodes": args.nodes}
    print(f"scenario {args.scenario}, seed {seed}", flush=True)
    try:
        report = SCENARIOS[args.scenario](seed, **extra)
    except AssertionError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    stats = report.sim.stats
    print(
        f"ok: {report.nodes} nodes, {report.sim.now:.0f} s simulated in {report.seconds:.1f} s; "
        f"{stats.events} events, {stats.deliveries} gossip deliveries, "
        f"{sum(stats.syncs.values())} syncs {dict(stats.syncs)}, {len(stats.hangups)} hang-ups, "
        f"{len(stats.bans)} bans; fingerprint {report.sim.fingerprint()[:16]}"
    )
    if report.converged_after is not None:
        print(f"every node held every record {report.converged_after:.0f} s after the heal")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
