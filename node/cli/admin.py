"""``commons admin``: an operator's moderation (blocks, purges, bans) of this home's node.

With a node running, each command goes through its API (``/api/v1/admin/...``, with the
owner's token), so the new policy or ban applies at once; without one, it works on the store
directly, and the node applies it when it starts.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from node.cli.client import running_client
from node.cli.errors import CommandError
from node.cli.output import emit, home_of
from node.cli.parser import Parser, add_command
from node.cli.store_access import home_policy, open_store
from node.moderation import (
    ModerationError,
    add_ban,
    bans_json,
    block,
    blocks_json,
    check_peer,
    parse_duration,
    parse_key,
    unblock,
)
from node.textout import table

__all__ = ["register"]


def _offline(args: argparse.Namespace, action: Any) -> Any:
    """Run ``action(store, policy)`` on this home's store; moderation errors are one line."""
    home = home_of(args)
    with open_store(home) as store:
        try:
            return action(store, home_policy(home, store))
        except ModerationError as exc:
            raise CommandError(str(exc)) from None


def cmd_block(args: argparse.Namespace) -> int:
    kind, on = args.kind, args.on
    client = running_client(home_of(args))
    if client is not None:
        if on:
            fields = {"kind": kind, "key": args.key, "purge": bool(args.purge)}
            answer = client.post("/api/v1/admin/blocks", fields)
        else:
            answer = client.delete(f"/api/v1/admin/blocks/{kind}/{quote(args.key, safe='')}")
    else:
        try:
            which, key = parse_key(kind, args.key)
        except ModerationError as exc:
            raise CommandError(str(exc)) from None

        def act(store: Any, policy: Any) -> dict[str, Any]:
            if on:
                outcome = block(store, policy, which, key, purge=bool(args.purge))
            else:
                outcome = unblock(store, policy, which, key)
                if not outcome.changed:
                    raise ModerationError(f"{args.key} is not blocked")
            return outcome.to_json(which, key, blocked=on)

        answer = _offline(args, act)
    emit(args, answer, _block_text(answer))
    return 0


def _block_text(answer: dict[str, Any]) -> str:
    what = f"{answer['kind']} {answer['key']}"
    if not answer["blocked"]:
        released = answer.get("released", 0)
        return f"unblocked {what}: {released} refused records may return through sync"
    done = "blocked" if answer["changed"] else "already blocked:"
    purged = answer.get("purged", 0)
    return f"{done} {what}" + (f"; purged {purged} records" if purged else "")


def cmd_blocks(args: argparse.Namespace) -> int:
    client = running_client(home_of(args))
    if client is not None:
        blocks = client.get("/api/v1/admin/blocks", auth=True)
    else:
        blocks = _offline(args, blocks_json)
    rows = [(b["kind"], b["key"], b["source"], _when(b["since"])) for b in blocks]
    text = table(["KIND", "KEY", "SOURCE", "SINCE"], rows) if rows else "no blocks"
    emit(args, blocks, text)
    return 0


def cmd_ban(args: argparse.Namespace) -> int:
    client = running_client(home_of(args))
    if client is not None:
        fields: dict[str, Any] = {"peer": args.peer}
        if args.duration is not None:
            fields["for"] = args.duration
        answer = client.post("/api/v1/admin/bans", fields)
    else:
        try:
            peer, seconds = check_peer(args.peer), parse_duration(args.duration)
        except ModerationError as exc:
            raise CommandError(str(exc)) from None
        until = _offline(args, lambda store, _: add_ban(store, peer, seconds))
        answer = {"peer": peer, "until": until}
    until = "ever" if answer["until"] is None else _when(answer["until"])
    emit(args, answer, f"banned peer {answer['peer']} until {until}")
    return 0


def cmd_unban(args: argparse.Namespace) -> int:
    client = running_client(home_of(args))
    if client is not None:
        answer = client.delete(f"/api/v1/admin/bans/{quote(args.peer, safe='')}")
    else:

        def act(store: Any, _: Any) -> dict[str, Any]:
            peer = check_peer(args.peer)
            if not store.remove_ban(peer):
                raise ModerationError(f"peer {peer} is not banned")
            return {"peer": peer, "banned": False}

        answer = _offline(args, act)
    emit(args, answer, f"peer {answer['peer']} is no longer banned")
    return 0


def cmd_bans(args: argparse.Namespace) -> int:
    client = running_client(home_of(args))
    if client is not None:
        bans = client.get("/api/v1/admin/bans", auth=True)
    else:
        bans = _offline(args, lambda store, _: bans_json(store))
    rows = [(b["peer"], "ever" if b["until"] is None else _when(b["until"])) for b in bans]
    emit(args, bans, table(["PEER", "UNTIL"], rows) if rows else "no bans")
    return 0


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "admin",
        parents=[common],
        help="moderate this node: block projects and authors, purge, ban peers",
        description="An operator's moderation. A block refuses a project's or an author's "
        "records on every path (gossip, sync, the API, import) from now on: they are not "
        "stored, forwarded or served. --purge also deletes what is held of them. Bans refuse "
        "a peer's connections. All of it is kept in the store and survives a restart; with a "
        "node running it applies at once.",
    )
    asub = parser.add_subparsers(dest="admin_command", metavar="COMMAND", parser_class=Parser)
    asub.required = True
    for kind, what in (("project", "PROJECT"), ("author", "PEER")):
        key_help = (
            "the project's id (64 hex digits)" if kind == "project" else "the author's peer id"
        )
        p = add_command(
            asub, common, f"block-{kind}", cmd_block, f"refuse this {kind}'s records from now on"
        )
        p.set_defaults(kind=kind, on=True)
        p.add_argument("key", metavar=what, help=key_help)
        p.add_argument(
            "--purge",
            action="store_true",
            help="also delete the records held (and their views), for good",
        )
        p = add_command(
            asub,
            common,
            f"unblock-{kind}",
            cmd_block,
            f"lift a block of this {kind}: its records may return through sync",
        )
        p.set_defaults(kind=kind, on=False, purge=False)
        p.add_argument("key", metavar=what, help=key_help)
    add_command(asub, common, "blocks", cmd_blocks, "list the blocks in force")
    p = add_command(asub, common, "ban", cmd_ban, "refuse a peer's connections")
    p.add_argument("peer", metavar="PEER", help="the peer's id")
    p.add_argument(
        "--for",
        dest="duration",
        metavar="DURATION",
        help="how long: seconds, or a number with s, m, h, d or w (default: for ever)",
    )
    p = add_command(asub, common, "unban", cmd_unban, "lift a peer's ban")
    p.add_argument("peer", metavar="PEER", help="the peer's id")
    add_command(asub, common, "bans", cmd_bans, "list the bans in force")
