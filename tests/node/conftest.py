"""Fixtures shared by the in-process node tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node.store.sqlite import Store
from protocol.testing import RecordFactory


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """An empty store in the test's folder, closed afterwards."""
    with Store.open(tmp_path / "ledger.db") as opened:
        yield opened


@pytest.fixture
def f() -> RecordFactory:
    return RecordFactory()
