"""``commons node run``: the node in the foreground, and its log formats; ``node wait``."""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from node.cli.client import running_client
from node.cli.errors import CommandError
from node.cli.output import emit, home_of
from node.cli.parser import Parser
from node.cli.store_access import open_store
from node.home import Config, Home, HomeError
from node.logformat import log_handler
from node.policy import Policy, PolicyError, hosted, policy_from_config
from node.views.follow import Follow, FollowError, resolve_follow

__all__ = ["register"]


def cmd_node_run(args: argparse.Namespace) -> int:
    import trio

    from node.api.app import ApiStartError
    from node.net.addresses import AddressError, Announcement
    from node.net.relay import RelaySettings
    from node.net.transport import TransportError, check_peer_addr
    from node.runtime import NodeOptions, run_node

    home = home_of(args)
    try:
        home.require()
        config = home.config()
        home.signing_key()
    except HomeError as exc:
        raise CommandError(str(exc)) from None
    follow = _follow(home, args.follow or config.follow, "--follow" if args.follow else "follow")
    bootstrap = (args.bootstrap or []) + config.bootstrap
    for addr in bootstrap:
        # Refused now: a malformed address would otherwise be retried for as long as the
        # node runs, each time failing the same way.
        try:
            check_peer_addr(addr)
        except TransportError as exc:
            raise CommandError(f"bootstrap address: {exc}") from None
    announce = args.announce or config.announce
    try:
        Announcement(home.signing_key().peer_id, announce, config.no_announce)
    except AddressError as exc:
        raise CommandError(f"config.toml or --announce: {exc}") from None
    seed = args.seed or config.seed
    policy, projects = _policy(config, [] if seed else sorted(follow.projects or ()))
    options = NodeOptions(
        listen=args.listen or config.listen,
        bootstrap=bootstrap,
        announce=announce,
        no_announce=config.no_announce,
        api=args.api if args.api is not None else config.api,
        mdns=config.mdns and not args.no_mdns,
        api_front=config.api_front,
        follow=projects,
        seed=seed,
        peer_exchange=config.peer_exchange,
        max_peers=config.seed_max_peers if seed else config.max_peers,
        sync_interval=config.sync_interval,
        gossip_rate=config.gossip_rate,
        dht=args.dht,
        relay=RelaySettings(
            hop=seed if config.hop == "auto" else bool(config.hop),
            max_reservations=config.max_reservations,
            max_circuits_per_peer=config.max_circuits_per_peer,
            max_circuit_seconds=config.max_circuit_seconds,
            max_circuit_bytes=config.max_circuit_mb << 20,
            reservation_seconds=config.reservation_seconds,
            reachability=config.reachability,  # type: ignore[arg-type]
            reserve=config.reserve,
            hole_punch=config.hole_punch,
        ),
        policy=policy,
    )
    if home.running_node() is not None:
        raise CommandError(f"a node is already running for {home.path} (see node.json)")
    # Logging starts once the options are known good: a refusal is one line, not a log.
    _setup_logging(args.log_level, args.log_json, args.libp2p_log_level)
    try:
        trio.run(run_node, home, options)
    except (ApiStartError, TransportError, OSError, ValueError) as exc:
        raise CommandError(f"the node stopped: {exc}") from None
    return 0


#: Seconds between two looks at node.json and the API while ``node wait`` waits.
WAIT_POLL = 0.1
#: ``node wait --timeout`` is below this (a day): the wait is always bounded.
MAX_WAIT = 86_400.0


def cmd_node_wait(args: argparse.Namespace) -> int:
    """Block until the home's node runs and answers (with ``--peers N``, has N peers).

    A script that starts ``commons node run ... &`` cannot know when node.json is written
    and the API listens; this is the bounded wait it needs instead of a guessed sleep."""
    if not 0 < args.timeout < MAX_WAIT:
        raise CommandError(f"--timeout must be more than 0 and less than {MAX_WAIT:g} seconds")
    if args.peers < 0:
        raise CommandError("--peers must be 0 or more")
    home = home_of(args)
    try:
        home.require()
    except HomeError as exc:
        raise CommandError(str(exc)) from None
    deadline = time.monotonic() + args.timeout
    seen = "no node.json from a running node"
    while True:
        info = home.running_node()
        if info is not None:
            seen, ready = _ready(home, info, args.peers, deadline)
            if ready:
                break
        if time.monotonic() >= deadline:
            raise CommandError(
                f"no ready node for {home.path} after {args.timeout:g} s ({seen}): "
                "is `commons node run` running? its log says why not"
            )
        time.sleep(WAIT_POLL)
    addrs = info.get("addrs") or []
    emit(
        args,
        info,
        f"node {info.get('peer_id')} ready: API {info.get('api') or 'off'}, "
        f"listening on {', '.join(addrs) or '-'}",
    )
    return 0


def _ready(home: Home, info: dict[str, Any], peers: int, deadline: float) -> tuple[str, bool]:
    """Whether the node that node.json names is ready, and what was seen if not."""
    client = running_client(home)
    if client is None:  # the node serves no API: node.json is all there is to wait for
        if peers:
            raise CommandError("the node serves no API (--api), so its peers cannot be seen")
        return "", True
    try:
        status = client.get("/api/v1/status", timeout=max(0.1, deadline - time.monotonic()))
    except CommandError as exc:
        return f"its API does not answer: {exc}", False
    have = status.get("peers", 0) if isinstance(status, dict) else 0
    if have < peers:
        return f"{have} of {peers} peers connected", False
    return "", True


