"""Reading commands: ``project list/show``, ``ledger``, ``shares``, ``record show``.

With a node running for the home they ask its API, whose views are kept warm (a large
project's ledger: 4 ms, where folding it here from the store takes seconds); without one, or
when its API does not answer, they fold the views here from the store. Both give the same JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlencode

from node.cli.client import NodeUnreachable, running_client
from node.cli.errors import CommandError
from node.cli.output import emit, home_of, id_prefix
from node.cli.parser import Parser, add_command
from node.cli.store_access import open_store
from node.textout import fmt_number, relative_time, short_peer, table, terminal_safe
from node.views.cache import ViewCache, ViewError, record_json
from protocol.record import Record

__all__ = ["register"]


def _views(args: argparse.Namespace, path: str, fn: Callable[[ViewCache], Any]) -> Any:
    """The JSON of one view: ``GET path`` from the running node, else ``fn`` over the store."""
    client = running_client(home_of(args))
    if client is not None:
        try:
            return client.get(path)
        except NodeUnreachable:
            pass  # node.json names a live process whose API does not answer: read the store
    with open_store(home_of(args)) as store:
        try:
            return fn(ViewCache(store, cache=False))
        except ViewError as exc:
            raise CommandError(str(exc)) from None


def _query(**params: Any) -> str:
    """A query string of the parameters that are set (``?a=1&b=x``), or nothing."""
    given = {k: v for k, v in params.items() if v is not None}
    return f"?{urlencode(given)}" if given else ""


def cmd_project_list(args: argparse.Namespace) -> int:
    projects = _views(args, "/api/v1/projects", lambda v: v.project_list())
    rows = [
        (p["id"][:12], p["name"], len(p["maintainers"]), p["contributions"], p["contributors"])
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
    pid = id_prefix(args.project)
    p = _views(args, f"/api/v1/projects/{pid}", lambda v: v.project_show(pid))
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
        f"contributions: {p['contributions']} live, by {p['contributors']} contributor(s)",
    ]
    emit(args, p, "\n".join(lines))
    return 0


def cmd_ledger(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        raise CommandError("--limit must be 0 or more")
    pid = id_prefix(args.project)
    entries = _views(
        args,
        f"/api/v1/projects/{pid}/ledger"
        + _query(author=args.author, type=args.type, limit=args.limit),
        lambda v: v.ledger(pid, author=args.author, type=args.type, limit=args.limit),
    )
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
    return 0


def cmd_shares(args: argparse.Namespace) -> int:
    pid = id_prefix(args.project)
    shares = _views(args, f"/api/v1/projects/{pid}/shares", lambda v: v.shares(pid))
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
    rid = id_prefix(args.record)

    def local(v: ViewCache) -> dict[str, Any]:
        record: Record = v.record(rid)
        return {"id": record.id.hex(), "raw": record.raw.hex()} if args.raw else record_json(record)

    value = _views(args, f"/api/v1/records/{rid}" + _query(raw=1 if args.raw else None), local)
    text = value["raw"] if args.raw else json.dumps(value, indent=2, ensure_ascii=False)
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
    p.add_argument("--type", metavar="TYPE")
    p.add_argument("--limit", type=int, metavar="N")

    p = add("shares", cmd_shares, "a project's open value accounting")
    p.add_argument("project", metavar="PROJECT")

    record = sub.add_parser("record", help="show one record", parents=[common])
    rsub = record.add_subparsers(dest="record_command", metavar="COMMAND", parser_class=Parser)
    rsub.required = True
    p = rsub.add_parser("show", parents=[common], help="one record, decoded")
    p.set_defaults(func=cmd_record_show)
    p.add_argument("record", metavar="RECORD")
    p.add_argument("--raw", action="store_true", help="its canonical bytes, as hex")
