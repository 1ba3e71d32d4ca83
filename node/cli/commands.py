"""The ``commons`` commands that work on a home folder and files, with or without a node."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from node.cli.bundlefile import BundleScan, scan_bundle
from node.cli.errors import CommandError
from node.cli.textout import Progress, terminal_safe
from node.home import Home, HomeError, resolve_home

__all__ = ["add_commands", "cmd_id", "cmd_init", "cmd_verify"]


def now_ms() -> int:
    return int(time.time() * 1000)


def emit(args: argparse.Namespace, value: Any, text: str) -> None:
    """Print ``value`` as JSON under ``--json``, else ``text`` for people.

    The JSON is ASCII (``json.dumps`` escapes the rest), and the text passes through
    :func:`terminal_safe`: whatever peer text a command forgot to escape line by line still
    reaches the terminal only as visible escapes."""
    if args.json:
        print(json.dumps(value))
    elif text:
        print(terminal_safe(text, multiline=True))


def home_of(args: argparse.Namespace) -> Home:
    return Home(resolve_home(args.home))


def identity(home: Home) -> Any:
    try:
        return home.signing_key()
    except HomeError as exc:
        raise CommandError(str(exc)) from None


# --------------------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    home = home_of(args)
    try:
        created = home.init()
    except OSError as exc:
        raise CommandError(f"cannot create {home.path}: {exc.strerror}") from None
    key = identity(home)
    from node.cli.store_access import open_store  # the store is created on first open

    with open_store(home):
        pass
    if args.name:
        from node.cli.commands_ledger import author

        author(args, "profile", {"name": args.name}, "/api/v1/profiles")
    word = "created" if created else "already initialised"
    emit(
        args,
        {"peer_id": key.peer_id, "home": str(home.path)},
        f"{home.path}: {word}\npeer id: {key.peer_id}",
    )
    return 0


def cmd_id(args: argparse.Namespace) -> int:
    key = identity(home_of(args))
    emit(
        args,
        {"peer_id": key.peer_id, "public_key": key.public_key.hex()},
        f"peer id:    {key.peer_id}\npublic key: {key.public_key.hex()}",
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    path = Path(args.file)
    scan = BundleScan()
    seen: set[bytes] = set()
    lines: list[str] = []
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    progress = Progress(f"verifying {path.name}", total=size)
    try:
        for verdict in scan_bundle(path, now_ms=now_ms(), progress=progress.advance):
            if verdict.record is None:
                scan.rejected.append({"index": verdict.index, "error": verdict.error})
                lines.append(f"record {verdict.index}: invalid: {verdict.error}")
            elif verdict.record.id in seen:
                scan.duplicates += 1
                lines.append(f"record {verdict.index}: duplicate of an earlier record")
            else:
                seen.add(verdict.record.id)
                scan.accepted += 1
                if not args.json and len(lines) < 10_000:
                    r = verdict.record
                    lines.append(f"record {verdict.index}: ok  {r.id.hex()[:16]}  {r.kind}")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        progress.finish()
    summary = f"{scan.accepted} valid, {scan.duplicates} duplicate, {len(scan.rejected)} invalid"
    emit(args, scan.to_json(), "\n".join([*lines, summary]))
    if scan.rejected:
        raise CommandError(
            f"{path}: {len(scan.rejected)} invalid record(s); first: {scan.rejected[0]['error']}"
        )
    return 0


def add_commands(add: Any, sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the remaining commands (store, authoring and node commands)."""
    from node.cli import commands_ledger
    from node.cli import tokens as commands_token

    commands_ledger.register(add, sub, common)
    commands_token.register(sub, common)
