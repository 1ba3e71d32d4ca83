"""``commons profile set`` and ``commons profile show``: people by name.

A profile is a signed record of its author's display name, about text and links; the latest
one by ``(ts, id)`` counts. Names are chosen by peers and are not unique, so what prints them
always shows the peer id too.
"""

from __future__ import annotations

import argparse
from typing import Any

from node.cli.author import author
from node.cli.client import running_client
from node.cli.errors import CommandError
from node.cli.output import emit, home_of, identity
from node.cli.parser import Parser, add_command
from node.cli.store_access import open_store
from node.textout import date_time, terminal_safe
from node.views.cache import ViewError
from node.views.details import profile_json

__all__ = ["register"]


def _current(args: argparse.Namespace, peer: str) -> dict[str, Any] | None:
    """The peer's current profile as JSON, or None when none is held."""
    try:
        with open_store(home_of(args)) as store:
            return profile_json(store, peer)
    except ViewError as exc:
        if exc.status == 404:
            return None
        raise CommandError(str(exc)) from None


def cmd_profile_set(args: argparse.Namespace) -> int:
    home = home_of(args)
    me = identity(home).peer_id
    if args.name is None and args.about is None and not args.link:
        raise CommandError("nothing to set: give --name, --about or --link")
    # A profile replaces the previous one whole: keep what the options do not change.
    current = _current(args, me) or {}
    name = args.name if args.name is not None else current.get("name")
    if not name:
        raise CommandError("this home has no profile yet: give a display name with --name")
    fields = {
        "name": name,
        "about": args.about if args.about is not None else current.get("about"),
        "links": args.link if args.link else current.get("links"),
    }
    result, how = author(args, "profile", fields, "/api/v1/profiles")
    emit(args, result, f"profile {result['id']} {how}")
    return 0


def cmd_profile_show(args: argparse.Namespace) -> int:
    home = home_of(args)
    peer = args.peer or identity(home).peer_id
    client = running_client(home)
    if client is not None:
        value = client.get(f"/api/v1/profiles/{peer}")
    else:
        value = _current(args, peer)
        if value is None:
            raise CommandError(f"no profile of {peer} is held here")
    lines = [
        f"name:    {terminal_safe(value['name'])}",
        f"peer id: {value['peer_id']}",
        f"about:   {terminal_safe(value['about'] or '-', multiline=True)}",
        f"links:   {', '.join(map(terminal_safe, value['links'])) or '-'}",
        f"since:   {date_time(value['ts'])} UTC (record {value['id'][:16]})",
    ]
    emit(args, value, "\n".join(lines))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    profile = sub.add_parser(
        "profile", help="set or show a display name, about text and links", parents=[common]
    )
    psub = profile.add_subparsers(dest="profile_command", metavar="COMMAND", parser_class=Parser)
    psub.required = True
    p = add_command(
        psub,
        common,
        "set",
        cmd_profile_set,
        "publish this home's profile; options not given keep their current value",
    )
    p.add_argument("--name", metavar="N", help="display name (names are not unique)")
    p.add_argument("--about", metavar="T", help="a few words about you (may span lines)")
    p.add_argument(
        "--link",
        action="append",
        metavar="URL",
        help="a link (repeatable; the links given replace all current ones)",
    )
    p = add_command(psub, common, "show", cmd_profile_show, "a peer's current profile")
    p.add_argument("peer", nargs="?", metavar="PEER", help="a peer id (default: this home's)")
