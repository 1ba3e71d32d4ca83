"""Counters and gauges for ``GET /metrics`` (Prometheus text exposition format 0.0.4)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

__all__ = ["Metrics"]

#: Distinct label values kept per counter; a peer cannot blow up memory with fresh reasons.
MAX_LABEL_VALUES = 256

_HELP = {
    "commons_records": "Records held in the store, by kind.",
    "commons_peers": "Connected peers.",
    "commons_gossip_accepted_total": "Gossip messages accepted and stored.",
    "commons_gossip_rejected_total": "Gossip messages refused, by reason.",
    "commons_ingest_rejected_total": "Records refused on ingest, by source and reason.",
    "commons_ingest_new_total": "New records stored, by source.",
    "commons_policy_refused_total": "Valid records refused by local policy, by source and reason.",
    "commons_sync_sessions_total": "Reconciliation sessions, by role and outcome.",
    "commons_sync_rounds_total": "Negentropy round trips driven by this node.",
    "commons_sync_bytes_sent_total": "Bytes sent on sync streams.",
    "commons_sync_bytes_received_total": "Bytes received on sync streams.",
    "commons_sync_records_fetched_total": "Records fetched from peers by sync.",
    "commons_sync_records_sent_total": "Records sent to peers by sync.",
    "commons_published_total": "Records this node published by gossip.",
    "commons_pings_total": "Liveness pings of connected peers, by outcome (ok, missed).",
    "commons_keepalives_total": (
        "Liveness probes (Yamux pings) of peers that serve no ping, by outcome (ok, missed)."
    ),
    "commons_ping_streams_opened_total": "Ping streams opened (one kept per connection).",
    "commons_peers_dropped_total": "Connections dropped by this node, by reason.",
    "commons_dials_total": "Dials started, by where the address came from.",
    "commons_peer_exchanges_total": "Peer exchanges (/commons/peers/1), by role and outcome.",
    "commons_peers_learned_total": "New peer addresses learned by peer exchange.",
    "commons_peer_addrs_refused_total": "Offered peer addresses refused, by reason.",
    "commons_dht_provides_total": "Provider announcements in the DHT, by outcome.",
    "commons_dht_lookups_total": "Provider lookups in the DHT, by outcome.",
    "commons_dht_providers_found_total": "Providers returned by DHT lookups.",
    "commons_dht_routing_table_peers": "Peers in the DHT routing table.",
}


class Metrics:
    """A flat registry of labelled counters plus gauges computed at scrape time."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._gauges: dict[str, Callable[[], dict[tuple[tuple[str, str], ...], float]]] = {}

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        series = self._counters[name]
        key = tuple(sorted(labels.items()))
        if key not in series and len(series) >= MAX_LABEL_VALUES:
            key = tuple((k, "other") for k, _ in key)
        series[key] = series.get(key, 0) + amount

    def get(self, name: str, **labels: str) -> float:
        return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0)

    def total(self, name: str) -> float:
        return sum(self._counters.get(name, {}).values())

    def gauge(self, name: str, fn: Callable[[], dict[tuple[tuple[str, str], ...], float]]) -> None:
        """Register a gauge whose labelled values ``fn`` computes at scrape time."""
        self._gauges[name] = fn

    def render(self) -> str:
        lines: list[str] = []
        for name, fn in sorted(self._gauges.items()):
            lines.append(f"# HELP {name} {_HELP.get(name, name)}")
            lines.append(f"# TYPE {name} gauge")
            for labels, value in sorted(fn().items()):
                lines.append(f"{name}{_labels(labels)} {_num(value)}")
        for name, series in sorted(self._counters.items()):
            lines.append(f"# HELP {name} {_HELP.get(name, name)}")
            lines.append(f"# TYPE {name} counter")
            for labels, value in sorted(series.items()):
                lines.append(f"{name}{_labels(labels)} {_num(value)}")
        return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
