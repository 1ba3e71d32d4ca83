"""Readable output (issue 17, items 8-10): people by name, where a contribution went, tables
in display width with dates, progress bars, ``status``, ``--version``, completion, help text
and ``--artifact-file``. In-process: ``main()`` on a temporary home, the API through
``httpx.ASGITransport``."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node import __version__
from node.api.app import build_app
from node.cli.completion import command_tree, script
from node.cli.main import build_parser, main
from node.home import Home
from node.store.sqlite import Store
from node.textout import (
    Progress,
    _char_width,
    clip,
    date_time,
    display_width,
    person,
    short_peer,
    short_peers,
    table,
)
from node.views.cache import ViewCache
from protocol.record import Record
from protocol.signing import peer_id
from protocol.testing import RecordFactory


class Cli:
    """``commons`` in-process on one home: JSON out, or the text a person reads."""

    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home = home
        self.capsys = capsys

    def text(self, *args: str, code: int = 0) -> str:
        self.capsys.readouterr()
        assert main([*args, "--home", str(self.home)]) == code
        return self.capsys.readouterr().out

    def json(self, *args: str) -> Any:
        return json.loads(self.text(*args, "--json"))

    def add(self, *records: Record) -> None:
        with Store.open(self.home / "ledger.db") as store:
            store.add(list(records), published=True)


@pytest.fixture
def cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    c = Cli(tmp_path / "home", capsys)
    c.text("init", "--name", "Me")
    return c


@pytest.fixture
def project(cli: Cli) -> str:
    return str(cli.json("project", "create", "Bridge", "--maintainer", _peer("dave"))["id"])


F = RecordFactory()


def _peer(name: str) -> str:
    return peer_id(F.pub(name))


# ---- item 10: text for people


def test_display_width_counts_wide_characters_twice() -> None:
    assert display_width("abc") == 3
    assert display_width("日本語") == 6
    assert display_width("e\u0301") == 1  # a combining accent takes no column
    assert clip("日本語のテキスト", 7) == "日本語…"
    assert display_width(clip("日本語のテキスト", 7)) == 7
    assert clip("short", 10) == "short"
    rendered = table(["NAME", "N"], [("日本語", 1), ("ab", 22)], right=(1,)).splitlines()
    # Every line ends in the same column, wide characters or not.
    assert {display_width(line) for line in rendered} == {display_width(rendered[0])}
    assert table(["T"], [("x" * 100,)]).splitlines()[2] == "x" * 59 + "…"


@given(st.text(max_size=40))
def test_display_width_is_the_sum_of_the_characters_widths(text: str) -> None:
    """Only characters beyond ASCII are looked up: the same sum as character by character."""
    assert display_width(text) == sum(_char_width(ch) for ch in text)


#: Peer ids that share tails of every length the shortening tries, and handles.
_PEERS = st.lists(
    st.one_of(
        st.sampled_from(["12D3KooW", "12D3KooWx"]).flatmap(
            lambda head: st.text("ab", min_size=24, max_size=30).map(lambda t: head + t)
        ),
        st.sampled_from(["email:" + "0" * 64, "forge:example.org/x", "orcid:0000", "short"]),
    ),
    max_size=30,
)


@given(_PEERS)
def test_short_peers_are_short_peer_of_each(peers: list[str]) -> None:
    assert short_peers(peers) == {p: short_peer(p, peers) for p in peers}


def test_dates_instead_of_milliseconds() -> None:
    assert date_time(1_764_587_880_000) == "2025-12-01 11:18"
    assert date_time(10**20) == str(10**20)  # beyond any calendar: the number stays


def test_progress_shows_records_megabytes_rate_and_eta() -> None:
    now = [0.0]
    stream = io.StringIO()
    bar = Progress(
        "importing x", total=10_000_000, stream=stream, unit="bytes", clock=lambda: now[0]
    )
    now[0] = 2.0
    bar.advance(4_000_000)
    bar.add_records(1234)
    line = bar.line()
    for part in ("40%", "1234 records", "4.0/10.0 MB", "2.0 MB/s", "ETA 3s"):
        assert part in line, line
    records = Progress("exporting", total=100, stream=stream, clock=lambda: now[0])
    now[0] = 4.0
    records.add_bytes(2_500_000)
    records.advance(50)
    assert "50 records" in records.line()
    assert "records/s" in records.line()
    assert "2.5 MB" in records.line()
    assert "ETA" in records.line()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"commons {__version__}"


def _options(parser: argparse.ArgumentParser, path: str = "commons") -> Iterator[Any]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_and_argument_has_help_and_repeatable_ones_say_so() -> None:
    seen = 0
    for path, action in _options(build_parser()):
        name = "/".join(action.option_strings) or action.dest
        assert action.help, f"{path} {name} has no help text"
        if isinstance(action, argparse._AppendAction):
            assert "(repeatable" in action.help, f"{path} {name} does not say it repeats"
        seen += 1
    assert seen > 60


def test_completion_lists_what_the_parser_has() -> None:
    parser = build_parser()
    tree = command_tree(parser)
    assert "create" in tree["project"]
    assert "--artifact-file" in tree["contribute"]
    assert "profile set" in tree
    assert "completion" in tree[""]
    zsh = script(parser, "zsh")
    assert zsh.startswith("autoload -U +X bashcompinit")
    assert "complete -o default" in zsh


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["commons", "pro"], ["profile", "project"]),
        (["commons", "project", "cr"], ["create"]),
        (["commons", "--home", "h", "project", "update", "x", "--add"], ["--add-maintainer"]),
        (["commons", "contribute", "p", "--artifact-f"], ["--artifact-file"]),
    ],
)
def test_bash_completion_completes(words: list[str], expected: list[str]) -> None:
    completion = script(build_parser(), "bash")
    words_text = " ".join(f"'{w}'" for w in words)
    program = (
        f"{completion}\nCOMP_WORDS=({words_text}); COMP_CWORD={len(words) - 1}\n"
        '_commons_complete; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    assert sorted(done.stdout.split()) == expected


# ---- item 8: people by name


def test_profile_set_and_show(cli: Cli) -> None:
    me = cli.json("id")["peer_id"]
    assert cli.json("profile", "show")["name"] == "Me"
    cli.text("profile", "set", "--about", "Builds bridges", "--link", "https://me.example")
    shown = cli.json("profile", "show", me)
    assert (shown["name"], shown["about"], shown["links"]) == (
        "Me",
        "Builds bridges",
        ["https://me.example"],
    )
    cli.text("profile", "set", "--name", "Me Again")
    assert cli.json("profile", "show")["about"] == "Builds bridges"  # kept
    assert "name:    Me Again" in cli.text("profile", "show")
    cli.text("profile", "show", _peer("nobody"), code=1)
    cli.text("profile", "set", code=1)  # nothing to set


def test_tables_show_names_beside_short_ids(cli: Cli, project: str) -> None:
    pid = bytes.fromhex(project)
    bob = F.contribution("bob", pid, title="Pillars", minutes=120)
    cli.add(bob, F.profile("bob", name="Bob 日本"), F.profile("dave", name="Dave"))
    cli.add(F.profile("bob", name="Old Bob", ts=1))  # an older profile does not count
    cli.text("endorse", bob.id.hex(), "--weight", "3")
    ledger = cli.text("ledger", project)
    assert f"Bob 日本 (…{_peer('bob')[-8:]})" in ledger
    assert "Old Bob" not in ledger
    assert "WEIGHT" in ledger
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", ledger)
    assert "Bob 日本" in cli.text("shares", project)
    listing = cli.text("project", "list")
    assert "Me (…" in listing
    assert "Dave (…" in listing
    assert f"Dave ({_peer('dave')})" in cli.text("project", "show", project)


def test_names_are_escaped_and_clipped() -> None:
    hostile = {"p1": "Evil\x1b[2J" + "x" * 40}
    shown = person("p1", hostile)
    assert "\x1b" not in shown
    assert "\\x1b[2J" in shown
    assert "…" in shown
    assert person("p2", hostile) == "…p2"


# ---- item 9: where did my contribution go


def test_record_show_follows_a_contribution(cli: Cli, project: str) -> None:
    pid = bytes.fromhex(project)
    c = F.contribution("bob", pid, title="Deck", minutes=90, coauthors=("carol",))
    other = F.contribution("erin", pid, minutes=30)
    stranger = F.endorsement("zed", c, weight=7, comment="not mine to say")
    cli.add(c, other, stranger, F.endorsement("dave", other, weight=1))
    cli.text("endorse", c.id.hex(), "--weight", "4", "--comment", "solid work")
    detail = cli.json("record", "show", c.id.hex())
    assert detail["body"]["title"] == "Deck"
    assert detail["author"] == _peer("bob")
    assert detail["live"] is True
    assert detail["retraction"] is None
    assert detail["endorsed_weight"] == 4
    by_author = {e["author"]: e for e in detail["endorsements"]}
    mine = by_author[cli.json("id")["peer_id"]]
    assert (mine["weight"], mine["comment"], mine["counts"], mine["author_name"]) == (
        4,
        "solid work",
        True,
        "Me",
    )
    assert by_author[_peer("zed")]["counts"] is False
    assert "not a maintainer" in by_author[_peer("zed")]["why_not_counted"]
    counts = detail["counts_for"]
    assert counts["claimed_minutes"] == 90
    assert counts["endorsed_value"] == 360
    assert counts["share_of_project"] == pytest.approx(360 / 390)
    assert [(p["peer_id"], p["endorsed_value"]) for p in counts["participants"]] == [
        (_peer("bob"), 180),
        (_peer("carol"), 180),
    ]
    text = cli.text("record", "show", c.id.hex())
    assert "solid work" in text
    assert "no: its author is not a maintainer" in text
    assert "92.3% of the project's" in text

    verdict = cli.json("record", "show", stranger.id.hex())
    assert verdict["counts"] is False
    assert "maintainer" in verdict["why_not_counted"]

    cli.add(F.retraction("bob", c, reason="duplicate"))
    gone = cli.json("record", "show", c.id.hex())
    assert gone["live"] is False
    assert gone["retraction"]["reason"] == "duplicate"
    assert gone["counts_for"]["endorsed_value"] == 0
    assert "retracted:" in cli.text("record", "show", c.id.hex())


def test_record_show_without_its_project(cli: Cli) -> None:
    elsewhere = F.project("zed", name="Not held")
    c = F.contribution("bob", elsewhere, minutes=5)
    e = F.endorsement("zed", c)
    cli.add(c, e)
    shown = cli.json("record", "show", c.id.hex())
    assert shown["project_held"] is False
    assert shown["body"]["effort_minutes"] == 5
    verdict = cli.json("record", "show", e.id.hex())
    assert verdict["why_not_counted"] == "its project is not held here"


def test_ledger_json_has_endorsed_weight(cli: Cli, project: str) -> None:
    c = F.contribution("bob", bytes.fromhex(project), minutes=10)
    cli.add(c)
    cli.text("endorse", c.id.hex(), "--weight", "6")
    [entry] = cli.json("ledger", project)
    assert (entry["endorsements"], entry["endorsed_weight"]) == (1, 6)


def test_shares_explains_its_columns_and_units(cli: Cli, project: str) -> None:
    cli.add(F.contribution("bob", bytes.fromhex(project), minutes=150))
    text = cli.text("shares", project)
    assert "2 h 30 min" in text
    assert "ENDORSED VALUE (min x weight)" in text
    assert "CLAIMED: the effort" in text
    help_text = _help(["shares", "--help"])
    assert "SHARE: the contributor's endorsed value" in help_text


def _help(argv: list[str]) -> str:
    out = io.StringIO()
    parser = build_parser()
    sub = parser
    for word in argv[:-1]:
        sub = next(
            a.choices[word] for a in sub._actions if isinstance(a, argparse._SubParsersAction)
        )
    sub.print_help(out)
    return " ".join(out.getvalue().split())


# ---- item 10: artifacts from local files


def test_artifact_file_is_hashed_into_the_contribution(
    cli: Cli, project: str, tmp_path: Path
) -> None:
    model = tmp_path / "bracket v2.stl"
    model.write_bytes(b"solid bracket\n" * 100_000)
    made = cli.json(
        "contribute", project, "--type", "design", "--title", "Bracket",
        "--artifact", "https://example.org/pr/1", "--artifact-file", str(model),
    )  # fmt: skip
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert made["body"]["artifacts"] == [
        {"uri": "https://example.org/pr/1"},
        {"uri": "file:bracket%20v2.stl", "digest": f"sha256:{digest}"},
    ]
    cli.text(
        "contribute", project, "--type", "docs", "--title", "y", "--artifact-file", "nope", code=1
    )
    assert "URI[@DIGEST]" in _help(["contribute", "--help"])


# ---- the API


@pytest.fixture
def api(cli: Cli, project: str) -> Iterator[tuple[httpx.ASGITransport, Store]]:
    store = Store.open(cli.home / "ledger.db")
    node = SimpleNamespace(home=Home(cli.home), store=store, views=ViewCache(store))
    yield httpx.ASGITransport(app=build_app(node)), store  # type: ignore[arg-type]
    store.close()


async def test_api_profiles_and_record_detail(
    api: tuple[httpx.ASGITransport, Store], cli: Cli, project: str
) -> None:
    transport, store = api
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await _api_checks(client, store, cli, project)


async def _api_checks(client: httpx.AsyncClient, store: Store, cli: Cli, project: str) -> None:
    me = Home(cli.home).signing_key().peer_id
    answer = await client.get(f"/api/v1/profiles/{me}")
    assert answer.status_code == 200
    assert answer.json()["name"] == "Me"
    missing = await client.get(f"/api/v1/profiles/{_peer('nobody')}")
    assert missing.status_code == 404
    assert "no profile" in missing.json()["error"]
    assert (await client.get("/api/v1/profiles/not-a-peer")).status_code == 400
    c = F.contribution("bob", bytes.fromhex(project), minutes=5)
    store.add([c], published=True)
    detail = (await client.get(f"/api/v1/records/{c.id.hex()}")).json()
    assert detail["id"] == c.id.hex()
    assert detail["endorsements"] == []
    assert detail["counts_for"]["claimed_minutes"] == 5
