"""Security basics (guarantee 7 of RELIABILITY.md), through the real ``commons`` command.

- ``identity.key`` and ``api.token`` are created 0600 (the home 0700), and a node refuses to
  start, with one clear ``error:`` line and no traceback, when the key is readable by others;
- the API binds to loopback by default (checked on the default address, inside a private
  network namespace where port 4711 is surely free) and the node warns loudly when told to
  listen beyond loopback;
- nothing secret reaches a log: after a session with debug logging (authoring through the
  CLI and the API, a refused write, a sync between two nodes, a stop), neither the API token
  nor the private key (its seed in hex or base64, or any line of its PEM) appears in the
  nodes' logs or the CLI's output;
- every transport connection is encrypted: a plaintext-only libp2p dialer is refused, and
  by hand, multistream-select offers Noise and nothing else;
- a peer cannot publish as another author: a record whose author is Alice but which Mallory
  signed is refused with ``bad-signature`` by gossip, sync, the API and import (the same case
  runs through every path in test_hostile.py); here Mallory also tries to pass for Alice at
  the connection level, dialling a node while claiming Alice's peer id, and fails.
"""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import trio
from hostile_records import ALICE, MALLORY, sign_loose
from netns_lab import NetnsLab, NetnsUnavailable
from reliability_harness import addr, running, seed_of, wait_until
from system_harness import COMMONS, Nodes, run_cli
from system_harness import wait_until as wait_for

from node.net.transport import TransportConfig, TransportError, open_transport
from protocol.signing import seed_from_pem
from protocol.testing import RecordFactory
from protocol.validation import META_TOPIC


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_key_and_token_are_private_and_a_readable_key_is_refused(nodes: Nodes) -> None:
    node = nodes.home("alice")
    assert _mode(node.home / "identity.key") == 0o600
    assert _mode(node.home / "api.token") == 0o600
    assert _mode(node.home) & 0o077 == 0
    for mode in (0o644, 0o604):
        (node.home / "identity.key").chmod(mode)
        result = run_cli(
            node.home,
            "node",
            "run",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--api",
            "127.0.0.1:0",
            "--no-mdns",
            json=False,
            expect=1,
            timeout=30,
        )
        (line,) = result.error_lines
        assert "identity.key" in line, line
        assert f"{mode:o}" in line, line
        assert "chmod 600" in line, line
        assert not (node.home / "node.json").exists()
    (node.home / "identity.key").chmod(0o600)
    node.start()
    assert node.status()["running"] is True


def test_api_is_on_loopback_by_default_and_warns_otherwise(nodes: Nodes, tmp_path: Path) -> None:
    # The default address, 127.0.0.1:4711, in a namespace of our own where it must be free.
    try:
        lab = NetnsLab(1, net=232).up()
    except NetnsUnavailable as exc:
        pytest.skip(f"no network namespace for the default-address check: {exc}")
    home = tmp_path / "default"
    run_cli(home, "init")
    log = tmp_path / "default.log"
    proc = None
    try:
        with log.open("wb") as out:
            argv = [*lab.exec_prefix(0), str(COMMONS), "--home", str(home), "node", "run"]
            proc = subprocess.Popen([*argv, "--no-mdns"], stdout=out, stderr=out)
        wait_for(lambda: (home / "node.json").exists(), timeout=30, what="the default node")
        listening = subprocess.run(
            [*lab.exec_prefix(0), "ss", "-Hltn"], capture_output=True, text=True, check=True
        ).stdout
        api_sockets = [line.split()[3] for line in listening.splitlines() if ":4711" in line]
        assert api_sockets == ["127.0.0.1:4711"], listening
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
        lab.down()

    # Told to listen beyond loopback, the node says so at WARNING level.
    node = nodes.home("wide")
    node.start(extra=("--api", "0.0.0.0:0"))
    text = node.log()
    warnings = [
        line for line in text.splitlines() if "WARNING" in line and "beyond loopback" in line
    ]
    assert warnings, text[-3000:]


def test_no_secret_in_logs(nodes: Nodes) -> None:
    a = nodes.home("a")
    b = nodes.home("b")
    a.start(extra=("--log-level", "debug"))
    b.start(a, extra=("--log-level", "debug"))
    project = a.cli("project", "create", "Secretive")["id"]
    a.post(f"/api/v1/projects/{project}/contributions", {"type": "code", "title": "via API"})
    b.cli("contribute", project, "--type", "docs", "--title", "via CLI")
    refused = a.request("POST", "/api/v1/projects", auth="not-the-token", json={"name": "x"})
    assert refused.status_code == 401
    b.cli("sync", a.addr)
    a.cli("export", str(a.home.parent / "out.bundle"))
    a.stop()
    b.stop()

    secrets = {}
    for node in (a, b):
        pem = (node.home / "identity.key").read_bytes()
        seed = seed_from_pem(pem)
        secrets[f"{node.name} token"] = node.token
        secrets[f"{node.name} seed hex"] = seed.hex()
        secrets[f"{node.name} seed base64"] = base64.b64encode(seed).decode()
        for line in pem.decode().splitlines():
            if not line.startswith("-----"):
                secrets[f"{node.name} PEM line"] = line
    texts = {f"{n.name}.log": n.log(limit=50_000_000) for n in (a, b)}
    texts["CLI"] = nodes.cli_log.text()
    assert "DEBUG" in texts["a.log"], "the session did not log at debug level"
    # The refused call is in the access lines, its token is not (checked below).
    assert "POST /api/v1/projects -> 401" in texts["a.log"], texts["a.log"][-3000:]
    for where, text in texts.items():
        for what, secret in secrets.items():
            assert secret not in text, f"{what} appears in {where}"


