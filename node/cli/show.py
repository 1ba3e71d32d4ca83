"""Reading commands: ``project list/show``, ``ledger``, ``shares``, ``record show``.

With a node running for the home they ask its API, whose views are kept warm (a large
project's ledger: 4 ms, where folding it here from the store takes seconds); without one, or
when its API does not answer, they fold the views here from the store. Both give the same JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlencode

from node.cli.client import NodeUnreachable, running_client
from node.cli.errors import CommandError
from node.cli.output import emit, home_of, id_prefix
from node.cli.parser import PROJECT_HELP, RECORD_HELP, Parser, add_command
from node.cli.store_access import home_follow, open_store
from node.textout import (
    date_time,
    fmt_number,
    person,
    short_peers,
    table,
    terminal_safe,
)
from node.views.cache import MAX_LEDGER_LIMIT, LedgerPage, ViewCache, ViewError
from node.views.details import names, record_detail
from protocol.record import CONTRIBUTION_TYPES, Record

__all__ = ["register"]


def _views(args: argparse.Namespace, path: str, fn: Callable[[ViewCache], Any]) -> Any:
    """The JSON of one view: ``GET path`` from the running node, else ``fn`` over the store."""
    client = running_client(home_of(args))
    if client is not None:
        try:
            return client.get(path)
        except NodeUnreachable:
            pass  # node.json names a live process whose API does not answer: read the store
    return _local(args, fn)


def _local(args: argparse.Namespace, fn: Callable[[ViewCache], Any]) -> Any:
    """``fn`` over the home's store, with the home's follow list."""
    home = home_of(args)
    with open_store(home) as store:
        try:
            return fn(ViewCache(store, cache=False, follow=home_follow(home, store)))
        except ViewError as exc:
            raise CommandError(str(exc)) from None


def _query(**params: Any) -> str:
    """A query string of the parameters that are set (``?a=1&b=x``), or nothing."""
    given = {k: v for k, v in params.items() if v is not None}
    return f"?{urlencode(given)}" if given else ""


def _names(args: argparse.Namespace) -> dict[str, str]:
    """Display names for a text table (none under ``--json``, whose output has peer ids).

    Read from the home's store, which a running node shares (SQLite allows readers beside its
    writer): the profiles are a small part of the meta scope, unlike a project's fold."""
    if args.json:
        return {}
    with open_store(home_of(args)) as store:
        return names(store)


def _maintainers(peers: list[str], who: dict[str, str]) -> str:
    """The first maintainers by name (or short id), and how many more."""
    shown = [person(m, who, peers) for m in peers[:2]]
    more = f" +{len(peers) - 2}" if len(peers) > 2 else ""
    return ", ".join(shown) + more


def cmd_project_list(args: argparse.Namespace) -> int:
    projects = _views(args, "/api/v1/projects", lambda v: v.project_list())
    who = _names(args)
    rows = [
        (
            p["id"][:12],
            p["name"],
            _maintainers(p["maintainers"], who),
            p["contributions"] if p["followed"] else "not followed",
            p["contributors"] if p["followed"] else "-",
        )
        for p in projects
    ]
    text = (
        table(["ID", "NAME", "MAINTAINERS", "CONTRIBUTIONS", "CONTRIBUTORS"], rows, right=(3, 4))
        if rows
        else "no projects yet: create one with `commons project create NAME`"
    )
    emit(args, projects, text)
    return 0


def cmd_project_show(args: argparse.Namespace) -> int:
    pid = id_prefix(args.project)
    p = _views(args, f"/api/v1/projects/{pid}", lambda v: v.project_show(pid))
    who = _names(args)
    # Single-line fields are escaped as such: a newline in a name (held from before the
    # format refused it) must not forge a line of its own.
    one = terminal_safe
    lines = [
        f"{one(p['name'])}  ({p['id']})",
        *([terminal_safe(p["description"], multiline=True)] if p.get("description") else []),
        f"license:       {one(p['license'] or '-')}",
        f"links:         {', '.join(map(one, p['links'])) or '-'}",
        f"tags:          {', '.join(map(one, p['tags'])) or '-'}",
        f"maintainers:   {', '.join(_full_person(m, who) for m in p['maintainers'])}",
        f"contributions: {p['contributions']} live, by {p['contributors']} contributor(s)"
        if p["followed"]
        else "contributions: not followed (this node does not follow this project, so it "
        "may hold only part of it)",
    ]
    emit(args, p, "\n".join(lines))
    return 0