def _policy(config: Config, follow: list[bytes]) -> tuple[Policy, list[bytes]]:
    """config.toml's ``[policy]``, and the projects to follow: ``follow`` (empty: all) within
    what ``policy.host`` hosts."""
    try:
        policy = policy_from_config(config)
        host = hosted(config.host)
    except PolicyError as exc:
        raise CommandError(f"config.toml: {exc}") from None
    if host is None:
        return policy, follow
    projects = sorted(host.intersection(follow)) if follow else sorted(host)
    if not projects:
        raise CommandError("config.toml: policy.host and the followed projects share none")
    return policy, projects


def _follow(home: Any, texts: list[str], where: str) -> Follow:
    """The follow list, each id prefix resolved against the store (as ``resolve_follow``)."""
    if not texts:
        return Follow()
    with open_store(home) as store:
        try:
            return resolve_follow(store, texts)
        except FollowError as exc:
            raise CommandError(f"{where}: {exc}") from None


#: The loggers of the networking libraries under the node (py-libp2p, its multiaddr parser,
#: the mDNS library): ``--libp2p-log-level``, WARNING by default whatever ``--log-level`` says,
#: since at DEBUG they write hundreds of lines a second and bury the node's own.
NETWORK_LOGGERS = ("libp2p", "multiaddr", "zeroconf")


def _setup_logging(level: str, as_json: bool, libp2p_level: str | None = None) -> None:
    """Commons' own loggers (``node.*``) at ``level``; the networking libraries' at
    ``libp2p_level`` (default: warning, or ``level`` if higher); every other library at
    warning or ``level`` if higher."""
    handler = log_handler(as_json)
    ours = logging.getLevelName(level.upper())
    quiet = max(logging.WARNING, ours)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(quiet)
    logging.getLogger("node").setLevel(ours)
    network = quiet if libp2p_level is None else logging.getLevelName(libp2p_level.upper())
    for name in NETWORK_LOGGERS:
        logging.getLogger(name).setLevel(network)
    # A few of their modules set a level of their own (libp2p's auto_connector: INFO), which
    # would outrank the package's: they follow the package too.
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (
            isinstance(logger, logging.Logger)
            and name.startswith(tuple(f"{n}." for n in NETWORK_LOGGERS))
            and logger.level != logging.NOTSET
        ):
            logger.setLevel(network)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    # node
    node = sub.add_parser("node", help="run the node", description="run the node", parents=[common])
    node_sub = node.add_subparsers(dest="node_command", metavar="COMMAND", parser_class=Parser)
    node_sub.required = True
    p = node_sub.add_parser(
        "run",
        parents=[common],
        help="run the node in the foreground until SIGINT/SIGTERM",
        description="Run the node in the foreground: gossip, reconciliation and the local "
        "API. Stops cleanly on Ctrl-C or SIGTERM. Defaults come from config.toml.",
    )
    p.set_defaults(func=cmd_node_run)
    p.add_argument(
        "--listen", action="append", metavar="MADDR", help="listen multiaddr (repeatable)"
    )
    p.add_argument(
        "--bootstrap",
        action="append",
        metavar="MADDR",
        help="peer to dial, with /p2p/<id> (repeatable)",
    )
    p.add_argument(
        "--announce",
        action="append",
        metavar="MADDR",
        help="address to advertise to peers instead of the listen ones (repeatable), "
        "e.g. a VPS's public /ip4/IP/tcp/4710 or /dns4/NAME/tcp/4710",
    )
    p.add_argument("--api", metavar="HOST:PORT", help="API address; port 0 picks a free one")
    p.add_argument("--no-mdns", action="store_true", help="do not discover peers on the LAN")
    p.add_argument(
        "--follow", action="append", metavar="PROJECT", help="hold only this project (repeatable)"
    )
    p.add_argument("--seed", action="store_true", help="seed node: hold everything, more peers")
    p.add_argument(
        "--dht",
        choices=["server", "client", "off"],
        help="the DHT of project providers: answer queries (server), only ask (client) or "
        "not at all; default: server with --seed, else client",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="detail of the node's own log on stderr (default: info)",
    )
    p.add_argument(
        "--libp2p-log-level",
        choices=["debug", "info", "warning", "error"],
        help="detail of the networking libraries' log (libp2p, multiaddr, zeroconf); "
        "default: warning, or --log-level when higher",
    )
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line")

    p = node_sub.add_parser(
        "wait",
        parents=[common],
        help="wait until this home's node runs and its API answers",
        description="Wait until the node of this home has written node.json and its API "
        "answers (and, with --peers, has that many peers), then print where it listens "
        "(--json: node.json). For scripts that start `commons node run ... &`. Exit 1 when "
        "the node is not ready within --timeout.",
    )
    p.set_defaults(func=cmd_node_wait)
    p.add_argument(
        "--timeout", type=float, default=30.0, metavar="S", help="seconds to wait (default 30)"
    )
    p.add_argument(
        "--peers", type=int, default=0, metavar="N", help="also wait for N connected peers"
    )
