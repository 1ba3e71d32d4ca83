"""The home's identity: ``init`` and ``id``."""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

from node.cli.author import author
from node.cli.errors import CommandError
from node.cli.output import emit, home_of, identity
from node.cli.parser import add_command
from node.cli.store_access import open_store
from node.home import Home

__all__ = ["register"]


def cmd_init(args: argparse.Namespace) -> int:
    home = home_of(args)
    created = not home.exists()
    try:
        if created:
            # Built beside its place and moved there whole: a failed step leaves nothing.
            with home.building() as staged:
                _fill(args, staged)
        else:
            _fill(args, home)  # complete what is missing; an existing identity is kept
    except OSError as exc:
        raise CommandError(f"cannot create {home.path}: {exc.strerror}") from None
    key = identity(home)
    word = "created" if created else "already initialised"
    emit(
        args,
        {"peer_id": key.peer_id, "home": str(home.path)},
        f"{home.path}: {word}\npeer id: {key.peer_id}",
    )
    return 0


def _fill(args: argparse.Namespace, home: Home) -> None:
    """Create what ``home`` lacks (identity, token, config, store) and author ``--name``."""
    home.init()
    identity(home)
    with open_store(home):
        pass
    if args.name:
        author(args, "profile", {"name": args.name}, "/api/v1/profiles", home=home)


def cmd_id(args: argparse.Namespace) -> int:
    key = identity(home_of(args))
    emit(
        args,
        {"peer_id": key.peer_id, "public_key": key.public_key.hex()},
        f"peer id:    {key.peer_id}\npublic key: {key.public_key.hex()}",
    )
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add = partial(add_command, sub, common)
    p = add("init", cmd_init, "create this home's identity, config and store (idempotent)")
    p.add_argument("--name", help="also publish a profile with this display name")
    add("id", cmd_id, "show this home's identity (peer id and public key)")
