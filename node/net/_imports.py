"""Keep py-libp2p's unused subsystems out of the node's memory: an import hook.

Why: ``import libp2p`` (0.8.1) costs about 72 MB of RSS, because ``libp2p/__init__.py``,
``libp2p.custom_types``, ``network/swarm.py``, ``host/basic_host.py`` and others import, at
module level, subsystems the node never uses: the QUIC transport (aioquic, pyOpenSSL,
service_identity), TLS security with AutoTLS/ACME (requests, httpx), the
WebSocket transport (trio-websocket), circuit relay v2 with the Kademlia DHT, bitswap
and IPNS records behind it, and dnspython (which in turn loads aioquic for DNS-over-QUIC).
Figure 7 (an idle node with 10 peers must stay within 100 MB) measured 104-112 MB.

What: ``install()`` (called by ``node/net/__init__.py``, so before anything of ours imports
libp2p) puts a narrow finder in front of ``sys.meta_path`` that serves hand-written modules in
place of a fixed list of modules, and nothing else. There are two kinds:

* Blocked subsystems (``libp2p.transport.quic``, ``libp2p.security.tls``,
  ``libp2p.transport.websocket``): each stand-in defines exactly the names that the rest of
  libp2p imports from it. Predicates answer truthfully (``is_quic_multiaddr`` checks the
  address as the original does); constants keep their values; exception classes are plain
  subclasses that nothing raises; every other class raises ``SubsystemBlocked`` when
  instantiated, and importing any other module of those packages raises it too, naming the
  subsystem. The node uses TCP + Noise + Yamux and passes its own ``sec_opt``, so none of them
  is ever instantiated; ``new_host()`` without ``sec_opt`` would be refused (it builds a
  ``TLSTransport``).
* Deferred package initialisers (``libp2p.relay``, ``libp2p.relay.circuit_v2``,
  ``multiaddr.resolvers``): stand-ins for the packages' ``__init__`` only, with the real
  directory as ``__path__``, so their submodules stay the real ones and the names the real
  ``__init__`` re-exports are imported on first access. libp2p's host needs only
  ``libp2p.relay.circuit_v2.nat.is_private_ip``, which no longer drags the whole relay and the
  DHT in. ``multiaddr.resolvers.DNSResolver`` becomes a proxy that creates the real resolver
  (and imports dnspython) the first time it is used, i.e. when a ``/dns*`` address is dialled;
  the swarm builds one at start-up that it never uses.

Measured with libp2p 0.8.1 (VmRSS of a fresh interpreter, which alone is 10.6 MB):
``import libp2p`` 82.8 -> 64.8 MB; ``import node.runtime, node.api`` 89.2 -> 72.2 MB; the idle
node of figure 7 (100,000 records, 10 peers) 108 -> 94 MB. The subsystems share dependencies,
so each item's saving is what leaving it out of the full list costs back (node.runtime +
node.api / libp2p alone):

=======================  ===========  ==========================================================
item                     saving (MB)  what no longer loads
=======================  ===========  ==========================================================
TLS and AutoTLS          10.8 / 11.2  requests, urllib3, charset_normalizer, httpx, dnspython
circuit relay            3.8 / 5.1    relay v2 and DCUtR, Kademlia DHT, bitswap, IPNS (cbor2)
DNS resolver (deferred)  5.3 / 5.2    dnspython, and aioquic that it loads for DNS-over-QUIC
QUIC                     2.9 / 3.1    aioquic, pylsqpack, service_identity, pyOpenSSL
WebSocket                0.8 / 1.3    trio-websocket (wsproto stays: Hypercorn uses it)
mDNS (deferred)          6.3 / 6.4    zeroconf, and asyncio with it (measured when added, against
                                      the hook without it: 73.9 -> 67.6 MB / 63.0 -> 56.5 MB)
=======================  ===========  ==========================================================

mDNS is deferred, not blocked: ``libp2p.discovery.mdns`` gets a deferred initialiser and its
``mdns`` module a stand-in whose ``MDNSDiscovery`` and ``create_mdns_discovery`` build
upstream's objects on first use (upstream's module is then loaded under ``MDNS_UPSTREAM`` from
its own file), so ``new_host(enable_mDNS=True)`` still works; the node's own mDNS
(``node.net._compat.mdns``) imports zeroconf when it runs. A stand-in module that defers a
whole upstream module offers it as ``__upstream__()`` (the patch fingerprints read it there).

Not stubbed, though measurable: pycryptodome behind ``libp2p.crypto.rsa`` (2.6 MB) and
coincurve behind ``libp2p.crypto.secp256k1`` (0.8 MB) decode the keys of remote peers, and
prometheus_client (1.0 MB) comes with ``libp2p.metrics.swarm.SwarmEvent``, which the swarm
instantiates on every dial: stubbing them would change behaviour on the node's paths.

The hook only acts for the exact versions it was written against (``WRITTEN_FOR``, read with
``importlib.metadata`` without importing the packages); for any other version, when libp2p is
already imported, or when the environment variable ``COMMONS_FULL_LIBP2P`` is set to anything
but ``""`` or ``"0"``, it does nothing and libp2p is imported in full. ``bench/bare_gossip.py``
does not import ``node``, so the bare-libp2p baseline of the benchmarks keeps measuring plain
py-libp2p.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DISABLE_ENV = "COMMONS_FULL_LIBP2P"

# The distributions whose code the stand-ins were written against, and their exact versions.
WRITTEN_FOR = {"libp2p": "0.8.1", "multiaddr": "0.2.0"}


class SubsystemBlocked(ImportError):
    """A part of py-libp2p that Commons keeps unloaded was imported or used."""


def _blocked(subsystem: str, what: str) -> SubsystemBlocked:
    return SubsystemBlocked(
        f"{what} is not available: Commons does not load py-libp2p's {subsystem} "
        f"(node/_libp2p_imports.py); set {DISABLE_ENV}=1 to import libp2p in full"
    )


def _blocked_class(module: types.ModuleType, name: str, subsystem: str) -> type:
    """A class that may appear in annotations and ``isinstance`` but not be instantiated."""

    def __init__(self: object, *args: object, **kwargs: object) -> None:
        raise _blocked(subsystem, f"{module.__name__}.{name}")

    cls = type(name, (), {"__init__": __init__, "__module__": module.__name__})
    setattr(module, name, cls)
    return cls


def _blocked_function(module: types.ModuleType, name: str, subsystem: str) -> None:
    def blocked(*args: object, **kwargs: object) -> Any:
        raise _blocked(subsystem, f"{module.__name__}.{name}")

    blocked.__name__ = blocked.__qualname__ = name
    blocked.__module__ = module.__name__
    setattr(module, name, blocked)


def _exception_class(module: types.ModuleType, name: str, base: type[Exception]) -> type:
    cls = type(name, (base,), {"__module__": module.__name__})
    setattr(module, name, cls)
    return cls


# --- Blocked: the QUIC transport ---------------------------------------------------------

QUIC = "QUIC transport"


def _quic_utils(m: types.ModuleType) -> None:
    def is_quic_multiaddr(maddr: object) -> bool:
        # The same test as the original: an IP, UDP and /quic or /quic-v1, not WebTransport.
        try:
            text = str(maddr)
        except Exception:
            return False
        has_ip = "/ip4/" in text or "/ip6/" in text
        return has_ip and "/udp/" in text and "/quic" in text and "/webtransport" not in text

    is_quic_multiaddr.__module__ = m.__name__
    m.is_quic_multiaddr = is_quic_multiaddr  # type: ignore[attr-defined]


def _quic_exceptions(m: types.ModuleType) -> None:
    # Caught by libp2p.network.stream.net_stream next to the muxer's errors; never raised.
    error = _exception_class(m, "QUICError", Exception)
    stream_error = _exception_class(m, "QUICStreamError", error)
    _exception_class(m, "QUICStreamClosedError", stream_error)
    _exception_class(m, "QUICStreamResetError", stream_error)


# --- Blocked: TLS security and AutoTLS -------------------------------------------------------

TLS = "TLS security transport (and AutoTLS)"


def _tls_transport(m: types.ModuleType) -> None:
    m.PROTOCOL_ID = "/tls/1.0.0"  # type: ignore[attr-defined]
    _blocked_class(m, "TLSTransport", TLS)


def _tls_acme(m: types.ModuleType) -> None:
    _blocked_class(m, "ACMEClient", TLS)
    _blocked_function(m, "compute_b36_peer_id", TLS)


# --- Blocked: the WebSocket transport --------------------------------------------------------

WEBSOCKET = "WebSocket transport"


# --- Deferred: relay package initialisers ----------------------------------------------------

# What the real ``libp2p/relay/circuit_v2/__init__.py`` re-exports, and from where.
_CIRCUIT_V2_EXPORTS = {
    "DCUtRProtocol": ("dcutr", "DCUtRProtocol"),
    "DCUTR_PROTOCOL_ID": ("dcutr", "PROTOCOL_ID"),
    "ReachabilityChecker": ("nat", "ReachabilityChecker"),
    "is_private_ip": ("nat", "is_private_ip"),
    "RelayDiscovery": ("discovery", "RelayDiscovery"),
    "PROTOCOL_ID": ("protocol", "PROTOCOL_ID"),
    "CircuitV2Protocol": ("protocol", "CircuitV2Protocol"),
    "RelayLimits": ("resources", "RelayLimits"),
    "RelayResourceManager": ("resources", "RelayResourceManager"),
    "Reservation": ("resources", "Reservation"),
    "RelayPerformanceTracker": ("performance_tracker", "RelayPerformanceTracker"),
    "RelayStats": ("performance_tracker", "RelayStats"),
    "CircuitV2Transport": ("transport", "CircuitV2Transport"),
}
# ``libp2p/relay/__init__.py`` re-exports these from circuit_v2.
_RELAY_EXPORTS = {
    name: ("circuit_v2", name)
    for name in (
        "PROTOCOL_ID",
        "CircuitV2Protocol",
        "CircuitV2Transport",
        "RelayDiscovery",
        "RelayLimits",
        "RelayResourceManager",
        "Reservation",
        "DCUTR_PROTOCOL_ID",
        "DCUtRProtocol",
        "ReachabilityChecker",
        "is_private_ip",
    )
}


def _lazy_exports(exports: Mapping[str, tuple[str, str]]) -> Callable[[types.ModuleType], None]:
    """A package initialiser whose re-exports import their real submodule on first access."""

    def build(m: types.ModuleType) -> None:
        def __getattr__(name: str) -> Any:
            if name not in exports:
                raise AttributeError(f"module {m.__name__!r} has no attribute {name!r}")
            submodule, attribute = exports[name]
            value = getattr(importlib.import_module(f"{m.__name__}.{submodule}"), attribute)
            setattr(m, name, value)
            return value

        m.__getattr__ = __getattr__  # type: ignore[method-assign]
        m.__all__ = list(exports)  # type: ignore[attr-defined]

    return build


# --- Deferred: multiaddr's DNS resolver ------------------------------------------------------


def _multiaddr_resolvers(m: types.ModuleType) -> None:
    # The cheap parts of the real package, as its __init__ exports them.
    base = importlib.import_module(f"{m.__name__}.base")
    util = importlib.import_module(f"{m.__name__}.util")
    resolver_protocol: type = base.Resolver
    for name in ("addr_len", "fqdn", "is_fqdn", "matches", "offset_addr", "resolve_all"):
        setattr(m, name, getattr(util, name))

    class DNSResolver(resolver_protocol):  # type: ignore[misc]
        """``multiaddr.resolvers.dns.DNSResolver``, created (with dnspython) on first use."""

        MAX_RECURSIVE_DEPTH = 32
        DEFAULT_TIMEOUT = 5.0

        def __init__(self) -> None:
            self._real: Any = None

        def _load(self) -> Any:
            if self._real is None:
                real = importlib.import_module(f"{m.__name__}.dns")
                self._real = real.DNSResolver()
            return self._real

        async def resolve(self, maddr: Any, options: dict[str, Any] | None = None) -> Any:
            return await self._load().resolve(maddr, options)

        def __getattr__(self, name: str) -> Any:
            if name == "_real":  # not set yet: __init__ was bypassed
                raise AttributeError(name)
            return getattr(self._load(), name)

    DNSResolver.__module__ = m.__name__
    m.DNSResolver = DNSResolver  # type: ignore[attr-defined]
    m.DNSADDR_TXT_PREFIX = "dnsaddr="  # type: ignore[attr-defined]
    m.Resolver = resolver_protocol  # type: ignore[attr-defined]
    m.__all__ = [  # type: ignore[attr-defined]
        "DNSADDR_TXT_PREFIX",
        "DNSResolver",
        "Resolver",
        "addr_len",
        "fqdn",
        "is_fqdn",
        "matches",
        "offset_addr",
        "resolve_all",
    ]


# --- Deferred: mDNS discovery (zeroconf) -----------------------------------------------------

# What the real ``libp2p/discovery/mdns/__init__.py`` re-exports, and from where.
_MDNS_EXPORTS = {
    "MDNSDiscovery": ("mdns", "MDNSDiscovery"),
    "create_mdns_discovery": ("mdns", "create_mdns_discovery"),
    "PeerBroadcaster": ("broadcaster", "PeerBroadcaster"),
    "PeerListener": ("listener", "PeerListener"),
}
#: The name upstream's ``libp2p/discovery/mdns/mdns.py`` is loaded under, once something
#: needs more of it than the stand-in holds.
MDNS_UPSTREAM = "libp2p.discovery.mdns._upstream_mdns"


def _mdns_module(m: types.ModuleType) -> None:
    """``libp2p.discovery.mdns.mdns``, whose ``import zeroconf`` (and asyncio with it, 7 MB)
    the host's module pays at import for a discovery it builds only with ``enable_mDNS``:
    the two names the host imports are proxies that load upstream's module on first use,
    its constants are copied, and any other name is read from upstream's module (loaded
    under ``MDNS_UPSTREAM``, its own file, its relative imports resolved in the real package).
    The node's mDNS (``node.net._compat.mdns``) loads zeroconf itself, when it runs."""

    def upstream() -> types.ModuleType:
        loaded = sys.modules.get(MDNS_UPSTREAM)
        if loaded is None:
            package = importlib.import_module(m.__name__.rpartition(".")[0])
            origin = os.path.join(next(iter(package.__path__)), "mdns.py")
            spec = importlib.util.spec_from_file_location(MDNS_UPSTREAM, origin)
            assert spec is not None
            assert spec.loader is not None
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[MDNS_UPSTREAM] = loaded
            try:
                spec.loader.exec_module(loaded)
            except BaseException:
                del sys.modules[MDNS_UPSTREAM]
                raise
        return loaded

    class MDNSDiscovery:
        """Upstream's ``MDNSDiscovery``, built (with zeroconf) when instantiated."""

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            return upstream().MDNSDiscovery(*args, **kwargs)

    def create_mdns_discovery(*args: Any, **kwargs: Any) -> Any:
        return upstream().create_mdns_discovery(*args, **kwargs)

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {m.__name__!r} has no attribute {name!r}")
        return getattr(upstream(), name)

    for each in (MDNSDiscovery, create_mdns_discovery):
        each.__module__ = m.__name__
    m.MDNSDiscovery = MDNSDiscovery  # type: ignore[attr-defined]
    m.create_mdns_discovery = create_mdns_discovery  # type: ignore[attr-defined]
    m.SERVICE_TYPE = "_p2p._udp.local."  # type: ignore[attr-defined]
    m.MCAST_PORT = 5353  # type: ignore[attr-defined]
    m.MCAST_ADDR = "224.0.0.251"  # type: ignore[attr-defined]
    m.__getattr__ = __getattr__  # type: ignore[method-assign]
    m.__upstream__ = upstream  # type: ignore[attr-defined]


