"""The import hook that keeps py-libp2p's unused subsystems out of memory.

The stand-ins are exercised on modules built from a fresh finder (not through ``sys.modules``),
so the tests do not depend on whether this process installed the hook. The whole node test
suite, the system tests and the reliability tests run with the hook installed, which is what
shows that nothing on the node's paths touches a stand-in.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import multiaddr
import pytest

from node.net import _imports as hook

# Modules that `import node.runtime` loads only through the subsystems the hook keeps out.
KEPT_OUT = [
    "aioquic",
    "service_identity",
    "requests",
    "dns",
    "trio_websocket",
    "libp2p.relay.circuit_v2.transport",
    "zeroconf",
    "asyncio",
]
# The DHT of project providers (node/net/dht.py) uses libp2p.kad_dht, which imports
# libp2p.bitswap.cid and with it the bitswap package: both are loaded now, by design.
# Measured: 17 MB. The bound only has to show that the hook saves memory at all.
MIN_SAVING_KB = 8 * 1024

PROBE = """
import json, re, sys
import node.runtime
with open("/proc/self/status") as f:
    rss_kb = int(re.search(r"VmRSS:\\s+(\\d+)", f.read()).group(1))
finders = [type(f).__name__ for f in sys.meta_path]
print(json.dumps({"rss_kb": rss_kb, "modules": sorted(sys.modules), "finders": finders}))
"""


def _run(script: str, **env: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if k != hook.DISABLE_ENV}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def _fresh_finder() -> hook.StandInFinder:
    return hook.stand_ins_for(lambda dist: hook.WRITTEN_FOR[dist])


def _build(name: str) -> types.ModuleType:
    """The stand-in for ``name``, built apart from ``sys.modules``."""
    parent, _, _ = name.rpartition(".")
    path = importlib.import_module(parent).__path__ if hook.STAND_INS[name].real_path else None
    spec = _fresh_finder().find_spec(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_installed_versions_are_the_ones_the_stand_ins_were_written_for() -> None:
    installed = {dist: hook.installed_version(dist) for dist in hook.WRITTEN_FOR}
    assert installed == hook.WRITTEN_FOR, "review node/_libp2p_imports.py for the new versions"


def test_importing_the_node_keeps_the_unused_subsystems_out() -> None:
    hooked = _run(PROBE)
    full = _run(PROBE, **{hook.DISABLE_ENV: "1"})
    assert isinstance(hooked["modules"], list)
    assert isinstance(full["modules"], list)
    assert [m for m in KEPT_OUT if m in hooked["modules"]] == []
    assert [m for m in KEPT_OUT if m not in full["modules"]] == []
    assert "StandInFinder" in hooked["finders"]
    assert "StandInFinder" not in full["finders"]
    assert isinstance(hooked["rss_kb"], int)
    assert isinstance(full["rss_kb"], int)
    assert hooked["rss_kb"] < full["rss_kb"] - MIN_SAVING_KB


def test_another_libp2p_version_is_refused_unless_allowed_and_gets_no_stand_in() -> None:
    script = """
import importlib.metadata, json, os, sys
real = importlib.metadata.version
importlib.metadata.version = lambda dist: "0.8.2" if dist == "libp2p" else real(dist)
try:
    import node.net
    refused = ""
except ImportError as exc:
    refused = str(exc)
os.environ["COMMONS_ALLOW_LIBP2P_VERSION"] = "1"
import node.net
from node.net._imports import StandInFinder
finders = [f for f in sys.meta_path if isinstance(f, StandInFinder)]
print(json.dumps({"refused": refused,
                  "stand_ins": sorted(n for f in finders for n in f.stand_ins)}))
"""
    result = _run(script)
    assert "0.8.2 is installed" in str(result["refused"])
    assert result["stand_ins"] == ["multiaddr.resolvers"]


def test_no_matching_version_means_no_stand_in() -> None:
    assert hook.stand_ins_for(lambda dist: "0.0.1").stand_ins == {}
    assert hook.stand_ins_for(lambda dist: None).stand_ins == {}
    libp2p_only = hook.stand_ins_for(lambda dist: "0.8.1" if dist == "libp2p" else None)
    assert libp2p_only.stand_ins
    assert all(name.startswith("libp2p.") for name in libp2p_only.stand_ins)


def test_the_environment_variable_or_an_imported_libp2p_disables_the_hook() -> None:
    assert hook.install(environ={hook.DISABLE_ENV: "1"}) is None
    script = """
