"""A seeded model of the Commons DHT at scale: iterative Kademlia lookups over converged
routing tables, with py-libp2p 0.8.1's parameters, and the cost each node pays.

    scripts/scale                        # 10,000 nodes, 2,000 of them DHT servers
    scripts/scale --nodes 20000 --servers 0.1 --seed 3

What is modelled, and how close it is to the node:

- **Ids and distance**: each node's id is a SHA-256 (as py-libp2p hashes a peer id for the
  keyspace), distance is XOR, keys are ``protocol.peers.provider_key`` of a project id.
- **Routing tables** of a converged DHT: for each common-prefix length, up to ``k``
  (``BUCKET_SIZE``, 20) servers drawn at random among those in that subtree: what buckets
  hold once random walks and lookups have filled them. Clients hold such a table too (they
  ask; nobody asks them).
- **Lookups** are Kademlia's iterative procedure as ``peer_routing`` runs it: ask the
  ``ALPHA`` (10) closest not yet asked, merge the ``k`` closest each answers, stop when the
  ``k`` closest known have all answered. A hop is one such round; messages count requests.
  A provide is a lookup of the key then ``k`` ADD_PROVIDER messages; a provider lookup stops
  at the first round that reaches a server holding a record of the key.
- **Time**: a request takes a round-trip drawn from 40-300 ms (a spread of Internet paths); a
  round lasts as long as its slowest request. The service's schedule (``node/providers.py``)
  gives the rest: a follower provides and looks up when it starts following, and looks up
  again after 5, 10, 20 ... s while it finds nobody, up to every 10 minutes.

Not modelled: churn (a fraction of dead entries costs timeouts; py-libp2p waits up to 10 s
a request) and NAT (clients behind NAT are never dialled back, which the client mode
already assumes).
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import random
import statistics
import sys
import time
from dataclasses import dataclass

from libp2p.kad_dht.common import ALPHA, BUCKET_SIZE

from protocol.peers import provider_key

K = BUCKET_SIZE
RETRIES = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0)  # node/providers.py, then 600 s


def _id(label: bytes) -> int:
    return int.from_bytes(hashlib.sha256(label).digest(), "big")


@dataclass
class Dht:
    """Converged routing tables of ``servers`` (sorted ids) for every node."""

    rng: random.Random
    servers: list[int]
    tables: dict[int, list[int]]  # node id -> the servers it knows
    records: dict[int, set[int]]  # server id -> keys it holds provider records of

    @classmethod
    def build(cls, rng: random.Random, nodes: int, servers: int) -> tuple[Dht, list[int]]:
        ids = [_id(b"node %d" % i) for i in range(nodes)]
        server_ids = sorted(ids[:servers])
        dht = cls(rng, server_ids, {}, {s: set() for s in server_ids})
        for node in ids:
            dht.tables[node] = dht._table(node)
        return dht, ids

    def _table(self, node: int) -> list[int]:
        """Up to K servers in each subtree at distance 2**(255-l) .. for l = 0, 1, ..."""
        known: list[int] = []
        for depth in range(256):
            # The subtree sharing ``depth`` leading bits with ``node``, then the other bit.
            shift = 255 - depth
            prefix = ((node >> shift) ^ 1) << shift
            lo = bisect.bisect_left(self.servers, prefix)
            hi = bisect.bisect_left(self.servers, prefix + (1 << shift))
            if hi > lo:
                span = self.servers[lo:hi]
                known.extend(span if len(span) <= K else self.rng.sample(span, K))
            elif bisect.bisect_left(self.servers, (node >> shift) << shift) == bisect.bisect_left(
                self.servers, ((node >> shift) << shift) + (1 << shift)
            ):
                break  # no server shares this prefix: deeper subtrees are empty too
        return [s for s in known if s != node]

    def lookup(self, start: int, key: int, *, want_record: bool = False) -> tuple[int, int, float]:
        """Iterative lookup from ``start``: (hops, messages, seconds)."""
        dist = lambda s: s ^ key  # noqa: E731 - the metric, one line
        known = set(sorted(self.tables[start], key=dist)[:K])
        asked: set[int] = set()
        hops = messages = 0
        seconds = 0.0
        while True:
            closest = sorted(known, key=dist)[:K]
            batch = [s for s in closest if s not in asked][:ALPHA]
            if not batch:
                return hops, messages, seconds
            hops += 1
            messages += len(batch)
            seconds += max(self.rng.uniform(0.04, 0.3) for _ in batch)
            for server in batch:
                asked.add(server)
                if want_record and key in self.records[server]:
                    return hops, messages, seconds
                known.update(sorted(self.tables[server], key=dist)[:K])

    def provide(self, start: int, key: int) -> tuple[int, int, float]:
        hops, messages, seconds = self.lookup(start, key)
        for server in sorted(self.servers, key=lambda s: s ^ key)[:K]:
            self.records[server].add(key)
        return hops, messages + K, seconds + self.rng.uniform(0.04, 0.3)


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def run(seed: int, nodes: int, server_share: float, lookups: int, niches: int) -> dict[str, float]:
    rng = random.Random(seed)
    started = time.perf_counter()
    dht, ids = Dht.build(rng, nodes, max(K, int(nodes * server_share)))
    built = time.perf_counter() - started
    out: dict[str, float] = {"nodes": nodes, "servers": len(dht.servers), "build_s": built}
    out["table_p50"] = statistics.median(len(t) for t in dht.tables.values())
    hops, msgs, secs = [], [], []
    for n in range(lookups):
        h, m, s = dht.lookup(rng.choice(ids), _id(b"random key %d" % n))
        hops.append(h)
        msgs.append(m)
        secs.append(s)
    out |= {
        "hops_p50": _pct(hops, 50),
        "hops_p99": _pct(hops, 99),
        "msgs_p50": _pct(msgs, 50),
        "msgs_p99": _pct(msgs, 99),
        "lookup_s_p50": _pct(secs, 50),
        "lookup_s_p99": _pct(secs, 99),
    }
    # Niche projects: three followers anywhere start following within an hour of each other;
    # "meet" is the longest a follower waits, from its start, to be connected to the group.
    meet, provider_msgs, found_msgs = [], [], []
    for n in range(niches):
        key = int.from_bytes(provider_key(b"niche %d" % n), "big")
        followers = rng.sample(ids, 3)
        starts = sorted(rng.uniform(0, 3600) for _ in followers)
        provided_at = []
        for who, at in zip(followers, starts, strict=True):
            _, m, s = dht.provide(who, key)
            provider_msgs.append(m)
            provided_at.append(at + s)
        # Each later follower looks up at its start, then on the retry schedule while it
        # finds nobody; once it finds an earlier follower it dials it, so the group is one
        # connected tree when the last of them has. The earliest follower needs no lookup
        # to succeed: the others dial it.
        joined = []
        for who, at in list(zip(followers, starts, strict=True))[1:]:
            when, retries = at, iter(RETRIES)
            while True:
                _, m, s = dht.lookup(who, key, want_record=True)
                found_msgs.append(m)
                if any(p <= when for p, f in zip(provided_at, followers, strict=True) if f != who):
                    joined.append(when + s - at)
                    break
                when += next(retries, 600.0)
        meet.append(max(joined))
    out |= {
        "provide_msgs_p50": _pct(provider_msgs, 50),
        "provider_lookup_msgs_p50": _pct(found_msgs, 50),
        "meet_s_p50": _pct(meet, 50),
        "meet_s_p99": _pct(meet, 99),
        "seconds": time.perf_counter() - started,
    }
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scripts/scale", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--servers", type=float, default=0.2, help="share of DHT servers")
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--niches", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = run(args.seed, args.nodes, args.servers, args.lookups, args.niches)
    for name, value in result.items():
        print(f"{name:26} {value:,.2f}" if isinstance(value, float) else f"{name:26} {value:,}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
