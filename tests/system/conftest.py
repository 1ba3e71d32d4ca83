"""Fixtures for the system tests: separate ``commons node run`` processes on loopback.

The helpers live in ``system_harness.py``; this file holds the ``nodes`` fixture, which stops
every process a test started (by pid, even when the test failed), and the report hook that
appends the nodes' logs and the CLI calls made to the report of a failed test.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from system_harness import Nodes, node_factory

NODES_KEY = pytest.StashKey[Nodes]()


@pytest.fixture
def nodes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Nodes]:
    """Homes and nodes for one test (``node_factory``: every process is stopped by pid,
    even when the test failed, and must have exited cleanly)."""
    with node_factory(tmp_path) as factory:
        request.node.stash[NODES_KEY] = factory
        yield factory


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    factory = item.stash.get(NODES_KEY, None)
    if factory is not None and report.failed:
        for node in factory.all:
            if node.starts:
                report.sections.append((f"node log: {node.name} ({report.when})", node.log()))
        if factory.cli_log.calls:
            report.sections.append((f"CLI calls ({report.when})", factory.cli_log.text()))
    return report
