"""``protocol.peers``: the peer-exchange frames and the rules for offered addresses."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import codec
from protocol.peers import (
    MAX_ADDR_CHARS,
    MAX_ANSWER,
    MAX_OFFER,
    Answer,
    Ask,
    PeersError,
    addr_group,
    check_addr,
    decode_frame,
    encode_answer,
    encode_ask,
    frame_length,
    is_local,
    is_local_host,
)

PEER = "12D3KooWEFG1nCfHgtGXmb7qUdKiFy19WWqVEqvNZhtsdaSw1oqD"
OTHER = "12D3KooWAurz8NLpFie6i9Jprio4quKcbKuSQgcH6jyYJ8YGtUq7"
PUBLIC = f"/ip4/93.184.216.34/tcp/4710/p2p/{PEER}"
LOOPBACK = f"/ip4/127.0.0.1/tcp/4710/p2p/{PEER}"


def payload(frame: bytes) -> bytes:
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    return frame[4:]


def test_an_ask_and_an_answer_round_trip() -> None:
    assert decode_frame(payload(encode_ask(5)), allow_local=False) == Ask(5)
    answer = decode_frame(payload(encode_answer([PUBLIC, LOOPBACK])), allow_local=True)
    assert answer == Answer((PUBLIC, LOOPBACK))


def test_local_addresses_are_dropped_unless_allowed() -> None:
    frame = payload(encode_answer([LOOPBACK, PUBLIC, f"/ip4/192.168.1.9/tcp/1/p2p/{PEER}"]))
    answer = decode_frame(frame, allow_local=False)
    assert answer == Answer((PUBLIC,), dropped=2, first_reason="local-addr")


@pytest.mark.parametrize(
    ("addr", "why"),
    [
        (f"/ip4/0.0.0.0/tcp/4710/p2p/{PEER}", "unspecified"),
        (f"/ip4/224.0.0.1/tcp/4710/p2p/{PEER}", "multicast"),
        (f"/ip4/93.184.216.34/tcp/0/p2p/{PEER}", "port"),
        (f"/ip4/93.184.216.34/tcp/65536/p2p/{PEER}", "port"),
        (f"/ip4/93.184.216.34/tcp/080/p2p/{PEER}", "port"),
        ("/ip4/93.184.216.34/tcp/4710/p2p/0OIl" + "1" * 40, "base58"),
        (f"/ip4/93.184.216.34/udp/4710/p2p/{PEER}", "tcp"),
        (f"/ip4/93.184.216.34/tcp/4710/p2p/{PEER}/p2p-circuit", "tcp"),
        (f"/ip4/93.184.216.34/tcp/4710/p2p/{PEER}/p2p-circuit/p2p/0OIl", "base58"),
        (f"/ip4/93.184.216.34/tcp/4710/p2p/{PEER}/p2p-circuit/p2p/{PEER}", "base58"),
        (f"/ip4/224.0.0.1/tcp/4710/p2p/{PEER}/p2p-circuit/p2p/{OTHER}", "multicast"),
        (f"/p2p/{PEER}/p2p-circuit/p2p/{OTHER}", "not /"),
        (f"/ip4/2001:db8::1/tcp/4710/p2p/{PEER}", "ip4"),
        (f"/dns4/localhost/tcp/4710/p2p/{PEER}", "DNS"),
        (f"/dns4/bad_name!/tcp/4710/p2p/{PEER}", "DNS"),
        (f"/unix/x/tcp/4710/p2p/{PEER}", "unsupported"),
        ("/ip4/93.184.216.34/tcp/4710/p2p/" + "a" * MAX_ADDR_CHARS, "longer"),
    ],
)
def test_bad_addresses_are_refused_with_a_reason(addr: str, why: str) -> None:
    with pytest.raises(PeersError, match=why):
        check_addr(addr, allow_local=True)


def test_good_addresses_pass() -> None:
    for addr in (
        PUBLIC,
        f"/ip6/2a00:1450:4001::1/tcp/4710/p2p/{PEER}",
        f"/dns4/seed.example.org/tcp/4710/p2p/{PEER}",
        f"/dns4/seed.example.org/tcp/4710/p2p/{PEER}/p2p-circuit/p2p/{OTHER}",
    ):
        assert check_addr(addr, allow_local=False) == addr


@pytest.mark.parametrize(
    "value",
    [
        {"t": "ask", "n": 0},
        {"t": "ask", "n": MAX_OFFER + 1},
        {"t": "peers", "a": [PUBLIC] * (MAX_OFFER + 1)},
        {"t": "peers", "a": PUBLIC},
        {"t": "what"},
        [1, 2],
    ],
)
def test_bad_frames_are_refused_whole(value: object) -> None:
    with pytest.raises(PeersError, match="bad-frame"):
        decode_frame(codec.encode(value), allow_local=True)


def test_an_oversized_frame_is_refused_from_its_prefix() -> None:
    assert frame_length(struct.pack(">I", MAX_ANSWER)) == MAX_ANSWER
    with pytest.raises(PeersError, match="frame-too-large"):
        frame_length(struct.pack(">I", MAX_ANSWER + 1))


def test_an_answer_is_bounded_whatever_it_is_given() -> None:
    long_ok = f"/dns4/{'a' * 50}.{'b' * 50}.{'c' * 50}.org/tcp/4710/p2p/{PEER}"
    frame = encode_answer([long_ok] * 100 + ["x" * (MAX_ADDR_CHARS + 1)])
    assert len(frame) - 4 <= MAX_ANSWER
    answer = decode_frame(payload(frame), allow_local=False)
    assert isinstance(answer, Answer)
    assert answer.addrs == (long_ok,)  # the copies are one address


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_peers_error(data: bytes) -> None:
    with contextlib.suppress(PeersError):
        decode_frame(data, allow_local=False)


def test_locality_and_groups() -> None:
    assert is_local(LOOPBACK)
    assert not is_local(PUBLIC)
    assert is_local_host("10.1.2.3")
    assert is_local_host("::1")
    assert not is_local_host("not an ip")
    assert addr_group(PUBLIC) == "93.184.216.0/24"
    assert addr_group(f"/ip6/2a00:1450:4001::1/tcp/1/p2p/{PEER}") == "2a00:1450:4001::/48"
    assert addr_group(LOOPBACK) is None
    assert addr_group(f"/dns4/seed.example.org/tcp/4710/p2p/{PEER}") is None
