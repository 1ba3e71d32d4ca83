"""Hypothesis fuzzing of the four parsers that read outside bytes (the guarantee "hostile input
yields a value or the protocol's own error, never another exception, never unbounded memory").

The targets and their invariants are in ``fuzz_targets.py``, shared with the coverage-guided
harness ``scripts/fuzz`` (atheris). Here each target gets random bytes, mutations of real
inputs (one or a few bytes changed, inserted or cut), and structured inputs built to pass the
first checks (canonical MessagePack maps with record keys, frames with real frame types,
negentropy messages of real modes), plus hand-made hostile headers whose declared sizes would
cost gigabytes if a parser believed them, measured with ``tracemalloc``.
"""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable

import pytest
from fuzz_targets import STORAGES, TARGETS, seeds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import codec
from protocol.bundle import HEADER, encode_varint
from protocol.negentropy import encode_varint as neg_varint

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# ------------------------------------------------------------------------------ strategies


def _mutate(seed: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, byte) edits: 0 replace, 1 insert, 2 delete, 3 truncate."""
    data = bytearray(seed)
    for kind, position, value in edits:
        if not data:
            data.append(value)
            continue
        at = position % len(data)
        if kind == 0:
            data[at] = value
        elif kind == 1:
            data.insert(at, value)
        elif kind == 2:
            del data[at]
        else:
            del data[at:]
    return bytes(data)


def mutations(target: str) -> st.SearchStrategy[bytes]:
    corpus = [s for s in seeds(target) if len(s) < 20_000] or [b"\x00"]
    edit = st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255))
    return st.builds(_mutate, st.sampled_from(corpus), st.lists(edit, min_size=1, max_size=4))


_scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(max_size=40),
    st.binary(max_size=70),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
_record_keys = st.sampled_from(["v", "kind", "author", "ts", "project", "body", "sig", "x"])
_kinds = st.sampled_from(
    [
        "project",
        "project-update",
        "contribution",
        "endorsement",
        "retraction",
        "profile",
        "device-link",
        "device-join",
        "device-revoke",
        "vote",
        "Vote",
    ]
)
_body_keys = st.sampled_from(
    [
        "name",
        "title",
        "type",
        "target",
        "weight",
        "set",
        "links",
        "coauthors",
        "artifacts",
        "person",
        "ticket",
        "proof",
        "device",
        "cut",
        "x",
    ]
)


@st.composite
def record_like(draw: st.DrawFn) -> bytes:
    """Canonical maps shaped like records: they get past the codec into the record rules."""
    value: dict[str, object] = {
        "v": draw(st.sampled_from([1, 1, 1, 2])),
        "kind": draw(_kinds),
        "author": draw(st.sampled_from([bytes(32), b"\x01" + bytes(31), bytes(31)])),
        "ts": draw(st.integers(min_value=-1, max_value=2**64 - 1)),
        "body": draw(st.dictionaries(_body_keys, _values, max_size=4)),
        "sig": draw(st.sampled_from([bytes(64), bytes(63)])),
    }
    if draw(st.booleans()):
        value["project"] = draw(st.sampled_from([bytes(32), bytes(33), "p"]))
    for key in draw(st.lists(_record_keys, max_size=2)):
        value.pop(key, None)
    return codec.encode(value)


@st.composite
def frame_like(draw: st.DrawFn) -> bytes:
    """Length-prefixed canonical maps with real frame types and plausible or wrong fields."""
    kind = draw(st.sampled_from(["hello", "neg", "want", "recs", "push", "ack", "bye", "error"]))
    fields = draw(
        st.dictionaries(
            st.sampled_from(["v", "all", "scopes", "m", "ids", "r", "n", "code", "message"]),
            st.one_of(
                _values,
                st.lists(st.binary(min_size=32, max_size=32), max_size=3),
                st.dictionaries(st.sampled_from(["meta", "ab" * 32]), st.binary(max_size=40)),
            ),
            max_size=4,
        )
    )
    try:
        payload = codec.encode({"t": kind, **fields})
    except Exception:  # a value outside the model (nesting too deep): send plain bytes
        payload = draw(st.binary(max_size=50))
    chunk = draw(st.integers(0, 255))
    return bytes((chunk,)) + struct.pack(">I", len(payload)) + payload


@st.composite
def bundle_like(draw: st.DrawFn) -> bytes:
    records = draw(st.lists(st.one_of(record_like(), st.binary(min_size=1, max_size=60))))
    body = HEADER + b"".join(encode_varint(len(r)) + r for r in records)
    tail = draw(st.sampled_from([b"", b"\x00", b"\x80\x80\x80\x01", b"\x05ab", b"\xff\xff\x7f"]))
    return bytes((draw(st.integers(0, 255)),)) + body + tail


@st.composite
def negentropy_like(draw: st.DrawFn) -> bytes:
    """Version byte, then ranges of random bounds and modes (skip, fingerprint, id list)."""
    out = bytearray((draw(st.sampled_from([0x61, 0x61, 0x61, 0x60, 0x62, 0x00])),))
    for _ in range(draw(st.integers(0, 6))):
        out += neg_varint(draw(st.integers(0, 2**64 - 1)))
        prefix = draw(st.binary(max_size=33))
        out += neg_varint(len(prefix)) + prefix
        mode = draw(st.integers(0, 3))
        out += neg_varint(mode)
        if mode == 1:
            out += draw(st.binary(min_size=15, max_size=16))
        elif mode == 2:
            count = draw(st.integers(0, 40))
            out += neg_varint(count) + draw(st.binary(max_size=32 * 3))
    return bytes((draw(st.integers(0, len(STORAGES) - 1)),)) + bytes(out)


STRUCTURED: dict[str, st.SearchStrategy[bytes]] = {
    "record": record_like(),
    "bundle": bundle_like(),
    "frame": frame_like(),
    "negentropy": negentropy_like(),
}

# ------------------------------------------------------------------------------ properties

NAMES = sorted(TARGETS)


@pytest.mark.parametrize("name", NAMES)
def test_seed_inputs_pass(name: str) -> None:
    """The seed corpus (real inputs) runs clean, so the fuzzers start from the deep end."""
    for data in seeds(name):
        TARGETS[name](data)


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes(name: str, data: bytes) -> None:
    TARGETS[name](data)


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.data())
def test_mutated_real_inputs(name: str, data: st.DataObject) -> None:
    TARGETS[name](data.draw(mutations(name)))


@pytest.mark.parametrize("name", NAMES)
@FUZZ
@given(data=st.data())
def test_structured_inputs(name: str, data: st.DataObject) -> None:
    TARGETS[name](data.draw(STRUCTURED[name]))


# ------------------------------------------------------------------------------ memory

#: Inputs whose headers declare huge sizes or counts, in a few bytes.
HOSTILE: list[tuple[str, bytes]] = [
    ("record", b"\xdf\xff\xff\xff\xff"),  # map32 of 2**32-1 entries
    ("record", b"\xdd\xff\xff\xff\xff" + b"\x00" * 64),  # array32 of 2**32-1 items
    ("record", b"\xdb\xff\xff\xff\xff" + b"a" * 64),  # str32 of 4 GiB
    ("record", b"\xc6\xff\xff\xff\xff" + b"a" * 64),  # bin32 of 4 GiB
    ("record", b"\x91" * 60_000 + b"\x00"),  # nesting 60,000 deep
    ("record", b"\xdc\xff\xff" + b"\xdc\xff\xff" * 20_000),  # arrays of 65,535 items, nested
    ("bundle", b"\x00" + HEADER + b"\x80\x80\x04"),  # a record of 65,536 bytes, announced only
    ("bundle", b"\x00" + HEADER + b"\xff\xff\xff\x7f"),  # a varint of 4 bytes
    ("bundle", b"\x01" + HEADER + b"\x01\x00" * 10_000),  # 10,000 one-byte records, byte-wise
    ("frame", b"\x00\xff\xff\xff\xff"),  # a frame of 4 GiB
    ("frame", b"\x00\x00\x10\x00\x00" + b"\x00" * 100),  # 1 MiB announced, 100 bytes sent
    ("frame", b"\x00" + struct.pack(">I", 9) + b"\x82\xa1t\xa4want\xa3ids\xdd\xff\xff\xff\xff"),
    ("negentropy", b"\x02\x61\x01\x00\x02" + neg_varint(2**60)),  # id list of 2**60 ids
    ("negentropy", b"\x02\x61" + (b"\x01\x00\x01" + b"\x00" * 16) * 3_000),  # 3,000 fingerprints
    ("negentropy", b"\x02\x61" + b"\xff" * 11),  # a varint of 11 bytes
]


def peak_bytes(fn: Callable[[bytes], object], data: bytes) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn(data)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("name", "data"), HOSTILE, ids=[f"{n}-{i}" for i, (n, _) in enumerate(HOSTILE)]
)
def test_hostile_headers_cost_no_memory(name: str, data: bytes) -> None:
    """What a parser allocates is bounded by what it was given, not by what was announced."""
    peak = peak_bytes(TARGETS[name], data)
    assert peak < 100 * len(data) + (2 << 20), f"{name}: {peak} bytes for a {len(data)}-byte input"


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None, database=None)
@given(data=st.data())
def test_memory_is_linear_in_the_input(name: str, data: st.DataObject) -> None:
    raw = data.draw(st.one_of(st.binary(max_size=4000), mutations(name), STRUCTURED[name]))
    peak = peak_bytes(TARGETS[name], raw)
    assert peak < 100 * len(raw) + (2 << 20), f"{name}: {peak} bytes for a {len(raw)}-byte input"
