"""The command beside a running node, in one process: reads through its API, ``node wait``,
the API's field names (those of the CLI flags), and the node's log (quiet libp2p, one line
per reachability change).

A real node runs in the test's trio loop; each command runs in a worker thread, as the
separate ``commons`` process would, so the node's API can answer it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from node.api.app import build_app
from node.cli import run as cli_run
from node.cli import show
from node.cli.main import main
from node.home import Home
from node.runtime import Node, NodeOptions, open_node
from node.service import ServiceConfig

LOOPBACK = "/ip4/127.0.0.1/tcp/0"


@asynccontextmanager
async def running(home: Home, **options: Any) -> AsyncIterator[Node]:
    home.init()
    given: dict[str, Any] = {"listen": [LOOPBACK], "api": "127.0.0.1:0", "mdns": False}
    async with open_node(home, NodeOptions(**(given | options))) as node:
        yield node


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``commons ARGV`` in a worker thread; its exit code, stdout and stderr."""
    code = await trio.to_thread.run_sync(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def wait_until(predicate: Any, seconds: float = 20.0) -> None:
    with trio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 - state changes in other tasks, no event
            await trio.sleep(0.05)


# ------------------------------------------------------------------------------ reads


READS = [
    ["project", "list"],
    ["project", "show", "{p}"],
    ["ledger", "{p}"],
    ["ledger", "{p}", "--type", "design", "--limit", "5"],
    ["shares", "{p}"],
    ["record", "show", "{r}"],
    ["record", "show", "{r}", "--raw"],
]


async def test_reads_ask_the_running_node_and_answer_as_the_store_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path / "h")
    answers: dict[str, str] = {}
    with trio.fail_after(60):
        async with running(home) as node:
            project = await node.author("project", {"name": "Wikispeed"})
            p = project.id.hex()
            r = (
                await node.author(
                    "contribution",
                    {"project": p, "type": "design", "title": "Chassis", "minutes": 90},
                )
            ).id.hex()[:12]
            # With a node running, no read opens the store: the node's warm views answer.
            with monkeypatch.context() as m:
                m.setattr(show, "open_store", _no_store)
                for argv in READS:
                    args = [a.format(p=p[:10], r=r) for a in argv]
                    code, out, err = await cli(capsys, *args, "--json", "--home", str(home.path))
                    assert (code, err) == (0, ""), args
                    answers[" ".join(argv)] = out
                code, _, err = await cli(capsys, "ledger", "deadbeef00", "--home", str(home.path))
                assert code == 1
                assert err.startswith("error: ")
                assert err.count("\n") == 1
    # The node stopped: the same commands fold the views from the store, to the same JSON.
    for argv in READS:
        args = [a.format(p=p[:10], r=r) for a in argv]
        code, out, _ = await cli(capsys, *args, "--json", "--home", str(home.path))
        assert code == 0
        assert json.loads(out) == json.loads(answers[" ".join(argv)]), args
    assert json.loads(answers["ledger {p}"])[0]["title"] == "Chassis"


def _no_store(*args: object) -> Any:
    raise AssertionError("a read opened the store although a node runs")


def test_reads_fall_back_to_the_store_when_the_api_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Home(tmp_path / "h")
    assert main(["init", "--home", str(home.path)]) == 0
    assert main(["project", "create", "Lonely", "--home", str(home.path)]) == 0
    # node.json of a live process (this one) whose API port is closed.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home.write_node_info({"pid": os.getpid(), "api": f"http://127.0.0.1:{port}"})
    capsys.readouterr()
    assert main(["project", "list", "--json", "--home", str(home.path)]) == 0
    assert [p["name"] for p in json.loads(capsys.readouterr().out)] == ["Lonely"]


# ------------------------------------------------------------------------------ node wait


