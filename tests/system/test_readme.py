"""README's "Try it" block, run as a newcomer pastes it: bash, at the repository root.

The block must run to its end without an error or a traceback, the three nodes must agree on
the project's shares, and every node it started must be stopped by the block itself.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest
from system_harness import REPO, _env

COMMONS = REPO / ".venv" / "bin" / "commons"
#: Seconds the whole block may take (three nodes, about twenty commands on 2 loaded cores).
BLOCK_TIMEOUT = 300.0
#: What the test adds after the block: the pids it started, and each home's shares as JSON.
CHECKS = """
echo "PIDS: $PIDS"
for n in alice bob carol; do echo "SHARES $n $($C --home $D/$n shares $P --json)"; done
"""


def try_it_block() -> str:
    """The first ``sh`` code block of README's "Try it" section."""
    section = (REPO / "README.md").read_text().split("\n## Try it", 1)[1]
    match = re.search(r"```sh\n(.*?)\n```", section, re.S)
    assert match, "README's Try it section has no ```sh block"
    return match.group(1)


def _started_pids(tmp: Path) -> set[int]:
    """The pids that the nodes under ``tmp`` wrote to their node.json (still running)."""
    pids = set()
    for info in tmp.rglob("node.json"):
        try:
            pids.add(int(json.loads(info.read_text())["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not COMMONS.exists(), reason="needs .venv/bin/commons (scripts/setup)")
def test_readme_try_it_runs_as_pasted(tmp_path: Path) -> None:
    env = _env()
    env["TMPDIR"] = str(tmp_path)  # where the block's `mktemp -d` puts the homes
    proc = subprocess.Popen(
        ["bash", "-c", try_it_block() + "\n" + CHECKS],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=BLOCK_TIMEOUT)
    finally:
        # Whatever happened, no node of this test outlives it: stop those still running.
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        leftover = {pid for pid in _started_pids(tmp_path) if _alive(pid)}
        for pid in leftover:
            os.kill(pid, signal.SIGKILL)
    logs = "\n".join(p.read_text() for p in tmp_path.rglob("*.log"))
    report = f"stdout:\n{out}\nstderr:\n{err}\nlogs:\n{logs[-5000:]}"
    assert proc.returncode == 0, report
    assert "Traceback" not in out + err + logs, report
    assert "error:" not in err, report

    # Every node the block started is stopped when the block ends.
    started = re.search(r"^PIDS: (.*)$", out, re.M)
    assert started is not None, report
    pids = [int(p) for p in started[1].split()]
    assert len(pids) == 3, report
    assert not leftover, f"nodes still running after the block: {leftover}\n{report}"
    assert not any(_alive(pid) for pid in pids), report

    # The block's last loop prints the same shares table three times, once per node, after
    # the lines of the `sync` loop before it.
    lines = out.split("PIDS: ")[0].rstrip("\n").split("\n")
    syncs = [i for i, line in enumerate(lines) if line.startswith("synced with")]
    assert syncs, report
    tables = lines[syncs[-1] + 1 :]
    third = len(tables) // 3
    assert third > 0, report
    assert tables[:third] == tables[third : 2 * third] == tables[2 * third :], report

    shares = {
        name: json.loads(value) for name, value in re.findall(r"^SHARES (\w+) (.*)$", out, re.M)
    }
    assert set(shares) == {"alice", "bob", "carol"}, report
    assert shares["alice"] == shares["bob"] == shares["carol"], report
    (bob,) = shares["alice"]  # Bob's one contribution: six hours, endorsed with weight 3
    assert bob["contributions"] == 1, report
    assert bob["claimed_minutes"] == 360, report
    assert bob["share"] == 1.0, report
