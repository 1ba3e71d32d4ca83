"""The I/O of peer exchange (``/commons/peers/1``, :mod:`protocol.peers`): asking a peer and
answering one. Whom to ask and what to offer are the service's decisions
(:mod:`node.peering`); this module only moves the bounded frames, under timeouts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import trio

from node.metrics import Metrics
from node.net.transport import (
    ProtocolUnsupported,
    Stream,
    StreamError,
    Transport,
    TransportError,
)
from protocol import peers

__all__ = ["EXCHANGE_TIMEOUT_SECONDS", "ask", "serve"]

log = logging.getLogger(__name__)

#: Seconds one exchange may take, either side, from opening the stream to the last byte.
EXCHANGE_TIMEOUT_SECONDS = 5.0

#: ``offer(asker, local, want)``: the addresses to answer with.
Offer = Callable[[str, bool, int], list[str]]


async def _read_frame(stream: Stream, *, allow_local: bool) -> peers.Ask | peers.Answer:
    length = peers.frame_length(await stream.read_exactly(4))
    return peers.decode_frame(await stream.read_exactly(length), allow_local=allow_local)


def _local(stream: Stream) -> bool:
    host = stream.remote_host()
    return host is not None and peers.is_local_host(host)


async def ask(
    transport: Transport, peer: str, want: int, metrics: Metrics, *, accept_local: bool
) -> Sequence[str]:
    """Ask ``peer`` for up to ``want`` addresses; the valid ones it answered, () when the
    exchange failed (counted by outcome). Local addresses are kept only if the peer itself
    was reached over one, or ``accept_local``."""
    outcome = "ok"
    answer: peers.Answer | None = None
    try:
        with trio.fail_after(EXCHANGE_TIMEOUT_SECONDS):
            stream = await transport.open_stream(peer, peers.PROTOCOL_ID)
            try:
                await stream.write(peers.encode_ask(want))
                await stream.close_write()
                frame = await _read_frame(stream, allow_local=accept_local or _local(stream))
            finally:
                await stream.close()
        if not isinstance(frame, peers.Answer):
            raise peers.PeersError("bad-frame", "an answer must be a peers frame")
        answer = frame
    except peers.PeersError as exc:
        outcome = exc.code
        log.info("peer %s answered a peer exchange badly: %s", peer, exc)
    except trio.TooSlowError:
        outcome = "timeout"
    except ProtocolUnsupported:
        outcome = "unsupported"  # another implementation, or an older node
    except TransportError as exc:  # the stream or the connection broke
        outcome = "failed"
        log.debug("peer exchange with %s failed: %s", peer, exc)
    metrics.inc("commons_peer_exchanges_total", role="asker", outcome=outcome)
    if answer is None:
        return ()
    if answer.dropped:
        metrics.inc("commons_peer_addrs_refused_total", answer.dropped, reason=answer.first_reason)
    return answer.addrs


async def serve(stream: Stream, offer: Offer, metrics: Metrics) -> None:
    """Answer one ask on ``stream`` (the transport closes it afterwards, or resets it if this
    raises). A bad or slow ask is answered with nothing and counted."""
    outcome = "ok"
    try:
        with trio.fail_after(EXCHANGE_TIMEOUT_SECONDS):
            frame = await _read_frame(stream, allow_local=False)
            if not isinstance(frame, peers.Ask):
                raise peers.PeersError("bad-frame", "an ask must be an ask frame")
            addrs = offer(stream.peer_id, _local(stream), frame.want)
            await stream.write(peers.encode_answer(addrs))
    except peers.PeersError as exc:
        outcome = exc.code
        log.info("peer %s asked for peers badly: %s", stream.peer_id, exc)
        await stream.reset()
    except (trio.TooSlowError, StreamError) as exc:
        outcome = "timeout" if isinstance(exc, trio.TooSlowError) else "failed"
        await stream.reset()
    metrics.inc("commons_peer_exchanges_total", role="answerer", outcome=outcome)