async def test_node_wait_returns_once_the_node_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Home(tmp_path / "h")
    with trio.fail_after(60):
        async with running(home) as node:
            code, out, err = await cli(capsys, "node", "wait", "--json", "--home", str(home.path))
            assert (code, err) == (0, "")
            info = json.loads(out)
            assert info["peer_id"] == node.peer_id
            assert info["addrs"] == node.transport.listen_addrs()
            # Waiting for a peer that never comes ends at the timeout, in one line.
            code, _, err = await cli(
                capsys, "node", "wait", "--peers", "1", "--timeout", "0.5", "--home", str(home.path)
            )
            assert code == 1
            assert "0 of 1 peers connected" in err
            assert err.count("\n") == 1


def test_node_wait_without_a_node_times_out_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "h")
    assert main(["init", "--home", home]) == 0
    capsys.readouterr()
    assert main(["node", "wait", "--timeout", "0.3", "--home", home]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no ready node for ")
    assert err.count("\n") == 1
    for bad in ("0", "-1", "inf", "nan"):
        assert main(["node", "wait", "--timeout", bad, "--home", home]) == 1
    assert main(["node", "wait", "--peers", "-1", "--home", home]) == 1


# ------------------------------------------------------------------------------ API field names


async def test_the_api_takes_the_cli_flag_names_beside_the_record_body_names(
    tmp_path: Path,
) -> None:
    other = Home(tmp_path / "other")
    other.init()
    peer = other.signing_key().peer_id
    with trio.fail_after(60):
        async with running(Home(tmp_path / "h"), api=None) as node:
            transport = httpx.ASGITransport(app=build_app(node))
            auth = {"Authorization": f"Bearer {node.home.api_token()}"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://node", headers=auth
            ) as api:

                async def post(path: str, body: dict[str, Any], status: int = 201) -> Any:
                    answer = await api.post(path, json=body)
                    assert answer.status_code == status, answer.text
                    return answer.json()

                flags = await post(
                    "/api/v1/projects",
                    {"name": "A", "link": ["https://a.org"], "tag": ["cad"], "maintainer": [peer]},
                )
                assert flags["body"]["links"] == ["https://a.org"]
                assert flags["body"]["tags"] == ["cad"]
                assert flags["body"]["maintainers"] == [peer]
                # The record body's names keep working.
                body = await post("/api/v1/projects", {"name": "B", "links": ["https://b.org"]})
                assert body["body"]["links"] == ["https://b.org"]

                p = flags["id"]
                update = await post(
                    f"/api/v1/projects/{p}/updates",
                    {"link": ["https://c.org"], "remove_maintainer": [peer]},
                )
                assert update["body"]["set"] == {"links": ["https://c.org"]}
                assert update["body"]["remove_maintainers"] == [peer]
                update = await post(f"/api/v1/projects/{p}/updates", {"add_maintainer": [peer]})
                assert update["body"]["add_maintainers"] == [peer]
                c = await post(
                    f"/api/v1/projects/{p}/contributions",
                    {
                        "type": "code",
                        "title": "T",
                        "artifact": ["https://x.org/a.stl@sha256:00ff"],
                        "coauthor": [peer],
                    },
                )
                assert c["body"]["artifacts"] == [
                    {"uri": "https://x.org/a.stl", "digest": "sha256:00ff"}
                ]
                assert c["body"]["coauthors"] == [peer]

                # Both names of one field: which was meant is unknown, so it is refused.
                both = await post(
                    "/api/v1/projects", {"name": "C", "tag": ["x"], "tags": ["y"]}, 422
                )
                assert "tags or tag" in both["error"]
                unknown = await post("/api/v1/projects", {"name": "C", "links2": []}, 422)
                assert "links2" in unknown["error"]
                assert "link" in unknown["error"]  # and the accepted names are listed

                # Clearing links or tags cannot be expressed by the record format: refused,
                # saying so, rather than ignored.
                for clear in ({"link": []}, {"links": [""]}, {"tag": []}):
                    refused = await post(f"/api/v1/projects/{p}/updates", clear, 422)
                    assert "cannot be cleared" in refused["error"]


def test_project_update_cannot_clear_links_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "h")
    assert main(["init", "--home", home]) == 0
    assert (
        main(["project", "create", "P", "--link", "https://p.org", "--json", "--home", home]) == 0
    )
    p = json.loads(capsys.readouterr().out.splitlines()[-1])["id"]
    assert main(["project", "update", p, "--link", "", "--home", home]) == 1
    err = capsys.readouterr().err
    assert "links cannot be cleared" in err
    assert err.count("\n") == 1
    assert main(["project", "show", p, "--json", "--home", home]) == 0
    assert json.loads(capsys.readouterr().out)["links"] == ["https://p.org"]


