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
from node.home import Home, HomeError

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
    home = home_of(args)
    key = identity(home)
    addrs = advertised(home, key.peer_id)
    lines = [f"peer id:    {key.peer_id}", f"public key: {key.public_key.hex()}"]
    lines += [f"address:    {a}" for a in addrs] or [
        "address:    none known yet (the node listens on port 0 and is not running)"
    ]
    emit(
        args,
        {"peer_id": key.peer_id, "public_key": key.public_key.hex(), "addrs": addrs},
        "\n".join(lines),
    )
    return 0


def advertised(home: Home, peer_id: str) -> list[str]:
    """The full multiaddrs peers dial to reach this home's node (what a member pastes as
    ``--bootstrap``): the running node's own list, else what config.toml says it would
    advertise (``announce``, or the listen addresses of a fixed port less ``no_announce``)."""
    info = home.running_node()
    if info is not None and isinstance(info.get("addrs"), list):
        return [a for a in info["addrs"] if isinstance(a, str)]
    from node.net.addresses import AddressError, Announcement, expand_wildcards

    try:
        config = home.config()
        announcement = Announcement(peer_id, config.announce, config.no_announce)
    except (HomeError, AddressError) as exc:
        raise CommandError(f"config.toml: {exc}") from None
    fixed = []
    for addr in config.listen:
        try:
            fixed += expand_wildcards([addr]) if not addr.endswith("/tcp/0") else []
        except ValueError:
            continue  # a malformed listen address: `node run` says so
    return announcement.full(fixed)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add = partial(add_command, sub, common)
    p = add("init", cmd_init, "create this home's identity, config and store (idempotent)")
    p.add_argument("--name", help="also publish a profile with this display name")
    add(
        "id",
        cmd_id,
        "show this home's identity (peer id, public key) and the full addresses peers dial "
        "to reach its node (what a member passes as --bootstrap)",
    )
