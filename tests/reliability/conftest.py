"""Fixtures for the reliability tests (RELIABILITY.md says what each test proves).

``COMMONS_RELIABILITY=full`` (set by scripts/reliability) selects the long forms.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The process helpers of the system tests (tests/system/system_harness.py) are reused here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))

from system_harness import Nodes


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    """Homes and ``commons node run`` processes (system_harness.Nodes); every process the
    test started is stopped at teardown, by pid, even when the test failed."""
    factory = Nodes(tmp_path)
    try:
        yield factory
    finally:
        factory.shutdown()