import json, sys, types
sys.modules["libp2p"] = types.ModuleType("libp2p")
import node
print(json.dumps({"finders": [type(f).__name__ for f in sys.meta_path]}))
"""
    finders = _run(script)["finders"]
    assert isinstance(finders, list)
    assert "StandInFinder" not in finders


@pytest.mark.parametrize(
    ("module", "name", "subsystem"),
    [
        ("libp2p.transport.quic.transport", "QUICTransport", "QUIC transport"),
        ("libp2p.transport.quic.config", "QUICTransportConfig", "QUIC transport"),
        ("libp2p.security.tls.transport", "TLSTransport", "TLS security transport"),
        ("libp2p.security.tls.autotls.acme", "ACMEClient", "TLS security transport"),
        ("libp2p.security.tls.autotls.broker", "BrokerClient", "TLS security transport"),
        ("libp2p.transport.websocket.transport", "WebsocketTransport", "WebSocket transport"),
    ],
)
def test_a_stand_in_class_refuses_to_be_instantiated(
    module: str, name: str, subsystem: str
) -> None:
    cls = getattr(_build(module), name)
    assert not isinstance(object(), cls)  # fit for annotations and isinstance
    with pytest.raises(hook.SubsystemBlocked, match=f"{name} is not available.*{subsystem}") as e:
        cls(b"any", config=None)
    assert hook.DISABLE_ENV in str(e.value)


def test_a_stand_in_function_refuses_to_run() -> None:
    acme = _build("libp2p.security.tls.autotls.acme")
    with pytest.raises(hook.SubsystemBlocked, match=r"compute_b36_peer_id.*TLS"):
        acme.compute_b36_peer_id("peer")


def test_a_blocked_package_refuses_its_other_modules() -> None:
    spec = _fresh_finder().find_spec("libp2p.transport.quic.listener", None)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(ImportError, match=r"libp2p\.transport\.quic\.listener.*QUIC"):
        spec.loader.exec_module(module)


def test_the_finder_serves_nothing_else() -> None:
    finder = _fresh_finder()
    for name in ["libp2p", "libp2p.transport", "libp2p.transport.tcp.tcp", "libp2p.relayx", "dns"]:
        assert finder.find_spec(name, None) is None


@pytest.mark.parametrize(
    ("address", "quic"),
    [
        ("/ip4/127.0.0.1/tcp/4001", False),
        ("/ip4/127.0.0.1/udp/4001/quic-v1", True),
        ("/ip4/127.0.0.1/udp/4001/quic", True),
        ("/ip6/::1/udp/4001/quic-v1", True),
        ("/ip4/127.0.0.1/udp/4001/quic-v1/webtransport", False),
        ("/dns4/example.org/udp/4001/quic-v1", False),
    ],
)
def test_is_quic_multiaddr_answers_like_the_original(address: str, quic: bool) -> None:
    utils = _build("libp2p.transport.quic.utils")
    assert utils.is_quic_multiaddr(multiaddr.Multiaddr(address)) is quic


def test_quic_stream_errors_are_exceptions_nothing_else_is_an_instance_of() -> None:
    errors = _build("libp2p.transport.quic.exceptions")
    for name in ("QUICStreamClosedError", "QUICStreamResetError"):
        cls = getattr(errors, name)
        assert issubclass(cls, Exception)
        assert not isinstance(ValueError("x"), cls)


def _imports_from(tree: ast.AST, module: str, package: str) -> list[tuple[str, str | None]]:
    """(module, name) pairs of every import in ``tree``; ``name`` None for ``import x``."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in hook.STAND_INS:
                    found.append((full, None))  # `from package import submodule`
                else:
                    found.append((base, alias.name))
    return found


def _libp2p_sources() -> list[tuple[str, Path]]:
    spec = importlib.util.find_spec("libp2p")
    assert spec is not None
    assert spec.origin is not None
    root = Path(spec.origin).parent
    out = []
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), path))
    return out


def test_the_stand_ins_define_every_name_libp2p_imports_from_them() -> None:
    blocked = tuple(hook.BLOCKED_PACKAGES)
    checked = 0
    for module, path in _libp2p_sources():
        if module.startswith(blocked) or module in hook.STAND_INS:
            continue  # the stand-ins replace these
        text = path.read_text(encoding="utf-8")
        if not any(word in text for word in ("quic", "tls", "websocket", "relay")):
            continue
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for imported, name in _imports_from(ast.parse(text), module, package):
            if imported.startswith(tuple(f"{b}." for b in blocked)) or imported in blocked:
                assert imported in hook.STAND_INS, f"{module} imports {imported}"
            stand_in = hook.STAND_INS.get(imported)
            if stand_in is None or name is None or stand_in.real_path:
                continue
            built = _build(imported)
            assert hasattr(built, name), f"{module} imports {name} from {imported}"
            checked += 1
    assert checked >= 15


