"""Honest answers from the ``commons`` command and the API, in process.

Authoring that would have no effect is refused (unless forced, and then it says so), the
ledger says how much it shows and pages with a cursor, an unfollowed project says so, and bad
flags are refused with the value the person typed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from node.api.app import build_app
from node.authoring import Authored, prepare
from node.cli.main import main
from node.home import Home
from node.store.sqlite import Store
from node.views.cache import ViewCache
from node.views.follow import Follow, FollowError, resolve_follow
from protocol.bundle import BundleReader, encode_bundle
from protocol.errors import InvalidRecord
from protocol.record import Record
from protocol.signing import peer_id
from protocol.testing import RecordFactory
from protocol.validation import parse_record


class Cli:
    """``commons`` in this process for one home: exit code, stdout, stderr lines."""

    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home = home
        self.capsys = capsys

    def __call__(self, *args: str, code: int = 0) -> tuple[str, list[str]]:
        self.capsys.readouterr()
        try:
            got = main([*args, "--home", str(self.home)])
        except SystemExit as exc:  # usage errors leave through argparse
            got = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        assert got == code, (args, got, out, err)
        return out, err.splitlines()

    def json(self, *args: str, code: int = 0) -> Any:
        out, _ = self(*args, "--json", code=code)
        return json.loads(out)

    def error(self, *args: str, code: int = 1) -> str:
        _, err = self(*args, code=code)
        assert len(err) == 1, err
        assert err[0].startswith("error: ")
        return err[0]


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    home = tmp_path / "home"
    Home(home).init()
    return Cli(home, capsys)


def me(cli: Cli) -> str:
    return str(cli.json("whoami")["peer_id"])


def add(cli: Cli, *records: Record) -> None:
    with Store.open(Home(cli.home).store_path) as store:
        store.add(list(records))


# --------------------------------------------------------------------------------------------
# 4. Authoring that would have no effect


def test_endorsing_without_effect_is_refused_and_force_says_it_will_not_count(
    cli: Cli, f: RecordFactory
) -> None:
    project = f.project("alice")
    contribution = f.contribution("bob", project, minutes=30)
    add(cli, project, contribution)
    held = cli.json("status")["records"]
    line = cli.error("endorse", contribution.id.hex())
    assert "would have no effect: you are not a maintainer" in line
    assert "--force" in line
    assert cli.json("status")["records"] == held  # nothing was stored
    out, _ = cli("endorse", contribution.id.hex(), "--force")
    assert "will not count: you are not a maintainer" in out
    assert cli.json("status")["records"] == held + 1
    forced = cli.json("endorse", contribution.id.hex(), "--force")
    assert forced["no_effect"] == "you are not a maintainer of the project"


def test_authors_coauthors_retracted_and_non_maintainer_updates(cli: Cli, f: RecordFactory) -> None:
    alice = f.key("alice")
    mine = cli.json("project", "create", "Mine", "--maintainer", peer_id(alice.public_key))
    with_me = f.contribution("alice", bytes.fromhex(mine["id"]), coauthors=())
    add(cli, with_me)
    own = cli.json("contribute", mine["id"], "--type", "code", "--title", "mine")
    assert "you wrote the contribution" in cli.error("endorse", own["id"])
    # A contribution I coauthored.
    mine_key = Home(cli.home).signing_key()
    shared = f.contribution("alice", bytes.fromhex(mine["id"]), coauthors=(mine_key,))
    add(cli, shared)
    assert "you are a coauthor" in cli.error("endorse", shared.id.hex())
    # Retracting: once works, twice is refused; someone else's record is not mine to retract.
    cli.json("retract", own["id"])
    assert "already retracted" in cli.error("retract", own["id"])
    assert "retracted" in cli.error("endorse", own["id"])
    assert "only the author" in cli.error("retract", with_me.id.hex())
    # An endorsement that counts goes through without --force.
    assert "no_effect" not in cli.json("endorse", with_me.id.hex(), "--weight", "3")
    # Someone else's project: my update would change nothing.
    theirs = f.project("alice")
    add(cli, theirs)
    line = cli.error("project", "update", theirs.id.hex(), "--name", "Taken")
    assert "project-update would have no effect: you are not a maintainer" in line
    assert cli.json("project", "show", theirs.id.hex())["name"] == "Project"


async def test_api_refuses_no_effect_with_422_and_forces_with_force(
    tmp_path: Path, f: RecordFactory
) -> None:
    home = Home(tmp_path / "api")
    home.init()
    project = f.project("alice")
    contribution = f.contribution("bob", project)
    with Store.open(home.store_path) as store:
        store.add([project, contribution])
        node = _FakeNode(home, store)
        app = build_app(node)  # type: ignore[arg-type]
        auth = {"Authorization": f"Bearer {home.api_token()}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
            body = {"record": contribution.id.hex()}
            refused = await http.post("/api/v1/endorsements", json=body, headers=auth)
            assert refused.status_code == 422
            assert "would have no effect" in refused.json()["error"]
            forced = await http.post(
                "/api/v1/endorsements", json={**body, "force": True}, headers=auth
            )
            assert forced.status_code == 201
            assert forced.json()["no_effect"] == "you are not a maintainer of the project"
            assert store.has(bytes.fromhex(forced.json()["id"]))
            bad = await http.post("/api/v1/endorsements", json={**body, "force": 1}, headers=auth)
            assert bad.status_code == 422


class _FakeNode:
    """What ``build_app`` needs of a node, authoring with the real :func:`prepare`."""

    def __init__(self, home: Home, store: Store, follow: Follow | None = None) -> None:
        self.home = home
        self.store = store
        self.follow = follow or Follow()
        self.views = ViewCache(store, follow=self.follow)
        self.key = home.signing_key()
        self.front = None  # no API front process: the app answers the views itself

    async def author_checked(self, action: str, fields: dict[str, Any]) -> Authored:
        authored = prepare(
            action, fields, views=self.views, key=self.key, follow=self.follow, now_ms=f_now()
        )
        self.store.add([authored.record])
        return authored


def f_now() -> int:
    return RecordFactory().now_ms + 10**9


# --------------------------------------------------------------------------------------------
# 5. The ledger pages; verify sums up


def test_ledger_says_how_much_it_shows_and_pages(cli: Cli, f: RecordFactory) -> None:
    project = f.project("alice")
    entries = [f.contribution("bob", project, title=f"c{i}") for i in range(5)]
    add(cli, project, *entries)
    pid = project.id.hex()
    out, err = cli("ledger", pid, "--limit", "2")
    titles = {e.body.title for e in entries}  # type: ignore[union-attr]
    assert {t for t in titles if f" {t} " in out} == {"c4", "c3"}
    newest = [e.id.hex() for e in reversed(entries)]
    assert err == [f"showing 2 of 5; next: --cursor {newest[1]}"]
    first = cli.json("ledger", pid, "--limit", "2")
    assert [e["id"] for e in first] == newest[:2]  # --json stays a list
    second = cli.json("ledger", pid, "--limit", "2", "--cursor", newest[1])
    assert [e["id"] for e in second] == newest[2:4]
    _, err = cli("ledger", pid, "--limit", "2", "--cursor", newest[3])
    assert err == ["showing 1 of 5"]
    _, err = cli("ledger", pid)
    assert err == []  # everything shown: nothing to say
    assert "is not a contribution" in cli.error("ledger", pid, "--cursor", pid)


async def test_api_ledger_pages_with_headers(tmp_path: Path, f: RecordFactory) -> None:
    home = Home(tmp_path / "api")
    home.init()
    project = f.project("alice")
    entries = [f.contribution("bob", project, title=f"c{i}") for i in range(3)]
    with Store.open(home.store_path) as store:
        store.add([project, *entries])
        app = build_app(_FakeNode(home, store))  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
            url = f"/api/v1/projects/{project.id.hex()}/ledger"
            page = await http.get(url, params={"limit": 2, "type": "code"})
            assert page.status_code == 200
            assert len(page.json()) == 2
            assert page.headers["x-total-count"] == "3"
            cursor = page.headers["x-next-cursor"]
            assert cursor == page.json()[-1]["id"]
            link = page.headers["link"]
            assert link.endswith('>; rel="next"')
            following = await http.get(link[1 : link.index(">")])
            assert [e["id"] for e in following.json()] == [entries[0].id.hex()]
            assert "x-next-cursor" not in following.headers
            for query in ({"limit": 0}, {"type": "bogus"}, {"cursor": "zz"}):
                bad = await http.get(url, params=query)
                assert bad.status_code == 400, query


def test_verify_sums_up_many_problems(cli: Cli, f: RecordFactory, tmp_path: Path) -> None:
    project = f.project("alice")
    good = [f.contribution("bob", project, title=f"c{i}") for i in range(150)]
    raws = [project.raw] + [r.raw for r in good] + [project.raw] * 30 + [b"\x01\x02"] * 40
    bundle = tmp_path / "many.bundle"
    bundle.write_bytes(encode_bundle(raws))
    out, _ = cli("verify", str(bundle), code=1)
    lines = out.splitlines()
    assert len(lines) < 30
    assert sum("duplicate of an earlier record" in line for line in lines) == 20
    assert "... 50 more not shown; invalid records by error: 40 " in lines[-2]
    assert lines[-1] == "151 valid, 30 duplicate, 40 invalid"
    assert len(cli.json("verify", str(bundle), code=1)["rejected"]) == 40


# --------------------------------------------------------------------------------------------
# 6. Following some projects


def test_unfollowed_projects_say_so(cli: Cli, f: RecordFactory) -> None:
    followed, other = f.project("alice", name="Followed"), f.project("alice", name="Other")
    add(cli, followed, other, f.contribution("bob", other), f.contribution("bob", followed))
    config = Home(cli.home).config_path
    # A prefix, as everywhere else.
    config.write_text(
        config.read_text().replace("follow = []", f'follow = ["{followed.id.hex()[:10]}"]')
    )
    listing = {p["name"]: p for p in cli.json("project", "list")}
    assert listing["Other"]["followed"] is False
    assert listing["Followed"]["followed"] is True
    out, _ = cli("project", "list")
    assert "not followed" in next(line for line in out.splitlines() if "Other" in line)
    assert "not followed" not in next(line for line in out.splitlines() if "Followed" in line)
    message = f"error: this node does not follow project {other.id.hex()[:16]}"
    assert cli.error("ledger", other.id.hex()) == message
    assert cli.error("shares", other.id.hex()) == message
    out, _ = cli("project", "show", other.id.hex())
    assert "not followed" in out
    assert len(cli.json("ledger", followed.id.hex())) == 1
    line = cli.error("contribute", other.id.hex(), "--type", "code", "--title", "x")
    assert "does not follow project" in line
    # A running node's own follow list (it may have been given --follow) wins over the config.
    home = Home(cli.home)
    info = {"pid": os.getpid(), "api": None, "follow": [other.id.hex()]}
    home.node_path.write_text(json.dumps(info))
    assert cli.error("ledger", followed.id.hex()).startswith("error: this node does not follow")
    assert len(cli.json("ledger", other.id.hex())) == 1


def test_follow_prefixes_resolve_against_the_store(store: Store, f: RecordFactory) -> None:
    p = f.project("alice")
    store.add([p])
    assert resolve_follow(store, [p.id.hex()[:8]]).projects == {p.id}
    unheld = "ab" * 32
    assert resolve_follow(store, [unheld]).projects == {bytes.fromhex(unheld)}
    assert resolve_follow(store, []).everything
    for bad in ("ab" * 5, "not-hex!", "abc"):
        with pytest.raises(FollowError, match="follow"):
            resolve_follow(store, [bad])


def test_node_run_refuses_bad_follow_and_bootstrap_at_start(cli: Cli) -> None:
    line = cli.error("node", "run", "--api", "127.0.0.1:0", "--follow", "abcdef0123")
    assert line.startswith("error: --follow: follow 'abcdef0123': no project id starts with")
    for bad in ("/ip4/127.0.0.1/tcp/4710", "nonsense/p2p/xyz"):
        line = cli.error("node", "run", "--no-mdns", "--bootstrap", bad)
        assert line.startswith("error: bootstrap address: "), line
    assert Home(cli.home).running_node() is None


def test_import_into_a_running_nodes_home_goes_through_its_api(
    cli: Cli, f: RecordFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from node.cli import bundles

    project = f.project("alice")
    records = [project, *(f.contribution("bob", project, title=f"c{i}") for i in range(5))]
    bundle = tmp_path / "in.bundle"
    raws = [r.raw for r in records]
    raws.insert(4, b"\x01\x02")  # index 4: not a record
    bundle.write_bytes(encode_bundle(raws))
    received: list[list[bytes]] = []

    class Client:
        """The node's side of ``POST /api/v1/bundles``: read the bundle, judge each record."""

        def post_raw(self, path: str, raw: bytes) -> tuple[int, Any]:
            assert path == "/api/v1/bundles"
            reader = BundleReader()
            entries = [e for e in reader.feed(raw) if isinstance(e, bytes)]
            reader.close()
            received.append(entries)
            rejected = []
            for i, entry in enumerate(entries):
                try:
                    parse_record(entry, now_ms=None)
                except InvalidRecord as exc:
                    rejected.append({"index": i, "error": str(exc)})
            new = len(entries) - len(rejected)
            return 201, {"new": new, "duplicates": 0, "rejected": rejected}

    monkeypatch.setattr(bundles, "IMPORT_BATCH", 3)
    monkeypatch.setattr(bundles, "running_client", lambda home: Client())
    report = cli.json("import", str(bundle), code=1)
    assert [len(chunk) for chunk in received] == [3, 3, 1]  # chunks of at most IMPORT_BATCH
    assert [e for chunk in received for e in chunk] == raws
    assert report["accepted"] == 6
    assert [r["index"] for r in report["rejected"]] == [4]
    assert cli.json("status")["records"] == 0  # the node stores them, not the command


# --------------------------------------------------------------------------------------------
# 7. Bad flags


def test_bad_type_limit_and_hours_are_refused(cli: Cli, f: RecordFactory) -> None:
    project = f.project("alice")
    add(cli, project)
    pid = project.id.hex()
    for args in (("contribute", pid, "--title", "t"), ("ledger", pid)):
        line = cli.error(*args, "--type", "bogus", code=2)
        assert "invalid choice: 'bogus'" in line
        assert "code" in line
        assert "translation" in line
    assert "--limit must be 1..100000, not 0" in cli.error("ledger", pid, "--limit", "0")
    hours = {
        "0.01": "hours 0.01 is less than a minute",
        "0.3333": "hours 0.3333 is 19.998 minutes",
        "20000": "hours 20000 is more than a contribution can claim (16666.7)",
        "-1": "hours -1 is negative",
    }
    for given, message in hours.items():
        line = cli.error("contribute", pid, "--type", "code", "--title", "t", f"--hours={given}")
        assert message in line, line
    ok = cli.json("contribute", pid, "--type", "code", "--title", "t", "--hours", "1.5")
    assert ok["body"]["effort_minutes"] == 90