# --- The table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandIn:
    """One module served by the hook instead of the installed one."""

    dist: str  # the distribution it belongs to, whose version must be WRITTEN_FOR's
    subsystem: str
    build: Callable[[types.ModuleType], None]
    package: bool = False
    real_path: bool = False  # a deferred initialiser: submodules come from the real directory


def _nothing(m: types.ModuleType) -> None:
    pass


def _classes(*names: str, subsystem: str) -> Callable[[types.ModuleType], None]:
    def build(m: types.ModuleType) -> None:
        for name in names:
            _blocked_class(m, name, subsystem)

    return build


STAND_INS: dict[str, StandIn] = {
    # imported by libp2p/__init__.py, libp2p.custom_types, network/swarm.py and
    # network/stream/net_stream.py
    "libp2p.transport.quic": StandIn("libp2p", QUIC, _nothing, package=True),
    "libp2p.transport.quic.utils": StandIn("libp2p", QUIC, _quic_utils),
    "libp2p.transport.quic.transport": StandIn(
        "libp2p", QUIC, _classes("QUICTransport", subsystem=QUIC)
    ),
    "libp2p.transport.quic.config": StandIn(
        "libp2p", QUIC, _classes("QUICTransportConfig", subsystem=QUIC)
    ),
    "libp2p.transport.quic.stream": StandIn("libp2p", QUIC, _classes("QUICStream", subsystem=QUIC)),
    "libp2p.transport.quic.connection": StandIn(
        "libp2p", QUIC, _classes("QUICConnection", subsystem=QUIC)
    ),
    "libp2p.transport.quic.exceptions": StandIn("libp2p", QUIC, _quic_exceptions),
    # imported by libp2p/__init__.py, libp2p/security/__init__.py and host/basic_host.py
    "libp2p.security.tls": StandIn("libp2p", TLS, _nothing, package=True),
    "libp2p.security.tls.transport": StandIn("libp2p", TLS, _tls_transport),
    "libp2p.security.tls.autotls": StandIn("libp2p", TLS, _nothing, package=True),
    "libp2p.security.tls.autotls.acme": StandIn("libp2p", TLS, _tls_acme),
    "libp2p.security.tls.autotls.broker": StandIn(
        "libp2p", TLS, _classes("BrokerClient", subsystem=TLS)
    ),
    # imported by libp2p/transport/__init__.py, and lazily by transport/manager.py for a
    # WebSocket listen address
    "libp2p.transport.websocket": StandIn("libp2p", WEBSOCKET, _nothing, package=True),
    "libp2p.transport.websocket.transport": StandIn(
        "libp2p", WEBSOCKET, _classes("WebsocketTransport", subsystem=WEBSOCKET)
    ),
    "libp2p.transport.websocket.connection": StandIn(
        "libp2p", WEBSOCKET, _classes("P2PWebSocketConnection", subsystem=WEBSOCKET)
    ),
    # host/basic_host.py imports libp2p.relay.circuit_v2.nat.is_private_ip
    "libp2p.relay": StandIn(
        "libp2p", "circuit relay", _lazy_exports(_RELAY_EXPORTS), package=True, real_path=True
    ),
    "libp2p.relay.circuit_v2": StandIn(
        "libp2p",
        "circuit relay",
        _lazy_exports(_CIRCUIT_V2_EXPORTS),
        package=True,
        real_path=True,
    ),
    # host/basic_host.py imports libp2p.discovery.mdns.mdns (and with it the package)
    "libp2p.discovery.mdns": StandIn(
        "libp2p", "mDNS discovery", _lazy_exports(_MDNS_EXPORTS), package=True, real_path=True
    ),
    "libp2p.discovery.mdns.mdns": StandIn("libp2p", "mDNS discovery", _mdns_module),
    # libp2p's swarm and TCP transport import multiaddr.resolvers.DNSResolver
    "multiaddr.resolvers": StandIn(
        "multiaddr", "DNS resolver", _multiaddr_resolvers, package=True, real_path=True
    ),
}

