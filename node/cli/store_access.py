"""Store access for commands that run without a node (or beside one: SQLite WAL allows it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from node.cli.errors import CommandError
from node.home import Home, HomeError
from node.moderation import effective_policy
from node.policy import Policy, PolicyError, policy_from_config
from node.store.sqlite import Store, StoreError
from node.views.follow import Follow, FollowError, resolve_follow

__all__ = ["home_follow", "home_policy", "open_store"]


@contextmanager
def open_store(home: Home) -> Iterator[Store]:
    """Open the home's store for one command; errors become one-line ``CommandError``."""
    try:
        home.require()
    except HomeError as exc:
        raise CommandError(str(exc)) from None
    try:
        store = Store.open(home.store_path)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    try:
        yield store
    finally:
        store.close()


def home_follow(home: Home, store: Store) -> Follow:
    """The projects this home's node follows: the running node's own list when one runs
    (it may have been given ``--follow``), else ``follow`` in config.toml."""
    info = home.running_node()
    if info is not None and "follow" in info:
        listed = info["follow"]
        if listed is None:
            return Follow()
        if isinstance(listed, list) and all(isinstance(p, str) for p in listed):
            try:
                return Follow(bytes.fromhex(p) for p in listed)
            except ValueError:
                pass  # a damaged node.json: fall back on the config
    try:
        return resolve_follow(store, home.config().follow)
    except (HomeError, FollowError) as exc:
        raise CommandError(f"config.toml: {exc}") from None


def home_policy(home: Home, store: Store) -> Policy:
    """The local policy of this home without a node: config.toml's ``[policy]`` and the
    operator's blocks kept in the store."""
    try:
        configured = policy_from_config(home.config())
    except HomeError as exc:
        raise CommandError(str(exc)) from None
    except PolicyError as exc:
        raise CommandError(f"config.toml: {exc}") from None
    return effective_policy(configured, store)
