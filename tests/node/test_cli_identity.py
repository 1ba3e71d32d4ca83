"""``commons identity ...`` in process, between homes that exchange bundles (no node runs):
create a person, link a second device, count once, revoke from a device and from the
recovery words, and the refusals people meet on the way."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from node.cli.main import main


class Homes:
    def __init__(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.root = root
        self.capsys = capsys
        self.moves = 0

    def home(self, name: str) -> str:
        return str(self.root / name)

    def run(self, name: str, *argv: str) -> Any:
        """Run a command with --json in home ``name``; its JSON answer (exit 0 required)."""
        code = main([*argv, "--json", "--home", self.home(name)])
        out, err = self.capsys.readouterr()
        assert code == 0, err
        return json.loads(out) if out.strip() else None

    def fails(self, name: str, *argv: str) -> str:
        """Run a command that must fail with exit 1; its one error line."""
        code = main([*argv, "--home", self.home(name)])
        out, err = self.capsys.readouterr()
        assert code == 1, (out, err)
        assert err.startswith("error: "), err
        assert err.count("\n") == 1, err
        return err

    def move(self, source: str, *targets: str) -> None:
        """Carry every record of ``source`` to ``targets`` in a bundle file."""
        self.moves += 1
        path = str(self.root / f"move-{self.moves}.bundle")
        self.run(source, "export", path)
        for target in targets:
            self.run(target, "import", path)


@pytest.fixture
def homes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Homes:
    h = Homes(tmp_path, capsys)
    for name in ("laptop", "phone", "keeper", "spare"):
        h.run(name, "init")
    return h


def _shares(homes: Homes, pid: str) -> list[dict[str, Any]]:
    value: list[dict[str, Any]] = homes.run("keeper", "shares", pid)
    return value


def test_link_count_once_revoke_and_recover(homes: Homes, monkeypatch: pytest.MonkeyPatch) -> None:
    kit = homes.run("laptop", "identity", "recovery-kit")
    person, words = kit["person"], kit["words"]
    assert len(words) == 18
    assert "kept nowhere" in homes.fails("laptop", "identity", "recovery-kit")
    laptop = homes.run("laptop", "id")["peer_id"]
    phone = homes.run("phone", "id")["peer_id"]

    link = homes.run("laptop", "identity", "link")
    assert link["kind"] == "device-link"
    assert link["body"]["person"] == person
    assert "no link for this code" in homes.fails("phone", "identity", "join", link["code"])
    assert "16 letters" in homes.fails("phone", "identity", "join", "not-a-code")
    homes.move("laptop", "phone")
    joined = homes.run("phone", "identity", "join", link["code"].lower().replace("-", " "))
    assert joined["kind"] == "device-join"
    homes.move("phone", "laptop")
    shown = homes.run("laptop", "identity", "show", phone)
    assert shown["person"] == person
    assert [(d["device"], d["active"]) for d in shown["devices"]] == [
        (laptop, True),
        (phone, True),
    ]

    project = homes.run("keeper", "project", "create", "Bikes")
    pid = project["id"]
    homes.move("keeper", "laptop", "phone")
    frame = homes.run(
        "laptop", "contribute", pid, "--type", "code", "--title", "F", "--minutes", "60"
    )
    wheel = homes.run(
        "phone", "contribute", pid, "--type", "code", "--title", "W", "--minutes", "30"
    )
    homes.move("laptop", "keeper")
    homes.move("phone", "keeper")
    for c in (frame, wheel):
        homes.run("keeper", "endorse", c["id"], "--weight", "2")
    once = _shares(homes, pid)
    assert [
        (s["contributor"], s["person"], s["claimed_minutes"], s["endorsed_value"]) for s in once
    ] == [(person, person, 90, 180)]
    ledger = homes.run("keeper", "ledger", pid)
    assert {(e["author"], e["person"]) for e in ledger} == {(laptop, person), (phone, person)}
    profile_less = homes.run("keeper", "identity", "show", person)
    assert profile_less["recovery_key"] is True

    # The phone is stolen: the laptop revokes it; what it signs later counts for nothing.
    revoke = homes.run("laptop", "identity", "revoke", phone, "--reason", "stolen")
    assert revoke["body"]["device"] == phone
    homes.move("laptop", "keeper", "phone")
    assert "revoked" in homes.fails("phone", "identity", "link")
    stolen = homes.run(
        "phone", "contribute", pid, "--type", "code", "--title", "T", "--minutes", "900"
    )
    homes.move("phone", "keeper")
    assert "would have no effect" in homes.fails("keeper", "endorse", stolen["id"])
    homes.run("keeper", "endorse", stolen["id"], "--weight", "10", "--force")
    assert _shares(homes, pid) == once

    # Every device lost: a new machine revokes the laptop with the words, and joins.
    assert "not one of the recovery words" in _revoke_with(homes, monkeypatch, laptop, "x " * 18)
    monkeypatch.setattr("sys.stdin", io.StringIO(" ".join(w.upper() for w in words) + "\n"))
    homes.move("keeper", "spare")
    recovered = homes.run("spare", "identity", "revoke", laptop, "--recovery", "--keep", phone)
    assert "join" in recovered
    # The recovery revocation annuls the laptop's acts, its revocation of the phone too: the
    # phone, kept, is revoked again by the words, at the same cut.
    monkeypatch.setattr("sys.stdin", io.StringIO(" ".join(words)))
    cut = str(revoke["body"]["cut"])
    homes.run("spare", "identity", "revoke", phone, "--recovery", "--cut", cut)
    spare = homes.run("spare", "id")["peer_id"]
    assert homes.run("spare", "identity", "show")["person"] == person
    homes.move("spare", "laptop", "keeper")
    assert "revoked" in homes.fails("laptop", "identity", "link")
    devices = {
        d["device"]: d["active"] for d in homes.run("keeper", "identity", "show", spare)["devices"]
    }
    assert devices == {laptop: False, phone: False, spare: True}
    assert _shares(homes, pid) == once


def _revoke_with(homes: Homes, monkeypatch: pytest.MonkeyPatch, device: str, text: str) -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    return homes.fails("spare", "identity", "revoke", device, "--recovery")


def test_refusals(homes: Homes) -> None:
    assert "acts for no person" in homes.fails("laptop", "identity", "link")
    phone = homes.run("phone", "id")["peer_id"]
    assert "acts for no person" in homes.fails("laptop", "identity", "revoke", phone)
    assert "--keep is for the recovery key" in homes.fails(
        "laptop", "identity", "revoke", phone, "--keep", phone
    )
    assert "time zone" in homes.fails("laptop", "identity", "revoke", phone, "--cut", "2026-01-01")
    homes.run("laptop", "identity", "recovery-kit")
    assert "not an active device" in homes.fails("laptop", "identity", "revoke", phone)
    alone = homes.run("phone", "identity", "show")
    assert alone["person"] == phone
    assert alone["recovery_key"] is False
    with pytest.raises(SystemExit) as usage:
        main(["identity", "--home", homes.home("phone")])
    assert usage.value.code == 2
