"""The command's files, in process: bundles through stdin and stdout, ``export`` that does
not overwrite without ``--force``, and an ``init`` that leaves no half home when it fails."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from node.cli import store_access
from node.cli.main import main
from node.store.sqlite import StoreError
from protocol.bundle import BundleWriter


def _home_with_records(root: Path, capsys: pytest.CaptureFixture[Any]) -> str:
    home = str(root / "src")
    assert main(["init", "--home", home]) == 0
    assert main(["project", "create", "One", "--home", home]) == 0
    assert main(["project", "create", "Two", "--home", home]) == 0
    capsys.readouterr()
    return home


def test_export_to_stdout_and_import_from_stdin(
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = _home_with_records(tmp_path, capsysbinary)

    assert main(["export", "-", "--home", src]) == 0
    out, err = capsysbinary.readouterr()
    # Standard output carries the bundle alone; the summary goes to stderr.
    assert out.startswith(BundleWriter.header())
    assert err == b"exported 2 records\n"

    dst = str(tmp_path / "dst")
    assert main(["init", "--home", dst]) == 0
    capsysbinary.readouterr()
    for command in ("verify", "import"):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(out)))
        assert main([command, "-", "--json", "--home", dst]) == 0, command
        result = json.loads(capsysbinary.readouterr().out)
        assert result["accepted"] == 2
        assert result["rejected"] == []
    assert main(["project", "list", "--json", "--home", dst]) == 0
    names = {p["name"] for p in json.loads(capsysbinary.readouterr().out)}
    assert names == {"One", "Two"}


def test_export_to_a_terminal_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _home_with_records(tmp_path, capsys)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["export", "-", "--home", home]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: a bundle is binary")


def test_export_does_not_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = _home_with_records(tmp_path, capsys)
    target = tmp_path / "ledger.bundle"
    target.write_bytes(b"precious")
    assert main(["export", str(target), "--home", home]) == 1
    assert "exists: give --force" in capsys.readouterr().err
    assert target.read_bytes() == b"precious"
    assert main(["export", str(target), "--force", "--home", home]) == 0
    assert target.read_bytes().startswith(BundleWriter.header())
    assert not list(tmp_path.glob("*.partial"))


def _left(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_init_refusing_its_name_leaves_no_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "deep" / "er" / "home"
    assert main(["init", "--name", "bad\x1b[2J", "--home", str(home)]) == 1
    assert "control-char" in capsys.readouterr().err
    assert _left(tmp_path) == []  # not the home, not its parents, not the folder it was built in
    assert main(["init", "--name", "good", "--home", str(home)]) == 0
    assert (home / "identity.key").exists()
    assert not [p for p in home.parent.iterdir() if p.name.startswith(".")]


def test_init_whose_store_fails_leaves_no_home(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path) -> None:
        raise StoreError(f"{path}: disk I/O error")

    monkeypatch.setattr(store_access.Store, "open", broken)
    home = tmp_path / "home"
    assert main(["init", "--home", str(home)]) == 1
    assert "disk I/O error" in capsys.readouterr().err
    assert _left(tmp_path) == []

    # A folder that held files of its own keeps them, and nothing more.
    home.mkdir()
    (home / "config.toml").write_text("[node]\nmdns = false\n")
    assert main(["init", "--home", str(home)]) == 1
    assert _left(tmp_path) == ["home", "home/config.toml"]
    monkeypatch.undo()
    assert main(["init", "--home", str(home)]) == 0
    assert (home / "config.toml").read_text() == "[node]\nmdns = false\n"
    assert (home / "identity.key").stat().st_mode & 0o077 == 0
    assert main(["status", "--json", "--home", str(home)]) == 0