# ------------------------------------------------------------------------------ logs


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """Put the logging configuration back after a test that set up the node's."""
    names = ["", "node", *cli_run.NETWORK_LOGGERS, "libp2p.network.auto_connector"]
    saved = {n: logging.getLogger(n).level for n in names}
    handlers = logging.getLogger().handlers[:]
    try:
        yield
    finally:
        logging.getLogger().handlers[:] = handlers
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("logging_restored")
def test_debug_shows_the_node_and_keeps_the_network_libraries_at_warning() -> None:
    import node.net.transport  # noqa: F401 - loads libp2p and its loggers, as node run does

    cli_run._setup_logging("debug", False)
    assert logging.getLogger("node.runtime").isEnabledFor(logging.DEBUG)
    for name in ("libp2p.network.swarm", "multiaddr.transforms", "zeroconf"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    # A module with a level of its own follows its package too.
    assert not logging.getLogger("libp2p.network.auto_connector").isEnabledFor(logging.INFO)
    assert not logging.getLogger("hpack").isEnabledFor(logging.INFO)

    cli_run._setup_logging("debug", False, "debug")
    assert logging.getLogger("multiaddr.transforms").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("libp2p.network.swarm").isEnabledFor(logging.DEBUG)

    cli_run._setup_logging("error", False)
    assert not logging.getLogger("node.runtime").isEnabledFor(logging.WARNING)
    assert not logging.getLogger("libp2p").isEnabledFor(logging.WARNING)


async def test_an_unreachable_peer_is_logged_once_and_once_again_when_it_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A fast back-off, so that many dials fail within a second (the reactor wakes for each).
    fast = ServiceConfig(dial_backoff_min=0.05)
    caplog.set_level(logging.DEBUG, logger="node.runtime")
    b_home = Home(tmp_path / "b")
    b_home.init()
    b_peer = b_home.signing_key().peer_id
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b_addr = f"/ip4/127.0.0.1/tcp/{port}"

    def lines(text: str) -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "node.runtime" and r.levelno == logging.INFO and text in r.getMessage()
        ]

    def failed_dials() -> int:
        return sum(1 for r in caplog.records if r.getMessage().startswith("dial "))

    with trio.fail_after(60):
        async with running(
            Home(tmp_path / "a"), bootstrap=[f"{b_addr}/p2p/{b_peer}"], tuning=fast
        ) as a:
            await wait_until(lambda: failed_dials() >= 4)
            assert len(lines("is unreachable")) == 1
            assert b_peer in lines("is unreachable")[0].getMessage()
            async with running(b_home, listen=[b_addr], api=None):
                await wait_until(lambda: lines("is reachable again") != [])
                assert b_peer in {p.peer_id for p in a.transport.connected_peers()}
                assert len(lines("is unreachable")) == 1
            # B stops: unreachable again, one more line however many dials fail after it.
            await wait_until(lambda: len(lines("is unreachable")) == 2)
            dials = failed_dials()
            await wait_until(lambda: failed_dials() >= dials + 3)
            assert len(lines("is unreachable")) == 2
            assert len(lines("is reachable again")) == 1
