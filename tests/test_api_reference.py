"""docs/API.md is the reference ``scripts/api-reference`` writes from the docstrings, now.

A docstring or signature of the public API that changed without a regeneration fails here;
run ``scripts/api-reference`` and commit docs/API.md with the change.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import protocol

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "api-reference"
API = ROOT / "docs" / "API.md"


def regenerate(hash_seed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--stdout"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("hash_seed", ["0", "1", "4242"])
def test_api_md_is_what_the_script_writes_now(hash_seed: str) -> None:
    # Several hash seeds: set-valued constants and defaults must not reorder the output.
    assert regenerate(hash_seed) == API.read_text(encoding="utf-8"), (
        "docs/API.md is out of date: run scripts/api-reference"
    )


def test_check_mode_agrees() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_exported_name_has_an_entry() -> None:
    headings = re.findall(r"^### `(?:class )?([A-Za-z_]\w*)", API.read_text(), re.M)
    exported = [name for name in protocol.__all__ if not name.startswith("__")]
    assert sorted(headings) == sorted(exported)
