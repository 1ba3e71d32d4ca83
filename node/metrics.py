"""Counters and gauges for ``GET /metrics`` (Prometheus text exposition format 0.0.4), and
the process's own figures (CPU, memory, open files) under their conventional ``process_`` names.

Every metric the node can export has its HELP text in ``_HELP``: a family is rendered with
its HELP and TYPE lines from the first scrape, before any sample exists, so a dashboard or an
alert can name it on a node that has not yet counted anything (tests/test_docs.py checks
that each one is documented).
"""

from __future__ import annotations

import os
import resource
from collections import defaultdict
from collections.abc import Callable

__all__ = ["Metrics", "process_metrics"]

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
    "commons_sync_sent_bytes_total": "Bytes sent on sync streams.",
    "commons_sync_received_bytes_total": "Bytes received on sync streams.",
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
    "commons_relay_reachable": (
        "Whether peers can dial this node: 1 public, 0 private, -1 not known yet."
    ),
    "commons_relay_reservations": (
        "Relay slots held: ours on relays (role=client), others' on this relay (role=relay)."
    ),
    "commons_relay_reservations_made_total": "Slots this node asked relays for, by outcome.",
    "commons_relay_circuits_dialled_total": "Dials through a relay, by outcome.",
    "commons_relay_dialbacks_asked_total": "Dial-back tests asked of peers, by answer.",
    "commons_relay_dialbacks_served_total": "Dial-back tests served to peers, by outcome.",
    "commons_relay_hop_reservations_total": "Reservation requests this relay judged, by outcome.",
    "commons_relay_hop_circuits_total": "Circuit requests this relay judged, by outcome.",
    "commons_relay_dcutr_total": "Upgrades of relayed connections to direct ones, by outcome.",
    "commons_relay_hop_bytes_total": "Bytes this relay carried for others' circuits.",
    "commons_relay_hop_streams_refused_total": "Hop streams reset: too many open at once.",
    "commons_dht_answers_refused_total": (
        "DHT answers to this node's lookups and provides refused or cut to the caps, by reason."
    ),
    "commons_dht_providers_refused_total": (
        "Providers a DHT lookup returned that were not taken (this node, no dialable address, "
        "over the cap)."
    ),
    "commons_dht_ops_deferred_total": "DHT lookups and provides that waited for the budget.",
    "commons_dht_lookups_skipped_total": (
        "Re-lookups skipped because enough connected peers follow the project."
    ),
    "commons_gossip_refused_again_total": (
        "Copies of a gossip message already refused for good, refused again unparsed."
    ),
    "commons_verifier_starts_total": "Starts of the signature-verifying helper process.",
    "commons_verifier_records_total": "Signatures the verifying helper process checked.",
    "commons_verifier_failures_total": "Times the verifying helper failed or hung.",
    "commons_build_info": "The running build: version, Python and py-libp2p (always 1).",
    "commons_peer_sync_age_seconds": (
        "Seconds since the last finished reconciliation with each connected peer "
        "(the most lagging peers only)."
    ),
    "commons_ready": "1 when GET /readyz answers 200 (store open, listening, synced or alone).",
    # The transport's counters (node.net.transport.TransportStats), one family a field.
    "commons_transport_messages_accepted_total": (
        "Gossip messages that passed validation, received or published."
    ),
    "commons_transport_messages_rejected_total": "Gossip messages that failed validation.",
    "commons_transport_validator_errors_total": "Gossip validations that raised an error.",
    "commons_transport_messages_delivered_total": "Gossip messages delivered to the node.",
    "commons_transport_messages_dropped_total": (
        "Gossip messages dropped because the node's inbox was full."
    ),
    "commons_transport_delivered_bytes_total": "Bytes of gossip messages delivered to the node.",
    "commons_transport_messages_published_total": "Gossip messages this node published.",
    "commons_transport_published_bytes_total": "Bytes of gossip messages this node published.",
    "commons_transport_publish_waits_expired_total": (
        "Publishes that waited in vain for a peer's full send queue to drain."
    ),
    "commons_transport_pubsub_errors_total": "Errors inside the pubsub library, contained.",
    "commons_transport_connects_total": "Successful outgoing connections.",
    "commons_transport_dial_failures_total": "Outgoing connections that failed.",
    "commons_transport_peer_events_dropped_total": (
        "Peer connect and disconnect events dropped (queue full)."
    ),
    "commons_transport_discoveries_dropped_total": ("Discovered peers dropped (queue full)."),
    "commons_transport_handler_errors_total": "Stream handlers that failed.",
    "commons_transport_inbound_streams_refused_total": (
        "Inbound streams refused beyond the limit of streams at once."
    ),
    "commons_transport_bans_total": "Peers banned.",
    "commons_transport_connections_refused_total": (
        "Inbound connections refused beyond the peer limit."
    ),
    # The process (the names every Prometheus client library uses).
    "process_cpu_seconds_total": "User and system CPU time spent, in seconds.",
    "process_resident_memory_bytes": "Resident memory size, in bytes.",
    "process_virtual_memory_bytes": "Virtual memory size, in bytes.",
    "process_open_fds": "Open file descriptors.",
    "process_max_fds": "The most file descriptors the process may open.",
    "process_start_time_seconds": "When the process started, in seconds since the epoch.",
}

#: The families computed at scrape time that are counters (every other one is a gauge).
_COUNTER_SUFFIX = "_total"

Series = dict[tuple[tuple[str, str], ...], float]


class Metrics:
    """A flat registry of labelled counters plus gauges computed at scrape time."""

    def __init__(self) -> None:
        self._counters: dict[str, Series] = defaultdict(dict)
        self._gauges: dict[str, Callable[[], Series]] = {}

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

    def gauge(self, name: str, fn: Callable[[], Series]) -> None:
        """Register a family whose labelled values ``fn`` computes at scrape time: a gauge,
        or a counter kept elsewhere when its name ends in ``_total``."""
        self._gauges[name] = fn

    def render(self) -> str:
        families: dict[str, Series] = {name: {} for name in _HELP}
        for name, fn in self._gauges.items():
            families[name] = fn()
        for name, series in self._counters.items():
            families[name] = dict(series)
        lines: list[str] = []
        for name, series in sorted(families.items()):
            kind = "counter" if name.endswith(_COUNTER_SUFFIX) else "gauge"
            lines.append(f"# HELP {name} {_HELP.get(name, name)}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(series.items()):
                lines.append(f"{name}{_labels(labels)} {_num(value)}")
        return "\n".join(lines) + "\n"


def process_metrics() -> dict[str, float]:
    """This process's CPU time, memory, file descriptors and start time, read from the
    kernel at each scrape (``/proc`` on Linux; elsewhere only what ``resource`` offers)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    found = {
        "process_cpu_seconds_total": usage.ru_utime + usage.ru_stime,
        "process_max_fds": float(resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
    }
    try:
        with open("/proc/self/stat", "rb") as f:
            # The command name (field 2) may hold spaces: the fields after it are counted
            # from its closing parenthesis.
            fields = f.read().rpartition(b")")[2].split()
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        found["process_open_fds"] = float(len(os.listdir("/proc/self/fd")))
    except (OSError, StopIteration, ValueError):
        return found  # not Linux: no /proc
    ticks = os.sysconf("SC_CLK_TCK")
    found["process_virtual_memory_bytes"] = float(fields[20])
    found["process_resident_memory_bytes"] = float(int(fields[21]) * resource.getpagesize())
    found["process_start_time_seconds"] = boot + int(fields[19]) / ticks
    return found


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
