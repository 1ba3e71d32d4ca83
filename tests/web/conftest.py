"""Fixtures for the browser tests: real ``commons node run`` processes (the system tests'
harness) and Debian's chromium driven by Playwright for Python.

``playwright install`` cannot download browsers here, so the tests launch the system's
``/usr/bin/chromium`` (``COMMONS_CHROMIUM`` names another binary). Without it, or without the
``playwright`` package, every test here is skipped with a message saying what to install;
``.ci/run`` installs chromium with apt and runs these tests as their own step. They are
marked ``web``, which the default ``pytest`` run deselects (pyproject.toml's addopts).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "system"))

from browser_harness import Tab
from system_harness import Nodes, node_factory

CHROMIUM = os.environ.get("COMMONS_CHROMIUM", "/usr/bin/chromium")


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: scripts/setup --test installs it"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"no chromium at {CHROMIUM}: apt-get install -y chromium (or set COMMONS_CHROMIUM)"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing is not None:
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Nodes]:
    """Homes and nodes for one test, stopped by pid at its end (see ``node_factory``)."""
    with node_factory(tmp_path) as factory:
        yield factory


@pytest.fixture
def tabs(browser: Any, nodes: Nodes) -> Iterator[list[Tab]]:
    """Browser contexts opened by a test (``open_tab``), closed before the nodes stop."""
    opened: list[Tab] = []
    yield opened
    for tab in opened:
        tab.close()