def _reexports(init: Path, package: str) -> dict[str, tuple[str, str]]:
    """What a real package ``__init__`` imports: exported name -> (submodule, name)."""
    out = {}
    for node in ast.walk(ast.parse(init.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            submodule = (node.module or "").removeprefix(f"{package}.")
            for alias in node.names:
                out[alias.asname or alias.name] = (submodule, alias.name)
    return out


@pytest.mark.parametrize(
    ("package", "exports"),
    [
        ("libp2p.relay", hook._RELAY_EXPORTS),
        ("libp2p.relay.circuit_v2", hook._CIRCUIT_V2_EXPORTS),
        ("libp2p.discovery.mdns", hook._MDNS_EXPORTS),
    ],
)
def test_a_deferred_initialiser_exports_what_the_real_one_does(
    package: str, exports: dict[str, tuple[str, str]]
) -> None:
    spec = importlib.machinery.PathFinder.find_spec(
        package, importlib.import_module(package.rpartition(".")[0]).__path__
    )
    assert spec is not None
    assert spec.origin is not None
    assert _reexports(Path(spec.origin), package) == exports


def test_a_deferred_export_is_the_real_object() -> None:
    from libp2p.relay.circuit_v2 import nat

    assert _build("libp2p.relay.circuit_v2").is_private_ip is nat.is_private_ip
    assert _build("libp2p.relay").is_private_ip is nat.is_private_ip
    with pytest.raises(AttributeError):
        getattr(_build("libp2p.relay"), "CircuitV3")  # noqa: B009


async def test_the_deferred_dns_resolver_creates_the_real_one_when_used() -> None:
    from multiaddr.resolvers import dns

    resolvers = _build("multiaddr.resolvers")
    spec = importlib.machinery.PathFinder.find_spec("multiaddr.resolvers", multiaddr.__path__)
    assert spec is not None
    assert spec.origin is not None
    real_exports = set(_reexports(Path(spec.origin), "multiaddr.resolvers"))
    assert set(resolvers.__all__) == real_exports
    assert all(hasattr(resolvers, name) for name in real_exports)
    assert resolvers.DNSADDR_TXT_PREFIX == dns.DNSADDR_TXT_PREFIX
    for constant in ("MAX_RECURSIVE_DEPTH", "DEFAULT_TIMEOUT"):
        assert getattr(resolvers.DNSResolver, constant) == getattr(dns.DNSResolver, constant)

    resolver = resolvers.DNSResolver()
    assert resolver._real is None
    tcp = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/4001")
    assert await resolver.resolve(tcp) == [tcp]
    assert isinstance(resolver._real, dns.DNSResolver)
    assert resolver._clean_quotes('"a"') == "a"  # anything else is the real resolver's


def test_the_mdns_stand_in_defers_upstream_until_it_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``libp2p.discovery.mdns.mdns`` without zeroconf: its constants are upstream's, its two
    names the host imports build upstream's objects, and any other name is upstream's."""
    import libp2p.discovery.mdns.broadcaster as broadcaster

    built = _build("libp2p.discovery.mdns.mdns")
    upstream = built.__upstream__()
    assert upstream.__name__ == hook.MDNS_UPSTREAM
    assert upstream.__file__.endswith("libp2p/discovery/mdns/mdns.py")
    for name in ("SERVICE_TYPE", "MCAST_PORT", "MCAST_ADDR"):
        assert getattr(built, name) == getattr(upstream, name), name
    assert built.PeerBroadcaster is broadcaster.PeerBroadcaster  # read through to upstream
    with pytest.raises(AttributeError):
        built.no_such_name  # noqa: B018 - the attribute access is the test
    # Upstream's own would open multicast sockets: what matters is what they are given.
    monkeypatch.setattr(upstream, "MDNSDiscovery", lambda *a, **k: ("built", a, k))
    monkeypatch.setattr(upstream, "create_mdns_discovery", lambda *a, **k: ("created", a, k))
    assert built.MDNSDiscovery("swarm", port=4001) == ("built", ("swarm",), {"port": 4001})
    assert built.create_mdns_discovery("net", host="h") == ("created", ("net",), {"host": "h"})
