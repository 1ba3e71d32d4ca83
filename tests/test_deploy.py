"""The deploy files: the systemd unit passes ``systemd-analyze verify`` and keeps its
hardening, and the unit and the container start the node with options the command has."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy/commons-seed.service"
CONTAINER = ROOT / "deploy/Containerfile"
#: Where the unit expects Commons installed (docs/OPERATING.md); the test points it at the
#: `commons` of the environment running the tests, which `systemd-analyze` checks exists.
INSTALLED = "/opt/commons/bin/commons"


def directives(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_is_hardened_and_stops_gracefully() -> None:
    unit = directives(UNIT.read_text())
    for key, value in {
        "User": "commons",
        "StateDirectory": "commons",
        "Environment": "COMMONS_HOME=/var/lib/commons",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert value in unit.get(key, []), f"{key}={value} missing"
    assert 10 <= int(unit["TimeoutStopSec"][0]) <= 90


def test_the_unit_and_the_container_run_real_commands() -> None:
    """The command lines of both files parse with the command's own parser."""
    unit = directives(UNIT.read_text())
    lines = unit["ExecStartPre"] + unit["ExecStart"]
    container = CONTAINER.read_text()
    (entry,) = re.findall(r'^ENTRYPOINT \["/bin/sh", "-c", "(.*)", "commons"\]$', container, re.M)
    # The shell's parts: `exec`, redirections and the arguments passed on ("$@") are not
    # the command's.
    shell = r'^exec | >/dev/null|\\"\$@\\"'
    lines += [re.sub(shell, "", part) for part in entry.split(" && ")]
    parser = build_parser()
    for line in lines:
        words = shlex.split(line)
        assert Path(words[0]).name == "commons", line
        parser.parse_args(words[1:])  # a usage error exits 2 and fails the test
    assert any("--seed" in line for line in lines)


def test_the_container_runs_unprivileged_with_its_home_on_a_volume() -> None:
    text = CONTAINER.read_text()
    (user,) = re.findall(r"^USER (\S+)$", text, re.M)
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r'^VOLUME \["/data"\]$', text, re.M)
    assert re.search(r"^ENV COMMONS_HOME=/data\b", text, re.M)
    (check,) = re.findall(r"^HEALTHCHECK .*(?:\n    .*)*", text, re.M)
    assert "/readyz" in check
    ignored = (ROOT / "deploy/Containerfile.dockerignore").read_text().splitlines()
    assert "*" in ignored  # only what the image needs goes into the build context
    for needed in ("pyproject.toml", "protocol/", "node/"):
        assert f"!{needed}" in ignored


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd): unit not verified")
    commons = Path(sys.executable).with_name("commons")
    assert commons.exists(), "the test environment has no commons script"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED, str(commons)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # A bad value is only a warning (exit 0): any output at all is a failure.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
