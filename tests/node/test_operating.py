"""What a seed's operator relies on: the health endpoints, /metrics in full, the dashboard.

Real in-process nodes on 127.0.0.1; the API through ``httpx.ASGITransport``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import tempfile
import threading
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from node.api.app import ApiStartError, build_app
from node.cli.main import main
from node.handle import MAX_PEER_SERIES, transport_metric
from node.home import Home
from node.metrics import _HELP
from node.net.addresses import AddressError, Announcement
from node.net.transport import TransportStats
from node.runtime import Node, NodeOptions, open_node
from protocol.signing import SigningKey

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "/ip4/127.0.0.1/tcp/0"
#: A sample line of the text format: name, optional labels, value.
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


@asynccontextmanager
async def running(tmp_path: Path, name: str, bootstrap: list[str] = ()) -> AsyncIterator[Node]:
    home = Home(tmp_path / name)
    home.init()
    options = NodeOptions(listen=[LOOPBACK], bootstrap=list(bootstrap), api=None, mdns=False)
    async with open_node(home, options) as node:
        yield node


async def get(node: Node, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=build_app(node))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        return await client.get(path)


def parse(text: str) -> tuple[dict[str, str], dict[str, str], list[tuple[str, str, float]]]:
    """The HELP texts, TYPEs and samples of an exposition; fails on any malformed line."""
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            types[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            samples.append((match[1], match[2] or "", float(match[3])))
    return helps, types, samples


def unreachable_peer() -> str:
    """A well-formed address of a peer that does not exist (nothing listens on port 9)."""
    peer = SigningKey(bytes(range(32))).peer_id
    return f"/ip4/127.0.0.1/tcp/9/p2p/{peer}"


async def test_health_answers_and_ready_waits_for_a_first_sync(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with (
            running(tmp_path, "a") as a,
            running(tmp_path, "b", bootstrap=[unreachable_peer()]) as b,
        ):
            health = await get(b, "/healthz")
            assert (health.status_code, health.json()) == (200, {"ok": True})
            # a runs alone (no bootstrap address): ready at once.
            ready = await get(a, "/readyz")
            assert ready.status_code == 200
            assert ready.json() == {
                "ready": True,
                "store": True,
                "listening": True,
                "synced": True,
                "alone": True,
            }
            # b must sync with somebody first; its only bootstrap peer does not answer.
            waiting = await get(b, "/readyz")
            assert waiting.status_code == 503
            assert waiting.json()["synced"] is False
            assert waiting.json()["alone"] is False
            assert "commons_ready 0" in (await get(b, "/metrics")).text
            await b.sync_now(a.transport.listen_addrs()[0])
            ready = await get(b, "/readyz")
            assert (ready.status_code, ready.json()["ready"]) == (200, True)
            assert "commons_ready 1" in (await get(b, "/metrics")).text


async def test_metrics_export_every_counter_with_help_and_type(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running(tmp_path, "a") as a, running(tmp_path, "b") as b:
            await b.sync_now(a.transport.listen_addrs()[0])
            answer = await get(b, "/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    helps, types, samples = parse(answer.text)
    names = {name for name, _, _ in samples}
    # Every sample's family has a HELP text of its own and a TYPE; counters end in _total.
    for name in names:
        assert helps.get(name, name) != name, f"{name} has no HELP text"
        assert types[name] == ("counter" if name.endswith("_total") else "gauge"), name
    assert set(helps) == set(types)
    # Every counter the transport keeps is exported, with its current value.
    for field in dataclasses.fields(TransportStats):
        assert transport_metric(field.name) in names, field.name
    assert transport_metric("bytes_delivered") == "commons_transport_delivered_bytes_total"
    connects = [v for n, _, v in samples if n == "commons_transport_connects_total"]
    assert connects == [1.0]
    # The process and the build.
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert name in names
    rss = next(v for n, _, v in samples if n == "process_resident_memory_bytes")
    assert 10e6 < rss < 4e9
    (build,) = [labels for n, labels, _ in samples if n == "commons_build_info"]
    for label in ('libp2p="0.8.1"', 'python="3.', "version="):
        assert label in build
    # The lag of the one peer b reconciled with.
    (age,) = [(labels, v) for n, labels, v in samples if n == "commons_peer_sync_age_seconds"]
    assert age[0] == f'{{peer="{a.peer_id}"}}'
    assert 0 <= age[1] < 30


def test_every_metric_has_a_help_text() -> None:
    for name, text in _HELP.items():
        assert text.endswith("."), name
    assert MAX_PEER_SERIES <= 64  # bounded label cardinality


def dashboard_metrics() -> set[str]:
    board = json.loads((ROOT / "deploy/grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in board["templating"]["list"] if "definition" in v]
    assert queries, "the dashboard has no queries"
    return {m for q in queries for m in re.findall(r"\b(?:commons|process)_[a-z0-9_]+", q)}


async def test_every_dashboard_metric_is_served(tmp_path: Path) -> None:
    wanted = dashboard_metrics()
    assert {"commons_peers", "process_resident_memory_bytes"} <= wanted
    with trio.fail_after(30):
        async with running(tmp_path, "a") as a:
            helps, _, _ = parse((await get(a, "/metrics")).text)
    missing = sorted(wanted - set(helps))
    assert not missing, f"the dashboard queries metrics /metrics lacks: {missing}"


# ---------------------------------------------------------------------------- announce


def test_an_announcement_replaces_or_filters_the_listen_addresses() -> None:
    me = SigningKey(bytes(range(32))).peer_id
    listen = ["/ip4/127.0.0.1/tcp/4710", "/ip4/10.1.2.3/tcp/4710", "/ip6/::1/tcp/4710"]
    assert Announcement(me, [], []).select(listen) == listen
    public = Announcement(
        me, ["/dns4/seed.example.org/tcp/4710", f"/ip4/203.0.113.7/tcp/1/p2p/{me}"], []
    )
    assert public.full(listen) == [
        f"/dns4/seed.example.org/tcp/4710/p2p/{me}",
        f"/ip4/203.0.113.7/tcp/1/p2p/{me}",
    ]
    private = Announcement(me, [], ["/ip4/10.0.0.0/ipcidr/8", "/ip6/::1"])
    assert private.select(listen) == ["/ip4/127.0.0.1/tcp/4710"]
    assert Announcement(me, [], ["/ip4/127.0.0.1/tcp/4710"]).select(listen[:2]) == listen[1:2]
    other = SigningKey(bytes(32)).peer_id
    for bad in (
        "203.0.113.7:4710",
        "/ip4/203.0.113.7/udp/4710",
        "/ip4/203.0.113.7/tcp/0",
        f"/ip4/203.0.113.7/tcp/4710/p2p/{other}",
        "/ip4/999.0.0.1/tcp/4710",
        "/" * 400,
    ):
        with pytest.raises(AddressError):
            Announcement(me, [bad], [])
    for bad in ("10.0.0.0/8", "/ip4/10.0.0.0/ipcidr/99", "/tcp/4710/ipcidr/8"):
        with pytest.raises(AddressError):
            Announcement(me, [], [bad])


async def test_peers_learn_the_announced_address(tmp_path: Path) -> None:
    public = "/ip4/198.51.100.7/tcp/4710"
    home = Home(tmp_path / "seed")
    home.init()
    options = NodeOptions(listen=[LOOPBACK], api=None, mdns=False, announce=[public])
    with trio.fail_after(30):
        async with open_node(home, options) as seed, running(tmp_path, "member") as member:
            full = f"{public}/p2p/{seed.peer_id}"
            assert seed.transport.advertised_addrs() == [full]
            assert json.loads(home.node_path.read_text())["addrs"] == [full]
            assert seed.status()["addrs"] == [full]
            assert seed.status()["listen"] == seed.transport.listen_addrs() != [full]
            await member.transport.connect(seed.transport.listen_addrs()[0])

            def learned() -> list[str]:
                found = [p.addrs for p in member.transport.connected_peers()]
                return found[0] if found else []

            with trio.fail_after(10):
                while full not in learned():  # noqa: ASYNC110 - identify runs in libp2p
                    await trio.sleep(0.05)


def test_id_prints_the_addresses_to_bootstrap_from(tmp_path: Path, capsys: Any) -> None:
    home = Home(tmp_path / "seed")
    home.init()
    peer = home.signing_key().peer_id
    config = home.config_path.read_text()
    home.config_path.write_text(
        config.replace('listen = ["/ip4/0.0.0.0/tcp/4710"]', 'listen = ["/ip4/127.0.0.1/tcp/4799"]')
    )
    assert main(["--home", str(home.path), "--json", "id"]) == 0
    assert json.loads(capsys.readouterr().out)["addrs"] == [f"/ip4/127.0.0.1/tcp/4799/p2p/{peer}"]
    home.config_path.write_text(
        config.replace("announce = []", 'announce = ["/dns4/seed.example.org/tcp/4710"]', 1)
    )
    assert main(["--home", str(home.path), "id"]) == 0
    out = capsys.readouterr().out
    assert f"address:    /dns4/seed.example.org/tcp/4710/p2p/{peer}\n" in out
    home.config_path.write_text(config.replace("announce = []", 'announce = ["nowhere"]', 1))
    assert main(["--home", str(home.path), "id"]) == 1
    assert "announce address 'nowhere' is not a multiaddr" in capsys.readouterr().err
    assert main(["--home", str(home.path), "node", "run"]) == 1
    assert "not a multiaddr" in capsys.readouterr().err


def test_init_fills_a_home_folder_made_beforehand_in_a_parent_it_cannot_write(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """systemd's StateDirectory= and a container's volume make the home's folder, in a parent
    (/var/lib, /) the node's user cannot write: `init` must build inside the folder."""
    parent = tmp_path / "var-lib"
    home = parent / "commons"
    home.mkdir(parents=True)
    made = tempfile.mkdtemp

    def mkdtemp(prefix: str, dir: Path) -> str:
        if Path(dir) == parent:  # what a read-only parent does (the tests may run as root)
            raise PermissionError(13, "Permission denied", str(dir))
        return made(prefix=prefix, dir=dir)

    monkeypatch.setattr("node.home.tempfile.mkdtemp", mkdtemp)
    assert main(["--home", str(home), "init"]) == 0
    assert "created" in capsys.readouterr().out
    assert sorted(p.name for p in home.iterdir()) == [
        "api.token",
        "config.toml",
        "identity.key",
        "ledger.db",
    ]
    assert sorted(p.name for p in parent.iterdir()) == ["commons"]
    assert Home(home).signing_key()


