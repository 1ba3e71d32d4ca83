"""Reading commands: ``project list/show``, ``ledger``, ``shares``, ``record show``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from typing import Any

from node.cli.errors import CommandError
from node.cli.output import emit, home_of, id_prefix
from node.cli.parser import Parser, add_command
from node.cli.store_access import home_follow, open_store
from node.textout import fmt_number, relative_time, short_peer, table, terminal_safe
from node.views.cache import MAX_LEDGER_LIMIT, LedgerPage, ViewCache, ViewError, record_json
from protocol.record import CONTRIBUTION_TYPES, Record

__all__ = ["register"]


def _views(args: argparse.Namespace, fn: Callable[[ViewCache], Any]) -> Any:
    home = home_of(args)
    with open_store(home) as store:
        try:
            return fn(ViewCache(store, cache=False, follow=home_follow(home, store)))
        except ViewError as exc:
            raise CommandError(str(exc)) from None


def cmd_project_list(args: argparse.Namespace) -> int:
    projects = _views(args, lambda v: v.project_list())
    rows = [
        (
            p["id"][:12],
            p["name"],
            len(p["maintainers"]),
            p["contributions"] if p["followed"] else "not followed",
            p["contributors"] if p["followed"] else "-",
        )
        for p in projects
    ]
    text = (
        table(["ID", "NAME", "MAINTAINERS", "CONTRIBUTIONS", "CONTRIBUTORS"], rows, right=(2, 3, 4))
        if rows
        else "no projects yet: create one with `commons project create NAME`"
    )
    emit(args, projects, text)
    return 0


def cmd_project_show(args: argparse.Namespace) -> int:
    p = _views(args, lambda v: v.project_show(id_prefix(args.project)))
    # Single-line fields are escaped as such: a newline in a name (held from before the
    # format refused it) must not forge a line of its own.
    one = terminal_safe
    lines = [
        f"{one(p['name'])}  ({p['id']})",
        *([terminal_safe(p["description"], multiline=True)] if p.get("description") else []),
        f"license:       {one(p['license'] or '-')}",
        f"links:         {', '.join(map(one, p['links'])) or '-'}",
        f"tags:          {', '.join(map(one, p['tags'])) or '-'}",
        f"maintainers:   {', '.join(p['maintainers'])}",
        f"contributions: {p['contributions']} live, by {p['contributors']} contributor(s)"
        if p["followed"]
        else "contributions: not followed (this node does not follow this project, so it "
        "may hold only part of it)",
    ]
    emit(args, p, "\n".join(lines))
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    if args.limit is not None and not 1 <= args.limit <= MAX_LEDGER_LIMIT:
        raise CommandError(f"--limit must be 1..{MAX_LEDGER_LIMIT}, not {args.limit}")
    page: LedgerPage = _views(
        args,
        lambda v: v.ledger_page(
            id_prefix(args.project),
            author=args.author,
            type=args.type,
            limit=args.limit,
            cursor=args.cursor,
        ),
    )
    entries = page.entries
    authors = [e["author"] for e in entries]
    rows = [
        (
            e["id"][:12],
            relative_time(e["ts"]),
            short_peer(e["author"], authors),
            e["type"],
            e["title"][:60],
            "" if e["effort_minutes"] is None else fmt_number(e["effort_minutes"]),
            e["endorsements"],
        )
        for e in entries
    ]
    text = (
        table(["ID", "WHEN", "AUTHOR", "TYPE", "TITLE", "MINUTES", "ENDORSED"], rows, right=(5, 6))
        if rows
        else "no live contributions"
    )
    emit(args, entries, text)
    if page.next_cursor is not None or (args.cursor and entries):
        # On stderr, so that ``--json`` stays the list the contract promises.
        more = f"; next: --cursor {page.next_cursor}" if page.next_cursor else ""
        print(f"showing {len(entries)} of {page.total}{more}", file=sys.stderr)
    return 0


def cmd_shares(args: argparse.Namespace) -> int:
    shares = _views(args, lambda v: v.shares(id_prefix(args.project)))
    people = [s["contributor"] for s in shares]
    rows = [
        (
            short_peer(s["contributor"], people),
            s["contributions"],
            fmt_number(s["claimed_minutes"]),
            fmt_number(s["endorsed_value"]),
            f"{100 * s['share']:.1f}%",
        )
        for s in shares
    ]
    text = (
        table(
            ["CONTRIBUTOR", "CONTRIBUTIONS", "CLAIMED MIN", "ENDORSED VALUE", "SHARE"],
            rows,
            right=(1, 2, 3, 4),
        )
        if rows
        else "no live contributions"
    )
    emit(args, shares, text)
    return 0


def cmd_record_show(args: argparse.Namespace) -> int:
    record: Record = _views(args, lambda v: v.record(id_prefix(args.record)))
    if args.raw:
        emit(args, {"id": record.id.hex(), "raw": record.raw.hex()}, record.raw.hex())
        return 0
    value = record_json(record)
    text = json.dumps(value, indent=2, ensure_ascii=False)
    emit(args, value, text)
    return 0


def register_project(psub: Any, common: argparse.ArgumentParser) -> None:
    """``project list`` and ``project show``, in the ``project`` group."""
    p = psub.add_parser("list", parents=[common], help="projects held, with counts")
    p.set_defaults(func=cmd_project_list)
    p = psub.add_parser("show", parents=[common], help="one project's current state")
    p.set_defaults(func=cmd_project_show)
    p.add_argument("project", metavar="PROJECT")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add = partial(add_command, sub, common)
    p = add("ledger", cmd_ledger, "a project's live contributions, newest first")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--author", metavar="PEER", help="only those with this author or coauthor")
    p.add_argument("--type", choices=sorted(CONTRIBUTION_TYPES), metavar="TYPE")
    p.add_argument("--limit", type=int, metavar="N", help="at most N entries (default 1000)")
    p.add_argument(
        "--cursor", metavar="ID", help="start after this entry (the `next:` of a previous page)"
    )

    p = add("shares", cmd_shares, "a project's open value accounting")
    p.add_argument("project", metavar="PROJECT")

    record = sub.add_parser("record", help="show one record", parents=[common])
    rsub = record.add_subparsers(dest="record_command", metavar="COMMAND", parser_class=Parser)
    rsub.required = True
    p = rsub.add_parser("show", parents=[common], help="one record, decoded")
    p.set_defaults(func=cmd_record_show)
    p.add_argument("record", metavar="RECORD")
    p.add_argument("--raw", action="store_true", help="its canonical bytes, as hex")
