"""Patch: pubsub's ``push_msg`` cannot crash the service, and delivers into our own inbox.

Why: upstream ``notify_subscriptions`` feeds a 32-slot channel per topic with
``send_nowait``, dropping a message silently when the channel is full, and loses the peer
that forwarded it; and an exception inside ``push_msg`` (a malformed key in a remote message)
ends pubsub's reading task. Here ``notify_subscriptions`` only records that the message is
due for local delivery, and ``push_msg`` delivers it after upstream has validated and
forwarded it, awaiting our inbox (backpressure instead of loss), and catches what upstream
raises.

Upstream bug: the bounded subscription channel that drops silently, and no isolation of a
failure on one message.

How: ``DeliveringPubsub`` overrides the public ``push_msg`` and ``notify_subscriptions``
and calls upstream's ``push_msg`` inside. Our validator and ``notify_subscriptions`` run
inside it (one task per message, or inline for a local publish), so a ContextVar carries
the outcome back. On upgrade: a renamed method would stop delivery altogether (the transport
tests would fail); an edited one trips its fingerprint in ``UPSTREAM``.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from libp2p.peer.id import ID
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

from node.net._compat.idontwant import current_message_size

logger = logging.getLogger(__name__)

UPSTREAM = {
    "libp2p.pubsub.pubsub.Pubsub.push_msg": (
        "1531483ab4d77674dc71d122a8eab16f7facbd85af3a030a5d1925e52f293717"
    ),
    "libp2p.pubsub.pubsub.Pubsub.notify_subscriptions": (
        "2fb1385e4bbf3c0ae72a376e0209b6f0baa0fe4e7ecb403b64822f19cee5f4a1"
    ),
}


@dataclass
class Outcome:
    """What happened to one message inside libp2p's ``push_msg``."""

    rejected: bool = False  # a validator of ours said no
    notified: bool = False  # accepted and due for local delivery


current_outcome: contextvars.ContextVar[Outcome | None] = contextvars.ContextVar(
    "commons_push_outcome", default=None
)
#: Set by Transport.publish so that the wrapper reports what happened to our own message.
publish_outcome: contextvars.ContextVar[Outcome | None] = contextvars.ContextVar(
    "commons_publish_outcome", default=None
)


class DeliveringPubsub(Pubsub):
    """Pubsub whose push_msg cannot crash the service and which delivers to our own inbox."""

    on_delivered: Callable[[ID, rpc_pb2.Message], Awaitable[None]]
    on_error: Callable[[], None]

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        outcome = Outcome()
        token = current_outcome.set(outcome)
        size_token = current_message_size.set(len(msg.data))
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception:  # e.g. a malformed key in a remote message: never kill pubsub
            self.on_error()
            logger.warning("libp2p failed on a message from %s", msg_forwarder, exc_info=True)
            return
        finally:
            current_message_size.reset(size_token)
            current_outcome.reset(token)
        local = publish_outcome.get()
        if local is not None and msg_forwarder == self.my_id:
            local.rejected, local.notified = outcome.rejected, outcome.notified
        elif outcome.notified:
            await self.on_delivered(msg_forwarder, msg)

    def notify_subscriptions(self, publish_message: rpc_pb2.Message) -> None:
        outcome = current_outcome.get()
        if outcome is not None:
            outcome.notified = True