async def test_the_api_holds_its_port_and_says_when_it_is_taken(tmp_path: Path) -> None:
    """The node binds the API's port itself and hands that socket to the server: the address
    it reports answers, no other program can take the port while it runs, and a port taken
    already is a one-line error naming the address."""
    home = Home(tmp_path / "a")
    home.init()
    options = NodeOptions(listen=[LOOPBACK], api="127.0.0.1:0", mdns=False)
    with trio.fail_after(30):
        async with open_node(home, options) as node:
            url = node.api_url
            assert url is not None
            assert url.startswith("http://127.0.0.1:")
            port = int(url.rpartition(":")[2])
            assert port != 0

            def status() -> dict[str, Any]:
                with urllib.request.urlopen(f"{url}/api/v1/status", timeout=10) as answer:
                    loaded: dict[str, Any] = json.loads(answer.read())
                    return loaded

            assert (await trio.to_thread.run_sync(status))["peer_id"] == node.peer_id
            with pytest.raises(OSError, match="in use"):
                socket.create_server(("127.0.0.1", port))
        with socket.create_server(("127.0.0.1", 0)) as taken:
            busy = f"127.0.0.1:{taken.getsockname()[1]}"
            other = Home(tmp_path / "b")
            other.init()
            options = NodeOptions(listen=[LOOPBACK], api=busy, mdns=False)
            with pytest.raises(ApiStartError, match=f"cannot serve the API on {busy}: "):
                async with open_node(other, options):
                    pass