def _full_person(peer: str, who: dict[str, str]) -> str:
    """A peer id in full, with its display name (escaped) when it has one."""
    name = who.get(peer)
    return f"{terminal_safe(name)} ({peer})" if name else peer


def _ledger_page(args: argparse.Namespace, pid: str) -> LedgerPage:
    """One page of the ledger: from the running node (its paging in the answer's headers),
    else from the store."""
    query = _query(author=args.author, type=args.type, limit=args.limit, cursor=args.cursor)
    client = running_client(home_of(args))
    if client is not None:
        try:
            entries, headers = client.get_with_headers(f"/api/v1/projects/{pid}/ledger{query}")
        except NodeUnreachable:
            pass  # read the store
        else:
            total = headers.get("x-total-count", "")
            return LedgerPage(
                entries=entries,
                total=int(total) if total.isdigit() else len(entries),
                next_cursor=headers.get("x-next-cursor") or None,
            )
    page: LedgerPage = _local(
        args,
        lambda v: v.ledger_page(
            pid, author=args.author, type=args.type, limit=args.limit, cursor=args.cursor
        ),
    )
    return page


def _credited(peers: list[str], who: dict[str, str], shorts: dict[str, str]) -> str:
    """Whom an attested entry credits, as the ledger's FOR column shows it: the first by
    name (or short id, or short handle), and how many more."""
    if not peers:
        return ""
    more = f" +{len(peers) - 1}" if len(peers) > 1 else ""
    return person(peers[0], who, short=shorts[peers[0]]) + more


def cmd_ledger(args: argparse.Namespace) -> int:
    if args.limit is not None and not 1 <= args.limit <= MAX_LEDGER_LIMIT:
        raise CommandError(f"--limit must be 1..{MAX_LEDGER_LIMIT}, not {args.limit}")
    pid = id_prefix(args.project)
    page = _ledger_page(args, pid)
    entries = page.entries
    who = _names(args)
    authors = [e["author"] for e in entries]
    # Attested entries (an imported history) are signed by a maintainer for someone else:
    # a column says whom each credits (a handle, or the person who claimed it).
    attested = any("credited" in e for e in entries)
    credited = [p for e in entries for p in e.get("credited", ())]
    shorts = short_peers(credited)
    rows = [
        (
            e["id"][:12],
            date_time(e["ts"]),
            person(e["author"], who, authors),
            *((_credited(e.get("credited", ()), who, shorts),) if attested else ()),
            e["type"],
            e["title"],
            "" if e["effort_minutes"] is None else fmt_number(e["effort_minutes"]),
            e["endorsed_weight"],
        )
        for e in entries
    ]
    headers = ["ID", "WHEN (UTC)", "AUTHOR", *(["FOR"] if attested else []), "TYPE", "TITLE"]
    text = (
        table([*headers, "MINUTES", "WEIGHT"], rows, right=(len(headers), len(headers) + 1))
        if rows
        else "no live contributions"
    )
    emit(args, entries, text)
    if page.next_cursor is not None or (args.cursor and entries):
        # On stderr, so that ``--json`` stays the list the contract promises.
        more = f"; next: --cursor {page.next_cursor}" if page.next_cursor else ""
        print(f"showing {len(entries)} of {page.total}{more}", file=sys.stderr)
    return 0


