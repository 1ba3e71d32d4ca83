"""Figure 11: a provider lookup on a loopback DHT of ``dht_nodes`` nodes (issue 14).

``dht_nodes`` real libp2p hosts on 127.0.0.1, each with the node's own transport
(``node.net.transport``, Noise, Yamux, GossipSub) and DHT adapter (``node.net.dht``,
``/commons/kad/1``), all in one trio process: fifty node processes would not fit two cores
beside the others, and the DHT's cost is its round trips and messages, which one process
measures as well (the CPU it spends is shared, so times are upper bounds).

``dht_clients`` of them are DHT clients (``--dht client``, a node behind a home router), the
rest servers. Each server dials ``dht_degree`` servers started before it, each client
``dht_degree`` servers (routing tables are filled from connections, as in a node). Then,
for each of ``dht_lookups`` keys, three random clients provide it (a niche project's three
followers) and another client looks it up as a node does (up to ``provider_dials + 4`` = 7
providers). A client holds no provider records, so every lookup asks the network (a server
holding the record would answer from its store). The figure: the lookup's time (p50/p99,
ms) and the DHT requests it sent (p50/p99), with the providers it found and a provide's
requests. The same lookup is then repeated at once (``warm``): the same requests, over the
connections the first one opened, which separates the DHT's round trips from the cost of
dialling (a Noise handshake and identify a new peer, on one shared core).
"""

from __future__ import annotations

import hashlib
import random
import statistics
from contextlib import AsyncExitStack
from typing import Any, Literal

import trio

from bench.common import log, percentile

FOLLOWERS = 3
WANT = 7  # node.providers: FindProviders asks for provider_dials + 4


def run(size: dict[str, Any]) -> dict[str, Any]:
    sizes = (size["dht_nodes"], size["dht_clients"], size["dht_degree"], size["dht_lookups"])
    return trio.run(_measure, *sizes)


async def _measure(count: int, clients: int, degree: int, lookups: int) -> dict[str, Any]:
    from node.net.transport import Transport, TransportConfig, open_transport

    if clients < FOLLOWERS + 1 or count - clients < 1:
        raise ValueError(f"need {FOLLOWERS + 1} clients and a server")
    rng = random.Random(14)
    async with AsyncExitStack() as stack:
        nodes: list[Transport] = []
        started = trio.current_time()
        for i in range(count):
            seed = hashlib.sha256(f"bench-dht:{i}".encode()).digest()
            mode: Literal["server", "client"] = "client" if i >= count - clients else "server"
            config = TransportConfig(seed=seed, listen=("/ip4/127.0.0.1/tcp/0",), dht=mode)
            nodes.append(await stack.enter_async_context(open_transport(config)))
        servers, members = nodes[: count - clients], nodes[count - clients :]
        for i, node in enumerate(nodes[1:], start=1):
            for peer in rng.sample(servers[:i], min(degree, i, len(servers))):
                await node.connect(peer.listen_addrs()[0])
        with trio.fail_after(60):
            while min(n.dht.routing_table_size() for n in nodes) < 1:  # noqa: ASYNC110
                await trio.sleep(0.05)
        setup = trio.current_time() - started
        times, warm, messages, found, provide_messages = [], [], [], [], []
        for k in range(lookups):
            key = hashlib.sha256(f"commons/1/p/bench-{k}".encode()).digest()
            chosen = rng.sample(members, FOLLOWERS + 1)
            for provider in chosen[:FOLLOWERS]:
                before = provider.dht.stats.queries
                await provider.dht.provide(key)
                provide_messages.append(provider.dht.stats.queries - before)
            searcher = chosen[FOLLOWERS]
            before = searcher.dht.stats.queries
            t0 = trio.current_time()
            providers = await searcher.dht.find_providers(key, WANT)
            times.append((trio.current_time() - t0) * 1000)
            messages.append(searcher.dht.stats.queries - before)
            found.append(len(providers))
            # Again at once: the same requests over the connections the first one opened.
            t0 = trio.current_time()
            await searcher.dht.find_providers(key, WANT)
            warm.append((trio.current_time() - t0) * 1000)
        tables = [n.dht.routing_table_size() for n in nodes]
    result = {
        "nodes": count,
        "clients": clients,
        "degree": degree,
        "lookups": lookups,
        "setup_s": round(setup, 2),
        "lookup_ms": {"p50": percentile(times, 50), "p99": percentile(times, 99)},
        "warm_lookup_ms": {"p50": percentile(warm, 50), "p99": percentile(warm, 99)},
        "messages": {"p50": percentile(messages, 50), "p99": percentile(messages, 99)},
        "providers_found": {"median": statistics.median(found), "min": min(found)},
        "found_all": sum(f >= FOLLOWERS for f in found),
        "provide_messages": statistics.median(provide_messages),
        "routing_table": statistics.median(tables),
    }
    lk, ms, wm = result["lookup_ms"], result["messages"], result["warm_lookup_ms"]
    log(
        f"dht: {count} nodes, {lookups} lookups: {lk['p50']:.0f}/{lk['p99']:.0f} ms p50/p99 "
        f"(warm {wm['p50']:.0f}/{wm['p99']:.0f}), "
        f"{ms['p50']}/{ms['p99']} messages, providers found median "
        f"{result['providers_found']['median']} (all {FOLLOWERS} in {result['found_all']})"
    )
    return result
