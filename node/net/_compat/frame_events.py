"""Patch: every Yamux frame read wakes a probe waiting on its connection; and ``yamux_probe``,
which sends a Yamux ping to ask whether a connection is alive.

Why: ping (/ipfs/ping/1.0.0) is an opt-in service in js-libp2p and rust-libp2p; a Yamux ping
is not: the Yamux spec has every implementation answer a PING frame flagged SYN with one
flagged ACK, on the connection itself, whatever protocols the peer serves. py-libp2p 0.8.1
sends one only every 30 s (to measure the round trip), so the node sends its own when it
wants to know, and waits for any frame at all to arrive after it: the answer, gossip,
anything. A stalled connection (a partition) delivers none.

Upstream bug: none; py-libp2p has no hook for "a frame arrived" or "ping now".

How: the Yamux module's ``read_exactly`` (it reads every frame's header and body with it) is
replaced by a wrapper that sets an event stored on the secured connection; the probe writes
the ping frame with ``Yamux._write_frame`` and sets ``_ping_sent_time`` as the RTT loop does,
so the answer also updates py-libp2p's round-trip estimate. On upgrade: ``install`` reads
the module's ``read_exactly`` first, so a rename raises; ``UPSTREAM`` fingerprints the
function wrapped and the Yamux members the probe imitates or calls.
"""

from __future__ import annotations

import itertools
import struct
from typing import Any

import libp2p.stream_muxer.yamux.yamux as yamux
import trio
from libp2p.abc import IHost
from libp2p.io.utils import read_exactly
from libp2p.peer.id import ID
from libp2p.stream_muxer.yamux.yamux import (
    FLAG_SYN,
    TYPE_PING,
    YAMUX_HEADER_FORMAT,
    Yamux,
)

UPSTREAM = {
    "libp2p.io.utils.read_exactly": (
        "ae12723eff6b556d340497cf6b4a7c0b54ca2eb23c940ffcfe375dfb7e8cd9c1"
    ),
    "libp2p.stream_muxer.yamux.yamux.Yamux._read_data_body": (
        "54cc06c91ba6ee159e0eefaf4802b3111fdce60fe1de566e267127c5fb2e0c41"
    ),
    "libp2p.stream_muxer.yamux.yamux.Yamux._measure_rtt_loop": (
        "86222ce6e35836fd208cd7d3aea56fbfe1943c646c0033118695aaabd8cf9c28"
    ),
    "libp2p.stream_muxer.yamux.yamux.Yamux._write_frame": (
        "16ff969cdd0d2b1b296bf1b1765471239ce96e18c8b00784ef77a2fb808c4d5b"
    ),
    "libp2p.stream_muxer.yamux.yamux.Yamux.handle_incoming": (
        "ad15ff6943feac206c7abfbf77f2142a64bb5edbe9085e3ccdda371736abdc7b"
    ),
}

#: Attribute of a secured connection: the trio.Event set when its next Yamux frame arrives.
_FRAME_EVENT = "_commons_frame_event"
_ping_nonces = itertools.count(1 << 31)  # py-libp2p's own pings count up from 1


async def _read_exactly_noting_frames(reader: Any, n: int, *args: Any, **kwargs: Any) -> bytes:
    """Yamux's ``read_exactly``, which also wakes a probe waiting on that connection: one
    attribute lookup a frame otherwise."""
    data = await read_exactly(reader, n, *args, **kwargs)
    event = getattr(reader, _FRAME_EVENT, None)  # our own attribute: absent until a probe
    if event is not None:
        event.set()
    return data


def install() -> None:
    """Wrap the Yamux module's ``read_exactly`` (idempotent)."""
    current = yamux.read_exactly  # type: ignore[attr-defined]
    if current is _read_exactly_noting_frames:
        return
    if current is not read_exactly:
        raise RuntimeError("py-libp2p's Yamux no longer reads frames with io.utils.read_exactly")
    yamux.read_exactly = _read_exactly_noting_frames  # type: ignore[attr-defined]


async def yamux_probe(host: IHost, peer_id: ID) -> bool:
    """Send a Yamux ping on the peer's connections and return True once any of them receives
    a frame; False at once if none is open. It waits without a bound: the caller sets one."""
    conns = [c.muxed_conn for c in host.get_network().get_connections(peer_id)]
    muxed = [m for m in conns if isinstance(m, Yamux) and not m.is_closed]
    if not muxed:
        return False
    events = [_frame_event(m.secured_conn) for m in muxed]
    for m in muxed:
        nonce = next(_ping_nonces) % (1 << 32)
        await m._write_frame(struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_PING, FLAG_SYN, 0, nonce))
        m._ping_sent_time = trio.current_time()
    async with trio.open_nursery() as nursery:
        for event in events:
            nursery.start_soon(_wait_then_cancel, event, nursery.cancel_scope)
    return True


def _frame_event(secured: Any) -> trio.Event:
    """The event the connection's next frame sets: shared by the probes waiting on it (it is
    unset, so whatever sets it arrives after each of them began)."""
    event: trio.Event | None = getattr(secured, _FRAME_EVENT, None)
    if event is None or event.is_set():
        event = trio.Event()
        setattr(secured, _FRAME_EVENT, event)
    return event


async def _wait_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
