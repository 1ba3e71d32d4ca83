"""The ``commons`` commands for projects, records, the ledger, bundles and the running node."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from node.authoring import AuthoringError, draft, sign_draft
from node.cli.bundlefile import BundleScan, read_entries
from node.cli.client import SYNC_TIMEOUT, running_client
from node.cli.commands import emit, home_of, identity, now_ms
from node.cli.errors import CommandError
from node.cli.store_access import open_store
from node.cli.textout import Progress, fmt_number, relative_time, short_peer, table, terminal_safe
from node.home import HomeError
from node.sync.ingest import validate_batch
from node.views.cache import ViewCache, ViewError, record_json
from protocol.bundle import BundleWriter
from protocol.errors import ProtocolError
from protocol.record import Record, parse_id_prefix

__all__ = ["register"]

#: Records validated and stored per batch by ``commons import``.
IMPORT_BATCH = 1000


# --------------------------------------------------------------------------------------------
# Authoring


def author(
    args: argparse.Namespace, action: str, fields: dict[str, Any], path: str
) -> tuple[dict[str, Any], str]:
    """Sign and store a record: through the running node's API if there is one, else locally.

    Returns the record's JSON and how it was handled, for the caller to print.
    """
    home = home_of(args)
    fields = {k: v for k, v in fields.items() if v is not None and v != []}
    client = running_client(home)
    if client is not None:
        result = client.post(path, fields)
        how = "published"
    else:
        key = identity(home)
        with open_store(home) as store:
            try:
                d = draft(action, fields, store=store, author=key.public_key)
                record = sign_draft(key, d, now_ms=now_ms())
            except AuthoringError as exc:
                raise CommandError(str(exc)) from None
            _check_followed(home, d.project)
            store.add([record], published=False)
        result = record_json(record)
        how = "stored (no node is running: it spreads when the node next runs)"
    return result, how


def _check_followed(home: Any, project: bytes | None) -> None:
    """Refuse to author into a project the home's config does not follow: the node would
    neither gossip nor reconcile the record (the running node applies the same rule)."""
    try:
        follow = home.config().follow
    except HomeError as exc:
        raise CommandError(str(exc)) from None
    if project is None or not follow:
        return
    if not any(project.hex().startswith(f.lower()) for f in follow):
        raise CommandError(
            f"this home follows only {', '.join(f[:16] for f in follow)}: add project "
            f"{project.hex()} to `follow` in config.toml to author there"
        )


def _author(args: argparse.Namespace, action: str, fields: dict[str, Any], path: str) -> int:
    result, how = author(args, action, fields, path)
    emit(args, result, f"{result['kind']} {result['id']} {how}")
    return 0


def cmd_project_create(args: argparse.Namespace) -> int:
    fields = {
        "name": args.name,
        "description": args.description,
        "license": args.license,
        "links": args.link,
        "tags": args.tag,
        "maintainers": args.maintainer,
    }
    return _author(args, "project", fields, "/api/v1/projects")


def cmd_project_update(args: argparse.Namespace) -> int:
    project = _prefix(args.project)
    fields = {
        "project": project,
        "name": args.name,
        "description": args.description,
        "license": args.license,
        "links": args.link,
        "tags": args.tag,
        "add_maintainers": args.add_maintainer,
        "remove_maintainers": args.remove_maintainer,
    }
    if all(v is None or v == [] for k, v in fields.items() if k != "project"):
        raise CommandError("nothing to update: give at least one of the update options")
    api_fields = {k: v for k, v in fields.items() if k != "project"}
    if running_client(home_of(args)) is not None:
        return _author(args, "update", api_fields, f"/api/v1/projects/{project}/updates")
    return _author(args, "update", fields, "")


def cmd_contribute(args: argparse.Namespace) -> int:
    project = _prefix(args.project)
    fields: dict[str, Any] = {
        "type": args.type,
        "title": args.title,
        "description": args.description,
        "minutes": args.minutes,
        "hours": args.hours,
        "artifacts": args.artifact,
        "coauthors": args.coauthor,
    }
    if running_client(home_of(args)) is not None:
        return _author(args, "contribution", fields, f"/api/v1/projects/{project}/contributions")
    fields["project"] = project
    return _author(args, "contribution", fields, "")


def cmd_endorse(args: argparse.Namespace) -> int:
    fields = {"record": _prefix(args.record), "weight": args.weight, "comment": args.comment}
    return _author(args, "endorsement", fields, "/api/v1/endorsements")


def cmd_retract(args: argparse.Namespace) -> int:
    fields = {"record": _prefix(args.record), "reason": args.reason}
    return _author(args, "retraction", fields, "/api/v1/retractions")


def _prefix(text: str) -> str:
    try:
        return parse_id_prefix(text)
    except ProtocolError as exc:
        raise CommandError(exc.message) from None


# --------------------------------------------------------------------------------------------
# Views


def _views(args: argparse.Namespace, fn: Callable[[ViewCache], Any]) -> Any:
    with open_store(home_of(args)) as store:
        try:
            return fn(ViewCache(store, cache=False))
        except ViewError as exc:
            raise CommandError(str(exc)) from None


def cmd_project_list(args: argparse.Namespace) -> int:
    projects = _views(args, lambda v: v.project_list())
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
    p = _views(args, lambda v: v.project_show(_prefix(args.project)))
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
    entries = _views(
        args,
        lambda v: v.ledger(
            _prefix(args.project), author=args.author, type=args.type, limit=args.limit
        ),
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
    shares = _views(args, lambda v: v.shares(_prefix(args.project)))
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
    record: Record = _views(args, lambda v: v.record(_prefix(args.record)))
    if args.raw:
        emit(args, {"id": record.id.hex(), "raw": record.raw.hex()}, record.raw.hex())
        return 0
    value = record_json(record)
    text = json.dumps(value, indent=2, ensure_ascii=False)
    emit(args, value, text)
    return 0


# --------------------------------------------------------------------------------------------
# The running node


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


def cmd_node_run(args: argparse.Namespace) -> int:
    import trio

    from node.api.app import ApiStartError
    from node.net.transport import TransportError
    from node.runtime import NodeOptions, run_node

    home = home_of(args)
    _setup_logging(args.log_level, args.log_json)
    try:
        home.require()
        config = home.config()
        home.signing_key()
    except HomeError as exc:
        raise CommandError(str(exc)) from None
    follow = []
    for text in args.follow or config.follow:
        try:
            follow.append(bytes.fromhex(parse_id_prefix(text)))
        except (ProtocolError, ValueError):
            raise CommandError(f"--follow {text!r}: give a full 64-character project id") from None
        if len(follow[-1]) != 32:
            raise CommandError(f"--follow {text!r}: give a full 64-character project id")
    seed = args.seed or config.seed
    options = NodeOptions(
        listen=args.listen or config.listen,
        bootstrap=(args.bootstrap or []) + config.bootstrap,
        api=args.api if args.api is not None else config.api,
        mdns=config.mdns and not args.no_mdns,
        follow=[] if seed else follow,
        seed=seed,
        max_peers=config.seed_max_peers if seed else config.max_peers,
        sync_interval=config.sync_interval,
        gossip_rate=config.gossip_rate,
    )
    if home.running_node() is not None:
        raise CommandError(f"a node is already running for {home.path} (see node.json)")
    try:
        trio.run(run_node, home, options)
    except (ApiStartError, TransportError, OSError, ValueError) as exc:
        raise CommandError(f"the node stopped: {exc}") from None
    return 0


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


# --------------------------------------------------------------------------------------------
# Bundles


def cmd_export(args: argparse.Namespace) -> int:
    path = Path(args.file)
    home = home_of(args)
    count = 0
    with open_store(home) as store:
        if args.project:
            raws: list[bytes] = []
            for text in args.project:
                try:
                    pid = store.resolve_prefix(_prefix(text), kind="project")
                except ProtocolError as exc:
                    raise CommandError(f"--project {text}: {exc.message}") from None
                genesis, records = store.project_records(pid)
                assert genesis is not None
                raws.append(genesis.raw)
                raws.extend(r.raw for r in records)
            source: Any = iter(raws)
            total = len(raws)
        else:
            total = store.count()
            source = store.iter_raw()
        progress = Progress(f"exporting to {path.name}", total=total)
        tmp = path.with_name(path.name + ".partial")
        try:
            with tmp.open("wb") as f:
                f.write(BundleWriter.header())
                for raw in source:
                    f.write(BundleWriter.frame(raw))
                    count += 1
                    progress.advance()
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise CommandError(f"cannot write {path}: {exc.strerror}") from None
        finally:
            progress.finish()
    emit(args, {"records": count}, f"exported {count} records to {path}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    home = home_of(args)
    scan = BundleScan()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    progress = Progress(f"importing {path.name}", total=size)
    with open_store(home) as store:
        try:
            _import_into(store, path, scan, progress)
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from None
        finally:
            progress.finish()
    lines = [f"record {r['index']}: rejected: {r['error']}" for r in scan.rejected[:1000]]
    summary = (
        f"imported {scan.accepted} new records, {scan.duplicates} already held, "
        f"{len(scan.rejected)} rejected"
    )
    emit(args, scan.to_json(), "\n".join([*lines, summary]))
    if scan.rejected:
        raise CommandError(f"{len(scan.rejected)} record(s) rejected and not stored")
    return 0


def _import_into(store: Any, path: Path, scan: BundleScan, progress: Progress) -> None:
    """Read the bundle in batches, validate on two threads, store each batch in one commit.

    A record too large to read is refused by its index and the import goes on after it;
    framing damage stores the records before it, is reported as the last refusal, and ends
    the import.
    """
    from protocol.bundle import OversizedRecord
    from protocol.errors import BundleError

    pending: list[bytes] = []
    indexes: list[int] = []  # each pending record's index in the bundle
    clock = now_ms()

    def flush(executor: ThreadPoolExecutor) -> None:
        if not pending:
            return
        half = (len(pending) + 1) // 2
        parts = [(pending[:half], 0), (pending[half:], half)]
        futures = [executor.submit(validate_batch, part, clock, None) for part, _ in parts]
        good: list[Record] = []
        for (_, offset), future in zip(parts, futures, strict=True):
            ok, bad = future.result()
            good += [r for _, r in ok]
            for i, error in bad:
                scan.rejected.append({"index": indexes[offset + i], "error": error})
        for start in range(0, len(good), IMPORT_BATCH):
            flags = store.add(good[start : start + IMPORT_BATCH], published=True)
            new = sum(flags)
            scan.accepted += new
            scan.duplicates += len(flags) - new
        pending.clear()
        indexes.clear()

    index = 0
    with ThreadPoolExecutor(2) as executor:
        try:
            for entry in read_entries(path, progress.advance):
                if isinstance(entry, OversizedRecord):
                    scan.rejected.append({"index": index, "error": str(entry)})
                else:
                    pending.append(entry)
                    indexes.append(index)
                    if len(pending) >= IMPORT_BATCH:
                        flush(executor)
                index += 1
        except BundleError as exc:
            flush(executor)
            scan.rejected.append({"index": exc.index, "error": str(exc)})
        else:
            flush(executor)
    # Refusals of a batch are found when it is flushed, after the oversized records read
    # while it filled: put them back in file order.
    scan.rejected.sort(key=_by_index)


def _by_index(refusal: dict[str, Any]) -> int:
    index: int = refusal["index"]
    return index


# --------------------------------------------------------------------------------------------


def register(add: Any, sub: Any, common: argparse.ArgumentParser) -> None:
    from node.cli.main import _Parser

    # node
    node = sub.add_parser("node", help="run the node", description="run the node", parents=[common])
    node_sub = node.add_subparsers(dest="node_command", metavar="COMMAND", parser_class=_Parser)
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

    # project
    project = sub.add_parser(
        "project", help="create, update, list and show projects", parents=[common]
    )
    psub = project.add_subparsers(dest="project_command", metavar="COMMAND", parser_class=_Parser)
    psub.required = True
    p = psub.add_parser("create", parents=[common], help="author a project (its genesis record)")
    p.set_defaults(func=cmd_project_create)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--description", metavar="T")
    p.add_argument("--license", metavar="SPDX")
    p.add_argument("--link", action="append", metavar="URL")
    p.add_argument("--tag", action="append", metavar="T")
    p.add_argument(
        "--maintainer", action="append", metavar="PEER", help="another maintainer (you are one)"
    )
    p = psub.add_parser("update", parents=[common], help="author a project update")
    p.set_defaults(func=cmd_project_update)
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--name", metavar="T")
    p.add_argument("--description", metavar="T")
    p.add_argument("--license", metavar="SPDX")
    p.add_argument("--link", action="append", metavar="URL", help="replaces all links")
    p.add_argument("--tag", action="append", metavar="T", help="replaces all tags")
    p.add_argument("--add-maintainer", action="append", metavar="PEER")
    p.add_argument("--remove-maintainer", action="append", metavar="PEER")
    p = psub.add_parser("list", parents=[common], help="projects held, with counts")
    p.set_defaults(func=cmd_project_list)
    p = psub.add_parser("show", parents=[common], help="one project's current state")
    p.set_defaults(func=cmd_project_show)
    p.add_argument("project", metavar="PROJECT")

    p = add("contribute", cmd_contribute, "author a contribution to a project")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--type", required=True, metavar="TYPE", help="code, design, docs, ...")
    p.add_argument("--title", required=True, metavar="T")
    p.add_argument("--description", metavar="T")
    effort = p.add_mutually_exclusive_group()
    effort.add_argument("--minutes", type=int, metavar="N", help="effort in minutes")
    effort.add_argument("--hours", type=float, metavar="H", help="effort in hours")
    p.add_argument("--artifact", action="append", metavar="URI[@DIGEST]")
    p.add_argument("--coauthor", action="append", metavar="PEER")

    p = add("endorse", cmd_endorse, "endorse a contribution (as a maintainer)")
    p.add_argument("record", metavar="RECORD")
    p.add_argument("--weight", type=int, metavar="N", help="1..10 (default 1)")
    p.add_argument("--comment", metavar="T")

    p = add("retract", cmd_retract, "retract one of your contributions or endorsements")
    p.add_argument("record", metavar="RECORD")
    p.add_argument("--reason", metavar="T")

    p = add("ledger", cmd_ledger, "a project's live contributions, newest first")
    p.add_argument("project", metavar="PROJECT")
    p.add_argument("--author", metavar="PEER", help="only those with this author or coauthor")
    p.add_argument("--type", metavar="TYPE")
    p.add_argument("--limit", type=int, metavar="N")

    p = add("shares", cmd_shares, "a project's open value accounting")
    p.add_argument("project", metavar="PROJECT")

    record = sub.add_parser("record", help="show one record", parents=[common])
    rsub = record.add_subparsers(dest="record_command", metavar="COMMAND", parser_class=_Parser)
    rsub.required = True
    p = rsub.add_parser("show", parents=[common], help="one record, decoded")
    p.set_defaults(func=cmd_record_show)
    p.add_argument("record", metavar="RECORD")
    p.add_argument("--raw", action="store_true", help="its canonical bytes, as hex")

    add("peers", cmd_peers, "connected peers (needs a running node)")
    add("status", cmd_status, "whether the node runs, and what it holds")
    p = add("sync", cmd_sync, "reconcile now with all connected peers, or with one")
    p.add_argument("maddr", nargs="?", metavar="MADDR")

    p = add("export", cmd_export, "write records to a bundle file")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--project", action="append", metavar="PROJECT", help="only this project")
    p = add("import", cmd_import, "validate and store every record of a bundle file")
    p.add_argument("file", metavar="FILE")