async def test_status_answers_while_a_transaction_holds_the_store(tmp_path: Path) -> None:
    """``commons status`` counts records through the views' own connection: while a sync's
    transaction holds the store (its lock, for up to seconds during a catch-up), the status
    answers at once with the records committed before it."""
    from protocol.testing import RecordFactory

    home = Home(tmp_path / "a")
    home.init()
    f = RecordFactory()
    p = f.project("alice")
    options = NodeOptions(listen=[LOOPBACK], api="127.0.0.1:0", mdns=False)
    with trio.fail_after(30):
        async with open_node(home, options) as node:
            url = node.api_url
            assert url is not None
            await trio.to_thread.run_sync(node.store.add, [p, f.contribution("bob", p)])
            holding, release = threading.Event(), threading.Event()

            def transaction() -> None:
                with node.store._lock:  # as a sync's transaction holds it
                    holding.set()
                    release.wait(20)

            def status() -> dict[str, Any]:
                with urllib.request.urlopen(f"{url}/api/v1/status", timeout=5) as answer:
                    loaded: dict[str, Any] = json.loads(answer.read())
                    return loaded

            holder = threading.Thread(target=transaction)
            holder.start()
            try:
                await trio.to_thread.run_sync(holding.wait, 5)
                shown = await trio.to_thread.run_sync(status)
            finally:
                release.set()
                await trio.to_thread.run_sync(holder.join, 5)
            assert (shown["records"], shown["projects"]) == (2, 1)