# Packages whose every module is a stand-in: importing one not listed above is refused.
BLOCKED_PACKAGES = {
    "libp2p.transport.quic": QUIC,
    "libp2p.security.tls": TLS,
    "libp2p.transport.websocket": WEBSOCKET,
}


class _StandInLoader(importlib.abc.Loader):
    def __init__(self, stand_in: StandIn | None, refusal: SubsystemBlocked | None = None) -> None:
        self._stand_in = stand_in
        self._refusal = refusal

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        if self._stand_in is None:
            assert self._refusal is not None
            raise self._refusal
        module.__doc__ = (
            f"Commons' stand-in for {module.__name__} ({self._stand_in.subsystem}); "
            "see node/_libp2p_imports.py."
        )
        self._stand_in.build(module)


class StandInFinder(importlib.abc.MetaPathFinder):
    """Serves ``stand_ins`` by name and refuses the rest of ``blocked_packages``."""

    def __init__(self, stand_ins: Mapping[str, StandIn], blocked_packages: Mapping[str, str]):
        self.stand_ins = dict(stand_ins)
        self.blocked_packages = dict(blocked_packages)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        stand_in = self.stand_ins.get(fullname)
        if stand_in is not None:
            spec = importlib.machinery.ModuleSpec(
                fullname, _StandInLoader(stand_in), is_package=stand_in.package
            )
            if stand_in.real_path:
                real = importlib.machinery.PathFinder.find_spec(fullname, path)
                if real is None or not real.submodule_search_locations:
                    return None  # not where it was: let the normal import machinery decide
                spec.submodule_search_locations = list(real.submodule_search_locations)
            return spec
        for package, subsystem in self.blocked_packages.items():
            if fullname.startswith(package + "."):
                refusal = _blocked(subsystem, fullname)
                return importlib.machinery.ModuleSpec(fullname, _StandInLoader(None, refusal))
        return None


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def stand_ins_for(version_of: Callable[[str], str | None] = installed_version) -> StandInFinder:
    """The finder for the distributions installed in exactly the version of ``WRITTEN_FOR``."""
    matching = {dist for dist, version in WRITTEN_FOR.items() if version_of(dist) == version}
    stand_ins = {name: s for name, s in STAND_INS.items() if s.dist in matching}
    blocked = {name: sub for name, sub in BLOCKED_PACKAGES.items() if name in stand_ins}
    return StandInFinder(stand_ins, blocked)


def install(
    version_of: Callable[[str], str | None] = installed_version,
    environ: Mapping[str, str] = os.environ,
) -> StandInFinder | None:
    """Put the finder in front of ``sys.meta_path``, if it applies; returns it, or None.

    Each stand-in is served only if its distribution has exactly the version in
    ``WRITTEN_FOR``. Nothing is installed when ``COMMONS_FULL_LIBP2P`` is set, when libp2p is
    already imported (the stand-ins would mix with the real modules), or when no distribution
    matches. Installing twice returns the finder already installed.
    """
    if environ.get(DISABLE_ENV, "") not in ("", "0"):
        return None
    for finder in sys.meta_path:
        if isinstance(finder, StandInFinder):
            return finder
    if "libp2p" in sys.modules:
        return None
    finder = stand_ins_for(version_of)
    if not finder.stand_ins:
        return None
    sys.meta_path.insert(0, finder)
    return finder
