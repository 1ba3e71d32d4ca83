"""The wheel installs exactly the packages `protocol` and `node`, and the `commons` script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_exactly_protocol_and_node(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("commons_ledger-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = z.read(entry_points).decode()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"protocol", "node"}
    assert "protocol/py.typed" in names
    assert "commons = node.cli:main" in scripts
    # No test, script or stray package rides along.
    forbidden = ("tests/", "scripts/", "examples/", "docs/", "interop/", "stubs/")
    assert not [n for n in names if n.startswith(forbidden)]