async def _no_dials() -> None:
    """Stands in for libp2p's AutoConnector, which would dial whatever it hears of."""


async def test_plaintext_dialers_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from libp2p import new_host
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.custom_types import TProtocol
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX
    from libp2p.stream_muxer.yamux.yamux import Yamux
    from multiaddr import Multiaddr

    with trio.fail_after(30):
        async with running(tmp_path, "b") as b:
            pair = create_new_key_pair()
            host = new_host(
                key_pair=pair,
                sec_opt={TProtocol(PLAINTEXT_PROTOCOL_ID): InsecureTransport(pair)},
                muxer_opt={TProtocol(YAMUX): Yamux},
            )
            host.get_network().auto_connector.maybe_connect = _no_dials  # type: ignore[attr-defined]
            async with host.run([Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                with pytest.raises(Exception, match="unable to connect"):
                    await host.connect(info_from_p2p_addr(Multiaddr(addr(b))))
                why = [r.getMessage() for r in caplog.records if r.name.startswith("libp2p")]
                assert any("failed to negotiate the secure protocol" in m for m in why), why
                assert not b.transport.connected_peers()
            # The same dial with Noise (our transport) works: the refusal was about security.
            config = TransportConfig(seed=seed_of("noise-dialer"), listen=("/ip4/127.0.0.1/tcp/0",))
            async with open_transport(config) as noisy:
                assert await noisy.connect(addr(b)) == b.peer_id


async def test_nobody_can_publish_or_connect_as_someone_else(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    forged = sign_loose(
        {
            "v": 1,
            "kind": "profile",
            "author": ALICE.public_key,
            "ts": now - 1000,
            "body": {"name": "Alice (not really)"},
        },
        MALLORY,
    )
    honest = RecordFactory(now_ms=now - 5000).profile(MALLORY, name="Mallory")
    with trio.fail_after(40):
        async with (
            running(tmp_path, "b", api="127.0.0.1:0") as b,
            running(tmp_path, "c") as c,
        ):
            await c.transport.connect(addr(b))
            await wait_until(lambda: c.peer_id in b.transport.mesh_peers(META_TOPIC), 20)
            # Mallory, with her own libp2p identity, gossips the forgery and an honest record.
            mallory = TransportConfig(seed=MALLORY.seed, listen=("/ip4/127.0.0.1/tcp/0",))
            async with open_transport(mallory) as evil:
                await evil.connect(addr(b))
                await wait_until(lambda: any(evil._pubsub.peer_topics.get(META_TOPIC, ())))
                await evil.publish(META_TOPIC, forged)
                await evil.publish(META_TOPIC, honest.raw)
                await wait_until(lambda: c.store.has(honest.id))
                assert b.metrics.get("commons_gossip_rejected_total", reason="bad-signature") == 1
            async with httpx.AsyncClient(base_url=b.api_url or "") as http:
                token = b.home.api_token()
                response = await http.post(
                    "/api/v1/records",
                    content=forged,
                    headers={"Authorization": f"Bearer {token}"},
                )
            assert response.status_code == 422
            assert response.json()["error"].startswith("bad-signature: ")
            assert not {r.author for r in b.store.profiles()} & {ALICE.public_key}
            assert not {r.author for r in c.store.profiles()} & {ALICE.public_key}

            # Claiming Alice's peer id when dialling fails: Noise proves the key, or nothing.
            alice_addr = addr(b).rsplit("/p2p/", 1)[0] + f"/p2p/{ALICE.peer_id}"
            other = TransportConfig(seed=seed_of("dialer"), listen=("/ip4/127.0.0.1/tcp/0",))
            async with open_transport(other) as dialer:
                with pytest.raises(TransportError):
                    await dialer.connect(alice_addr)
            assert ALICE.peer_id not in {p.peer_id for p in b.transport.connected_peers()}


def test_home_permissions_are_not_loosened_by_the_node(nodes: Nodes) -> None:
    """Running a node (and authoring) leaves the key and token at 0600."""
    node = nodes.start("keeper")
    node.post("/api/v1/profiles", {"name": "Keeper"})
    node.stop()
    assert _mode(node.home / "identity.key") == 0o600
    assert _mode(node.home / "api.token") == 0o600
    assert os.stat(node.home / "ledger.db").st_mode & stat.S_IWOTH == 0
