"""Commands that ask the running node: ``peers``, ``status``, ``sync``, ``dashboard``."""

from __future__ import annotations

import argparse
import sys
import webbrowser
from functools import partial
from typing import Any

import node
from node.cli.client import SYNC_TIMEOUT, running_client
from node.cli.errors import CommandError
from node.cli.output import emit, home_of, identity
from node.cli.parser import add_command
from node.cli.store_access import open_store
from node.textout import date_time, duration, table
from node.views.details import names

__all__ = ["register"]


def _client(args: argparse.Namespace) -> Any:
    client = running_client(home_of(args))
    if client is None:
        raise CommandError("no node is running for this home: start one with `commons node run`")
    return client


def cmd_peers(args: argparse.Namespace) -> int:
    peers = _client(args).get("/api/v1/peers")
    with open_store(home_of(args)) as store:
        who = names(store)
    rows = [(p["peer_id"], who.get(p["peer_id"], ""), ", ".join(p["addrs"])) for p in peers]
    text = table(["PEER", "NAME", "ADDRESSES"], rows, max_width=None) if rows else ""
    emit(args, peers, text or "no connected peers")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    home = home_of(args)
    client = running_client(home)
    if client is not None:
        status = client.get("/api/v1/status")
    else:
        key = identity(home)
        with open_store(home) as store:
            status = {
                "peer_id": key.peer_id,
                "running": False,
                "peers": 0,
                "records": store.count(),
                "projects": len(store.project_ids()),
                "version": node.__version__,
            }
    emit(args, status, _status_text(status))
    return 0


_REACHABILITY = {
    "public": "yes (peers can dial it)",
    "private": "no (behind NAT or a firewall)",
    "unknown": "not known yet",
}


def _status_text(status: dict[str, Any]) -> str:
    """``status`` for people: the node's addresses, how long it has run, what it follows."""
    lines = [
        f"peer id:     {status['peer_id']}",
        f"version:     {status['version']}",
        f"node:        {'running' if status['running'] else 'not running'}",
    ]
    if status["running"]:
        follow = status["follow"]
        mode = "seed (holds every project)" if status["seed"] else "ordinary"
        lines += [
            f"since:       {date_time(status['started'])} UTC"
            f" (up {duration(status['uptime_seconds'])})",
            f"listening:   {', '.join(status['listen']) or '-'}",
            f"advertised:  {', '.join(status.get('addrs') or []) or '-'}",
            f"api:         {status['api'] or 'off'}",
            f"mode:        {mode}",
            f"follows:     {', '.join(follow) if follow else 'every project'}",
            f"sync:        {'catching up' if status['catching_up'] else 'up to date'}"
            f" ({status['syncing']} session(s) under way)",
        ]
        if "reachability" in status:  # a node older than the relay does not say
            relays = status.get("relays") or []
            lines.append(
                f"reachable:   {_REACHABILITY.get(status['reachability'], '-')}"
                + (f"; relayed by {', '.join(relays)}" if relays else "")
            )
    lines += [
        f"peers:       {status['peers']}",
        f"records:     {status['records']}",
        f"projects:    {status['projects']}",
    ]
    return "\n".join(lines)


def cmd_sync(args: argparse.Namespace) -> int:
    fields = {"addr": args.maddr} if args.maddr else {}
    result = _client(args).post("/api/v1/sync", fields, timeout=SYNC_TIMEOUT)
    emit(
        args,
        result,
        f"synced with {result['peers']} peer(s): received {result['received']}, "
        f"sent {result['sent']} records",
    )
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    """A one-time login URL for the node's web dashboard (node/web): the API token proves
    that whoever runs this owns the home, and the URL hands a browser a session of its own."""
    result = _client(args).post("/api/v1/dashboard/logins", {})
    url = result["url"]
    emit(args, result, url)
    if not args.json:
        sys.stderr.write("open it once, within 10 minutes, to log in (it works only once)\n")
    # The URL is printed anyway: a browser that cannot be started is not a failure.
    if args.open and not webbrowser.open(url):
        sys.stderr.write("could not open a browser: open the URL above yourself\n")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add = partial(add_command, sub, common)
    add("peers", cmd_peers, "connected peers, by name where they have one (needs a running node)")
    add(
        "status",
        cmd_status,
        "whether the node runs (addresses, version, uptime, mode, follow list, catching up) "
        "and what it holds",
    )
    p = add("sync", cmd_sync, "reconcile now with all connected peers, or with one")
    p.add_argument(
        "maddr",
        nargs="?",
        metavar="MADDR",
        help="a peer's multiaddr ending in /p2p/<peer id> (default: every connected peer)",
    )
    p = add(
        "dashboard",
        cmd_dashboard,
        "print a one-time URL that logs a browser in to the node's web dashboard, with writes",
    )
    p.add_argument("--open", action="store_true", help="also open the URL in a browser")
