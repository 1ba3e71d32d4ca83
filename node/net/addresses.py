"""The addresses a node advertises: ``announce`` and ``no_announce`` (config.toml, flags).

A node tells its peers where to dial it in libp2p's identify message, and the peers remember
and pass on those addresses. By default that is every listen address, a wildcard (0.0.0.0,
::) expanded to the machine's interface addresses: right on a LAN, wrong for a seed on a VPS
behind NAT or a proxy, whose interface address is private and whose public one (or DNS name)
is known only to its operator. ``announce`` replaces the list outright; ``no_announce``
removes addresses from it (kubo's ``Addresses.Announce`` and ``NoAnnounce``).

An ``announce`` entry is a multiaddr a peer can dial, ``/ip4/203.0.113.7/tcp/4710`` or
``/dns4/seed.example.org/tcp/4710``, optionally ending in this node's own ``/p2p/<peer id>``.
A ``no_announce`` entry is either an address prefix (``/ip4/10.0.0.5`` leaves out every port
of that address; a full address only itself) or a network, ``/ip4/10.0.0.0/ipcidr/8``, which
leaves out every address of it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import multiaddr
from libp2p.utils.address_validation import expand_wildcard_address

__all__ = [
    "AddressError",
    "Announcement",
    "expand_wildcards",
]

#: The protocols a dialable announced address starts with, and the transport it needs.
_HOST_PROTOCOLS = ("ip4", "ip6", "dns", "dns4", "dns6")
_LONGEST = 300


class AddressError(ValueError):
    """An ``announce`` or ``no_announce`` entry that cannot mean what it should."""


def _parse(text: str, what: str) -> multiaddr.Multiaddr:
    shown = text[:_LONGEST]
    if len(text) > _LONGEST or not text.startswith("/"):
        raise AddressError(f"{what} {shown!r} is not a multiaddr")
    try:
        return multiaddr.Multiaddr(text)
    except Exception:
        raise AddressError(f"{what} {shown!r} is not a multiaddr") from None


def _check_announce(text: str, peer_id: str) -> str:
    """An announced address without its ``/p2p/`` part, checked to be dialable."""
    addr = _parse(text, "announce address")
    names = [p.name for p in addr.protocols()]
    if len(names) < 2 or names[0] not in _HOST_PROTOCOLS or names[1] != "tcp":
        raise AddressError(
            f"announce address {text!r} must be a host (/ip4, /ip6, /dns, /dns4, /dns6) "
            "and a /tcp port, like /ip4/203.0.113.7/tcp/4710"
        )
    if int(addr.value_for_protocol("tcp")) == 0:
        raise AddressError(f"announce address {text!r} has port 0: name the port peers dial")
    if "p2p" in names:
        if names[-1] != "p2p" or addr.value_for_protocol("p2p") != peer_id:
            raise AddressError(
                f"announce address {text!r} names another peer: end it with /p2p/{peer_id} "
                "or leave the /p2p/ part out"
            )
        addr = addr.decapsulate(multiaddr.Multiaddr(f"/p2p/{peer_id}"))
    return str(addr)


@dataclass(frozen=True)
class _Filter:
    """One ``no_announce`` entry: a network, or an address prefix."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    prefix: str

    def drops(self, addr: str) -> bool:
        if self.network is None:
            return addr == self.prefix or addr.startswith(self.prefix + "/")
        parts = addr.split("/")
        if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
            return False
        try:
            return ipaddress.ip_address(parts[2]) in self.network
        except ValueError:
            return False


def _check_no_announce(text: str) -> _Filter:
    addr = _parse(text, "no_announce entry")
    names = [p.name for p in addr.protocols()]
    if "ipcidr" not in names:
        return _Filter(None, str(addr))
    if len(names) != 2 or names[0] not in ("ip4", "ip6") or names[1] != "ipcidr":
        raise AddressError(f"no_announce entry {text!r}: a network is /ip4/A.B.C.D/ipcidr/N")
    ip, bits = addr.value_for_protocol(names[0]), addr.value_for_protocol("ipcidr")
    try:
        return _Filter(ipaddress.ip_network(f"{ip}/{bits}", strict=False), "")
    except ValueError:
        raise AddressError(f"no_announce entry {text!r} is not a network") from None


def expand_wildcards(addrs: Iterable[str]) -> list[str]:
    """``addrs`` with each wildcard host (0.0.0.0, ::) replaced by this machine's interface
    addresses, as the node advertises them."""
    out: list[str] = []
    for addr in addrs:
        out += [str(a) for a in expand_wildcard_address(multiaddr.Multiaddr(addr))]
    return list(dict.fromkeys(out))


class Announcement:
    """What a node advertises, from its ``announce`` and ``no_announce`` settings (each
    entry checked here: :class:`AddressError` names a bad one)."""

    def __init__(self, peer_id: str, announce: Sequence[str], no_announce: Sequence[str]):
        self.peer_id = peer_id
        self.announce = [_check_announce(a, peer_id) for a in announce]
        self._filters = [_check_no_announce(n) for n in no_announce]

    def select(self, candidates: Iterable[str]) -> list[str]:
        """The addresses to advertise, without ``/p2p/``: the ``announce`` list when it is
        set, else ``candidates`` (listen addresses, wildcards expanded) that no ``no_announce``
        entry drops."""
        if self.announce:
            return list(self.announce)
        kept = (a for a in candidates if not any(f.drops(a) for f in self._filters))
        return list(dict.fromkeys(kept))

    def full(self, candidates: Iterable[str]) -> list[str]:
        """:meth:`select`, each address ending in ``/p2p/<peer id>``: what a member pastes
        as ``--bootstrap``."""
        return [f"{a}/p2p/{self.peer_id}" for a in self.select(candidates)]
