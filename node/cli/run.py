"""``commons node run``: the node in the foreground, and its log formats."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from node.cli.errors import CommandError
from node.cli.output import home_of
from node.cli.parser import Parser
from node.cli.store_access import open_store
from node.home import HomeError
from node.textout import terminal_safe
from node.views.follow import Follow, FollowError, resolve_follow

__all__ = ["register"]


def cmd_node_run(args: argparse.Namespace) -> int:
    import trio

    from node.api.app import ApiStartError
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
    seed = args.seed or config.seed
    options = NodeOptions(
        listen=args.listen or config.listen,
        bootstrap=bootstrap,
        api=args.api if args.api is not None else config.api,
        mdns=config.mdns and not args.no_mdns,
        follow=[] if seed else sorted(follow.projects or ()),
        seed=seed,
        max_peers=config.seed_max_peers if seed else config.max_peers,
        sync_interval=config.sync_interval,
        gossip_rate=config.gossip_rate,
    )
    if home.running_node() is not None:
        raise CommandError(f"a node is already running for {home.path} (see node.json)")
    # Logging starts once the options are known good: a refusal is one line, not a log.
    _setup_logging(args.log_level, args.log_json)
    try:
        trio.run(run_node, home, options)
    except (ApiStartError, TransportError, OSError, ValueError) as exc:
        raise CommandError(f"the node stopped: {exc}") from None
    return 0


def _follow(home: Any, texts: list[str], where: str) -> Follow:
    """The follow list, each id prefix resolved against the store (as ``resolve_follow``)."""
    if not texts:
        return Follow()
    with open_store(home) as store:
        try:
            return resolve_follow(store, texts)
        except FollowError as exc:
            raise CommandError(f"{where}: {exc}") from None


class _TextFormatter(logging.Formatter):
    """Log lines for a terminal: a message (which may quote a peer) stays one escaped line,
    and a traceback keeps its lines but loses any control character."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return terminal_safe(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return terminal_safe(super().formatException(ei), multiline=True)

    def formatStack(self, stack_info: str) -> str:
        return terminal_safe(super().formatStack(stack_info), multiline=True)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def _setup_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            _TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # py-libp2p is chatty at INFO; keep its warnings.
    logging.getLogger("libp2p").setLevel(max(logging.WARNING, root.level))


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
    p.add_argument("--listen", action="append", metavar="MADDR", help="listen multiaddr (repeat)")
    p.add_argument(
        "--bootstrap", action="append", metavar="MADDR", help="peer to dial, with /p2p/<id>"
    )
    p.add_argument("--api", metavar="HOST:PORT", help="API address; port 0 picks a free one")
    p.add_argument("--no-mdns", action="store_true", help="do not discover peers on the LAN")
    p.add_argument(
        "--follow", action="append", metavar="PROJECT", help="hold only these projects (repeat)"
    )
    p.add_argument("--seed", action="store_true", help="seed node: hold everything, more peers")
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="log detail on stderr (default: info)",
    )
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line")
