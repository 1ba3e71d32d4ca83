"""``commons backup FILE`` and ``commons restore FILE``: a consistent copy of the store, taken
while the node runs or not, and its return into a new home (see :mod:`node.store.backup`)."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

from node.cli.errors import CommandError
from node.cli.output import emit, home_of
from node.cli.parser import add_command
from node.home import HomeError
from node.store.backup import BackupError, backup, restore

__all__ = ["register"]


def cmd_backup(args: argparse.Namespace) -> int:
    home = home_of(args)
    try:
        home.require()
        result = backup(home.store_path, Path(args.file))
    except (HomeError, BackupError) as exc:
        raise CommandError(str(exc)) from None
    emit(
        args,
        {
            "file": str(result.path),
            "records": result.records,
            "bytes": result.bytes,
            "steps": result.steps,
            "longest_step_ms": round(result.longest_step_ms, 3),
        },
        f"{result.path}: {result.records} records, {result.bytes} bytes "
        f"(copied in {result.steps} steps, the longest {result.longest_step_ms:.1f} ms)",
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    home = home_of(args)
    if home.running_node() is not None:
        raise CommandError(f"a node is running for {home.path}: stop it before a restore")
    try:
        home.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        records = restore(Path(args.file), home.store_path)
    except BackupError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot create {home.path}: {exc.strerror}") from None
    hint = (
        ""
        if home.exists()
        else "\nthis home has no identity yet: copy the old identity.key into it (mode 0600) "
        "to keep the node's peer id, or run `commons init` for a new one"
    )
    emit(
        args,
        {"home": str(home.path), "records": records},
        f"{home.path}: restored {records} records from {args.file}{hint}",
    )
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add = partial(add_command, sub, common)
    p = add(
        "backup",
        cmd_backup,
        "copy the store into FILE, consistently, while the node runs or not",
    )
    p.add_argument("file", metavar="FILE", help="the new file (an existing one is never replaced)")
    p = add(
        "restore",
        cmd_restore,
        "put a backup in place as the store of a new home (one that holds no record)",
    )
    p.add_argument("file", metavar="FILE", help="a file written by `commons backup`")
