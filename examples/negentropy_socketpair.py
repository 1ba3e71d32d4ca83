"""Reconcile two sets of records with negentropy over a transport of your own: a socketpair.

Run: python examples/negentropy_socketpair.py [RECORDS]

The protocol library's ``Negentropy`` session does no I/O: it turns the peer's message into
the reply to send, and the caller carries the bytes any way it likes. Here the responder runs
in a thread at one end of a socketpair, the initiator at the other, and each message travels
with a 4-byte length prefix. The two sides hold overlapping sets of ``RECORDS`` signed records
(default 3000); after reconciliation each sends the other what it lacks, and both hold the
union. Needs only the protocol library.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading

from protocol import (
    ContributionBody,
    Negentropy,
    NegentropyStorage,
    ProjectBody,
    Record,
    SigningKey,
    sign_record,
)

#: Both sides keep each message they build under this many bytes (and refuse longer ones):
#: big sets then take several round trips.
FRAME_SIZE_LIMIT = 8192
_LENGTH = struct.Struct(">I")


def send_message(sock: socket.socket, message: bytes) -> None:
    sock.sendall(_LENGTH.pack(len(message)) + message)


def receive_message(sock: socket.socket) -> bytes | None:
    """The next message, or None when the peer closed the connection."""
    header = _receive_exactly(sock, _LENGTH.size)
    if header is None:
        return None
    (length,) = _LENGTH.unpack(header)
    # A real transport bounds what it accepts before reading it: a peer's length is a claim.
    if length > FRAME_SIZE_LIMIT:
        raise ValueError(f"the peer announced a {length}-byte message")
    body = _receive_exactly(sock, length)
    if body is None:
        raise ValueError("the connection closed inside a message")
    return body


def _receive_exactly(sock: socket.socket, n: int) -> bytes | None:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            if data:
                raise ValueError("the connection closed inside a message")
            return None
        data += chunk
    return bytes(data)


def respond(sock: socket.socket, records: dict[bytes, Record]) -> None:
    """The responder: answer every message until the initiator hangs up."""
    storage = NegentropyStorage((r.ts, r.id) for r in records.values())
    session = Negentropy(storage, frame_size_limit=FRAME_SIZE_LIMIT)
    with sock:
        while (message := receive_message(sock)) is not None:
            send_message(sock, session.reconcile(message))


def make_records(count: int) -> tuple[dict[bytes, Record], dict[bytes, Record]]:
    """Two overlapping sets: the first two thirds and the last two thirds of ``count``."""
    author = SigningKey.generate()
    project = sign_record(author, body=ProjectBody(name="Sync demo"), ts=1_700_000_000_000)
    records = [project] + [
        sign_record(
            author,
            body=ContributionBody(type="code", title=f"Change {i}", effort_minutes=i % 90),
            ts=project.ts + 1 + i,
            project=project.id,
        )
        for i in range(count - 1)
    ]
    third = len(records) // 3
    ours = {r.id: r for r in records[: 2 * third]}
    theirs = {r.id: r for r in records[third:]}
    return ours, theirs


def main(argv: list[str]) -> int:
    count = int(argv[1]) if len(argv) > 1 else 3000
    ours, theirs = make_records(count)
    print(f"we hold {len(ours)} records, the peer holds {len(theirs)}")

    near, far = socket.socketpair()
    responder = threading.Thread(target=respond, args=(far, theirs))
    responder.start()
    with near:
        session = Negentropy(
            NegentropyStorage((r.ts, r.id) for r in ours.values()),
            frame_size_limit=FRAME_SIZE_LIMIT,
        )
        message: bytes | None = session.initiate()
        while message is not None:
            send_message(near, message)
            reply = receive_message(near)
            if reply is None:
                raise SystemExit("the peer hung up during reconciliation")
            message = session.reconcile(reply)
    responder.join()

    have, need = set(session.have), set(session.need)
    print(
        f"reconciled in {session.rounds} round trips, {session.bytes_sent} bytes sent and "
        f"{session.bytes_received} received: we have {len(have)} the peer lacks, "
        f"and need {len(need)}"
    )
    # The session found exactly the difference, having sent no record and no full id list.
    assert have == ours.keys() - theirs.keys()
    assert need == theirs.keys() - ours.keys()

    # What a node does next: fetch ``need`` from the peer and push ``have`` to it. ``need`` is
    # the peer's claim, so a real node fetches it expecting ids it already holds, and checks
    # every record it receives with parse_record.
    ours.update((i, theirs[i]) for i in need)
    theirs.update((i, ours[i]) for i in have)
    assert ours.keys() == theirs.keys()
    print(f"both now hold the same {len(ours)} records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