#: What ``shares`` prints under its table and in its ``--help``: what each column means.
SHARES_LEGEND = (
    "CONTRIBUTIONS: live contributions the contributor authored or coauthored. "
    "CLAIMED: the effort those contributions claim, split evenly among their participants "
    "(minutes, shown as hours and minutes). "
    "ENDORSED VALUE: claimed minutes times the endorsed weight (the sum of the weights of the "
    "maintainers' counting endorsements, 1 to 10 each), split the same way; its unit is the "
    "minute-weight. SHARE: the contributor's endorsed value over the project's total."
)


def _hours(minutes: float) -> str:
    """Minutes for people: ``45 min``, ``2 h 05 min``; fractions of a minute to 2 places."""
    if minutes < 60:
        return f"{fmt_number(minutes)} min"
    hours = int(minutes // 60)
    return f"{hours} h {fmt_number(minutes - 60 * hours)} min"


def cmd_shares(args: argparse.Namespace) -> int:
    pid = id_prefix(args.project)
    shares = _views(args, f"/api/v1/projects/{pid}/shares", lambda v: v.shares(pid))
    who = _names(args)
    shorts = short_peers([s["contributor"] for s in shares])
    rows = [
        (
            person(s["contributor"], who, short=shorts[s["contributor"]]),
            s["contributions"],
            _hours(s["claimed_minutes"]),
            fmt_number(s["endorsed_value"]),
            f"{100 * s['share']:.1f}%",
        )
        for s in shares
    ]
    text = (
        table(
            ["CONTRIBUTOR", "CONTRIBUTIONS", "CLAIMED", "ENDORSED VALUE (min x weight)", "SHARE"],
            rows,
            right=(1, 2, 3, 4),
        )
        + "\n\n"
        + SHARES_LEGEND
        if rows
        else "no live contributions"
    )
    emit(args, shares, text)
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    pid = id_prefix(args.project)
    claims = _views(args, f"/api/v1/projects/{pid}/claims", lambda v: v.claims(pid))
    who = _names(args)
    people = [c["person"] for c in claims]
    rows = [
        (
            c["id"][:16],
            terminal_safe(c["handle"]),
            person(c["person"], who, people),
            c["status"],
            c["contributions"],
            "SSH" if c["proof"] else "",
            ", ".join(person(m, who, people) for m in c["confirmed_by"]),
        )
        for c in claims
    ]
    waiting = [c for c in claims if c["status"] == "pending"]
    text = (
        table(
            ["CLAIM", "HANDLE", "CLAIMANT", "STATUS", "CONTRIBUTIONS", "PROOF", "CONFIRMED BY"],
            rows,
            right=(4,),
        )
        + f"\n\n{len(waiting)} pending: a maintainer confirms one with: commons confirm-claim CLAIM"
        if rows
        else "no claims"
    )
    emit(args, claims, text)
    return 0


def cmd_record_show(args: argparse.Namespace) -> int:
    rid = id_prefix(args.record)

    def local(v: ViewCache) -> dict[str, Any]:
        record: Record = v.record(rid)
        if args.raw:
            return {"id": record.id.hex(), "raw": record.raw.hex()}
        return record_detail(v, record)

    value = _views(args, f"/api/v1/records/{rid}" + _query(raw=1 if args.raw else None), local)
    if args.raw:
        emit(args, value, value["raw"])
        return 0
    # The record itself as record_json has it, then where it went.
    plain = {k: value[k] for k in ("id", "kind", "author", "ts", "project", "body") if k in value}
    text = json.dumps(plain, indent=2, ensure_ascii=False)
    emit(args, value, "\n".join([text, *_detail_lines(value)]))
    return 0


def _named(peer: str, name: str | None) -> str:
    return f"{terminal_safe(name)} ({peer})" if name else peer


def _detail_lines(value: dict[str, Any]) -> list[str]:
    """``record show``'s text after the record: who wrote it, when, and what it counts for."""
    lines = [
        "",
        f"author: {_named(value['author'], value.get('author_name'))}",
        f"when:   {date_time(value['ts'])} UTC",
    ]
    if "counts" in value:  # an endorsement
        verdict = "yes" if value["counts"] else f"no: {value['why_not_counted']}"
        lines.append(f"counts: {verdict}")
    if "endorsements" not in value:
        return lines
    retraction = value["retraction"]
    if retraction is not None:
        reason = terminal_safe(retraction["reason"] or "no reason given")
        lines.append(
            f"retracted: {date_time(retraction['ts'])} UTC by {retraction['id'][:12]} ({reason})"
        )
    rows = [
        (
            person(e["author"], {e["author"]: e["author_name"]} if e["author_name"] else {}),
            e["weight"],
            date_time(e["ts"]),
            "yes" if e["counts"] else f"no: {e['why_not_counted']}",
            e["comment"] or "",
        )
        for e in value["endorsements"]
    ]
    lines.append("")
    if rows:
        lines.append(table(["ENDORSED BY", "WEIGHT", "WHEN (UTC)", "COUNTS", "COMMENT"], rows))
    else:
        lines.append("no endorsements")
    counts = value["counts_for"]
    lines += [
        "",
        f"counts for: {fmt_number(counts['claimed_minutes'])} claimed minutes x endorsed weight "
        f"{value['endorsed_weight']} = {fmt_number(counts['endorsed_value'])} endorsed value, "
        f"{100 * counts['share_of_project']:.1f}% of the project's",
    ]
    shares = [
        (
            person(p["peer_id"], {p["peer_id"]: p["name"]} if p["name"] else {}),
            fmt_number(p["claimed_minutes"]),
            fmt_number(p["endorsed_value"]),
        )
        for p in counts["participants"]
    ]
    if shares:
        lines.append(table(["PARTICIPANT", "CLAIMED MIN", "ENDORSED VALUE"], shares, right=(1, 2)))
    return lines


def register_project(psub: Any, common: argparse.ArgumentParser) -> None:
    """``project list`` and ``project show``, in the ``project`` group."""
    p = psub.add_parser("list", parents=[common], help="projects held, with counts")
    p.set_defaults(func=cmd_project_list)
    p = psub.add_parser("show", parents=[common], help="one project's current state")
    p.set_defaults(func=cmd_project_show)
    p.add_argument("project", metavar="PROJECT", help=PROJECT_HELP)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add = partial(add_command, sub, common)
    p = add(
        "ledger",
        cmd_ledger,
        "a project's live contributions, newest first, with their endorsed weight",
    )
    p.add_argument("project", metavar="PROJECT", help=PROJECT_HELP)
    p.add_argument(
        "--author",
        metavar="WHO",
        help="only those in which this peer id's person is author or coauthor, or those"
        " recorded on behalf of this handle (email:ADDRESS, forge:HOST/USER, orcid:ID),"
        " claimed or not",
    )
    p.add_argument(
        "--type",
        choices=sorted(CONTRIBUTION_TYPES),
        metavar="TYPE",
        help="only contributions of this type: " + ", ".join(sorted(CONTRIBUTION_TYPES)),
    )
    p.add_argument("--limit", type=int, metavar="N", help="at most N entries (default 1000)")
    p.add_argument(
        "--cursor", metavar="ID", help="start after this entry (the `next:` of a previous page)"
    )

    p = add(
        "shares",
        cmd_shares,
        "a project's open value accounting, one line per contributor",
        epilog=SHARES_LEGEND,
    )
    p.add_argument("project", metavar="PROJECT", help=PROJECT_HELP)

    p = add(
        "claims",
        cmd_claims,
        "a project's claims of handles and their status (pending, confirmed, proven, "
        "disputed, overruled, withdrawn)",
    )
    p.add_argument("--project", required=True, metavar="PROJECT", help=PROJECT_HELP)

    record = sub.add_parser("record", help="show one record", parents=[common])
    rsub = record.add_subparsers(dest="record_command", metavar="COMMAND", parser_class=Parser)
    rsub.required = True
    p = rsub.add_parser("show", parents=[common], help="one record, decoded")
    p.set_defaults(func=cmd_record_show)
    p.add_argument("record", metavar="RECORD", help=RECORD_HELP)
    p.add_argument("--raw", action="store_true", help="its canonical bytes, as hex")
