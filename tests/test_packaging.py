"""The wheel: exactly the packages `protocol` and `node` and the `commons` script; the protocol
library installs and works with only what it imports, and `commons` without the node's extra
says, in one line, what to install.

The protocol-only environment is a fresh virtual environment holding the wheel (installed with
``--no-deps``) and, through a ``.pth`` file, links to exactly the installed distributions that
msgpack, PyNaCl and cryptography need (cffi, pycparser): what ``pip install commons-ledger``
gives, built without a network.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from node.cli.main import NODE_DEPENDENCIES

ROOT = Path(__file__).resolve().parent.parent
#: What the protocol library imports, as distribution names.
PROTOCOL_DEPENDENCIES = {"msgpack", "pynacl", "cryptography"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("commons_ledger-*.whl")
    return built


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.parser.Parser().parsestr(z.read(name).decode())


def test_wheel_contains_exactly_protocol_and_node(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = z.read(entry_points).decode()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"protocol", "node"}
    assert "protocol/py.typed" in names
    # Every module of both packages, sub-packages included (pyproject lists them by name).
    root = Path(__file__).resolve().parents[1]
    sources = {
        str(f.relative_to(root))
        for package in ("protocol", "node")
        for f in (root / package).rglob("*.py")
    }
    assert sources <= set(names), sorted(sources - set(names))
    assert "commons = node.cli.main:main" in scripts
    # The dashboard's templates and assets ride in the wheel: no network at run time.
    web = ROOT / "node/web"
    assets = {
        str(f.relative_to(ROOT))
        for folder in ("templates", "static")
        for f in (web / folder).iterdir()
    }
    assert assets <= set(names), sorted(assets - set(names))
    # The license travels with the wheel.
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    # No test, script, example or stray package rides along.
    forbidden = ("tests/", "scripts/", "examples/", "docs/", "interop/", "stubs/")
    assert not [n for n in names if n.startswith(forbidden)]


def test_only_the_protocol_dependencies_are_unconditional(wheel: Path) -> None:
    requirements = [Requirement(r) for r in _metadata(wheel).get_all("Requires-Dist") or []]
    always = {r.name.lower() for r in requirements if r.marker is None}
    assert always == PROTOCOL_DEPENDENCIES
    node_extra = {r.name.lower() for r in requirements if r.marker == _extra("node")}
    # The CLI's list of modules to look for is the extra's list of distributions.
    assert node_extra == set(NODE_DEPENDENCIES)
    # The tests start nodes: installing the test extra installs the node extra.
    test_extra = [r for r in requirements if r.marker == _extra("test")]
    assert any(r.name == "commons-ledger" and r.extras == {"node"} for r in test_extra)


def _extra(name: str) -> object:
    return Requirement(f'x; extra == "{name}"').marker


def _closure(names: set[str]) -> set[str]:
    """The installed distributions ``names`` need (without extras), ``names`` included."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name.lower())
    return seen


def _link_distributions(names: set[str], into: Path) -> None:
    """Symlink the top-level files and folders of these installed distributions into ``into``."""
    into.mkdir()
    for name in names:
        dist = importlib.metadata.distribution(name)
        site = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or []}
        for top in tops - {"..", "__pycache__"}:
            if not (into / top).exists():
                (into / top).symlink_to(site / top)


@pytest.fixture(scope="module")
def protocol_only(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and only the protocol's dependencies; its bin folder."""
    root = tmp_path_factory.mktemp("protocol-only")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(python), "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    deps = root / "deps"
    _link_distributions(_closure(PROTOCOL_DEPENDENCIES), deps)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "protocol-dependencies.pth").write_text(f"{deps}\n")
    return venv / "bin"


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


USE_PROTOCOL = """
import importlib.util, sys
from pathlib import Path
for name in ("trio", "libp2p", "starlette", "hypercorn", "httpx", "pytest"):
    assert importlib.util.find_spec(name) is None, f"{name} is importable: not protocol-only"
import protocol
from protocol import (
    BundleReader, ContributionBody, Negentropy, NegentropyStorage, ProjectBody, ProjectView,
    SigningKey, encode_bundle, parse_record, sign_record,
)
assert Path(protocol.__file__).is_relative_to(sys.prefix), protocol.__file__
key = SigningKey.generate()
project = sign_record(key, body=ProjectBody(name="Embedded"), ts=1000)
work = sign_record(
    key, body=ContributionBody(type="code", title="Port", effort_minutes=90), ts=2000,
    project=project.id,
)
raws = BundleReader().feed(encode_bundle([project.raw, work.raw]))
records = [parse_record(raw, now_ms=3000) for raw in raws]
view = ProjectView.build(records[0], records)
(entry,) = view.live_contributions()
assert entry.author_peer_id == key.peer_id
ours, theirs = Negentropy(NegentropyStorage([(r.ts, r.id) for r in records])), None
theirs = Negentropy(NegentropyStorage())
message = ours.initiate()
while message is not None:
    message = ours.reconcile(theirs.reconcile(message))
assert sorted(ours.have) == sorted(r.id for r in records)
print("protocol", protocol.__version__, "ok")
"""


def test_protocol_alone_installs_and_works(protocol_only: Path, tmp_path: Path) -> None:
    result = _run([str(protocol_only / "python"), "-c", USE_PROTOCOL], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "protocol 0.1.0 ok"


def test_the_sign_and_verify_example_runs_on_protocol_alone(
    protocol_only: Path, tmp_path: Path
) -> None:
    example = ROOT / "examples" / "sign_and_verify.py"
    result = _run([str(protocol_only / "python"), str(example)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stdout


@pytest.mark.parametrize("argv", [["id"], ["node", "run"], ["--help"], []])
def test_commons_without_the_node_extra_says_what_to_install(
    protocol_only: Path, tmp_path: Path, argv: list[str]
) -> None:
    result = _run([str(protocol_only / "commons"), *argv], tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert "pip install 'commons-ledger[node]'" in line
    for name in NODE_DEPENDENCIES:
        assert name in line
