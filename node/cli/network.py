"""Commands that ask the running node: ``peers``, ``status``, ``sync``."""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

from node.cli.client import SYNC_TIMEOUT, running_client
from node.cli.errors import CommandError
from node.cli.output import emit, home_of, identity
from node.cli.parser import add_command
from node.cli.store_access import open_store
from node.textout import table

__all__ = ["register"]


def _client(args: argparse.Namespace) -> Any:
    client = running_client(home_of(args))
    if client is None:
        raise CommandError("no node is running for this home: start one with `commons node run`")
    return client


def cmd_peers(args: argparse.Namespace) -> int:
    peers = _client(args).get("/api/v1/peers")
    rows = [(p["peer_id"], ", ".join(p["addrs"])) for p in peers]
    emit(args, peers, table(["PEER", "ADDRESSES"], rows) if rows else "no connected peers")
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
            }
    text = (
        f"peer id:  {status['peer_id']}\n"
        f"node:     {'running' if status['running'] else 'not running'}\n"
        f"peers:    {status['peers']}\n"
        f"records:  {status['records']}\n"
        f"projects: {status['projects']}"
    )
    emit(args, status, text)
    return 0


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


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add = partial(add_command, sub, common)
    add("peers", cmd_peers, "connected peers (needs a running node)")
    add("status", cmd_status, "whether the node runs, and what it holds")
    p = add("sync", cmd_sync, "reconcile now with all connected peers, or with one")
    p.add_argument("maddr", nargs="?", metavar="MADDR")
