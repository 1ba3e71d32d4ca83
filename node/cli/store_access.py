"""Store access for commands that run without a node (or beside one: SQLite WAL allows it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from node.cli.errors import CommandError
from node.home import Home, HomeError
from node.store.sqlite import Store, StoreError

__all__ = ["open_store"]


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
