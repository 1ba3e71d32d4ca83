"""Ed25519 keys, strict verification, PEM key files and peer ids (docs/RECORD-FORMAT.md §3).

Where an independent implementation exists it is the reference: ``cryptography`` (OpenSSL)
derives the public keys and signatures the library must match, and a base58 written here from
the definition checks the peer ids.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import testing
from protocol.errors import LocalProtocolError, RemoteProtocolError
from protocol.signing import (
    MAX_PEM_SIZE,
    PEER_ID_PREFIX,
    SigningKey,
    b58decode,
    b58encode,
    peer_id,
    public_key_from_peer_id,
    seed_from_pem,
    seed_to_pem,
    verify,
)

ED25519_L = 2**252 + 27742317777372353535851937790883648493
IDENTITY_POINT = bytes([1]) + bytes(31)
ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

#: Known answers: seed = SHA-256("commons-test-key:" + name).
KNOWN = {
    "alice": (
        "2f514b9d95d0d5985903c57a6d1dd6af46de90abeb9372442d44f351cae92e97",
        "cda2f2fa146dc546a61c77fe40f7b131fbbd2aa50456cbfa2409ecda43c9f3c8",
        "12D3KooWPf5rpurdrDv9pV7ZydsDt3RRGB9VGkcYhHQ21vYaCSuM",
    ),
    "bob": (
        "05f57ed7a672a674b930c6fc7e912c0f5fdd9fda69095c12d5d8dc2be8bf0c1b",
        "dded9e1a269c525ad7f091e471c6ea72aa307de2cf65e487e0aba2a665934510",
        "12D3KooWQkgRKrPZjSP2kt9LTYuLV1fSMKgvehBPJB3ZUG8rcLFH",
    ),
}


def reference_b58(data: bytes) -> str:
    """Base58btc by repeated division of the big-endian number, leading zeros as '1'."""
    digits = []
    n = int.from_bytes(data, "big")
    while n > 0:
        n, r = divmod(n, 58)
        digits.append(ALPHABET[r])
    pad = 0
    for byte in data:
        if byte:
            break
        pad += 1
    return "1" * pad + "".join(reversed(digits))


def bad_peer_id(text: str) -> str:
    with pytest.raises(RemoteProtocolError) as info:
        public_key_from_peer_id(text)
    return info.value.code


# --------------------------------------------------------------------------------------------
# Keys and signatures


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_test_keys(name: str) -> None:
    seed_hex, public_hex, peer = KNOWN[name]
    assert testing.seed(name) == hashlib.sha256(f"commons-test-key:{name}".encode()).digest()
    assert testing.seed(name).hex() == seed_hex
    key = testing.key(name)
    assert key.seed.hex() == seed_hex
    assert key.public_key.hex() == public_hex
    assert key.peer_id == peer == peer_id(key.public_key)


@pytest.mark.parametrize("name", ["alice", "bob", "carol", "dave", "ünïcödé"])
def test_keys_and_signatures_match_openssl(name: str) -> None:
    key = testing.key(name)
    reference = Ed25519PrivateKey.from_private_bytes(key.seed)
    assert reference.public_key().public_bytes_raw() == key.public_key
    message = b"commons-record-v1\x00" + name.encode()
    # Ed25519 is deterministic: the same key and message give the same 64 bytes everywhere.
    assert key.sign(message) == reference.sign(message)
    assert verify(key.public_key, message, key.sign(message))


def test_verify_is_false_for_wrong_inputs_and_never_raises() -> None:
    key = testing.key("alice")
    sig = key.sign(b"message")
    assert verify(key.public_key, b"message", sig)
    assert not verify(key.public_key, b"messagE", sig)
    assert not verify(testing.key("bob").public_key, b"message", sig)
    assert not verify(key.public_key[:31], b"message", sig)
    assert not verify(key.public_key, b"message", sig[:63])
    assert not verify(key.public_key, b"message", sig + b"\x00")
    assert not verify(key.public_key, b"message", bytes(64))
    assert not verify(bytes(32), b"message", sig)
    assert not verify(b"\xff" * 32, b"message", sig)  # not a point encoding at all
    for i in (0, 31, 32, 63):
        flipped = bytearray(sig)
        flipped[i] ^= 0x80
        assert not verify(key.public_key, b"message", bytes(flipped))


def test_small_order_forgery_is_refused_although_openssl_accepts_it() -> None:
    """The identity point as public key, R = identity and S = 0 satisfy [S]B = R + [k]A.

    OpenSSL checks exactly that equation, so it accepts this 'signature' of any message under
    the key ``01 00 .. 00``. libsodium refuses small-order keys and R. If nodes disagreed here
    the ledger would fork, which is why the library verifies with libsodium only.
    """
    forged = IDENTITY_POINT + bytes(32)
    for message in (b"", b"anything", b"commons-record-v1\x00\x80"):
        Ed25519PublicKey.from_public_bytes(IDENTITY_POINT).verify(forged, message)  # accepted
        assert not verify(IDENTITY_POINT, message, forged)


def test_non_canonical_s_is_refused() -> None:
    key = testing.key("alice")
    sig = key.sign(b"message")
    s = int.from_bytes(sig[32:], "little")
    assert s < ED25519_L
    malleated = sig[:32] + (s + ED25519_L).to_bytes(32, "little")
    assert not verify(key.public_key, b"message", malleated)


def test_signing_key_needs_a_32_byte_seed() -> None:
    for seed in (b"", bytes(31), bytes(33)):
        with pytest.raises(LocalProtocolError) as info:
            SigningKey(seed)
        assert info.value.code == "bad-key"


def test_signing_key_repr_never_shows_the_seed() -> None:
    key = testing.key("alice")
    for text in (repr(key), str(key), f"{key}", f"{key!r}"):
        assert key.seed.hex() not in text
        assert key.seed.hex()[:16] not in text
    assert key.public_key.hex() in repr(key)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=40), st.binary(max_size=80))
def test_verify_never_raises_for_any_input(public_key: bytes, message: bytes, sig: bytes) -> None:
    assert verify(public_key, message, sig) in (True, False)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=64))
def test_sign_verify_round_trip(seed: bytes, message: bytes) -> None:
    key = SigningKey(seed)
    assert verify(key.public_key, message, key.sign(message))


# --------------------------------------------------------------------------------------------
# Peer ids


def test_peer_id_is_base58_of_the_identity_multihash() -> None:
    key = testing.key("alice")
    assert PEER_ID_PREFIX.hex() == "002408011220"  # multihash identity, 36 bytes, Ed25519
    assert peer_id(key.public_key) == reference_b58(PEER_ID_PREFIX + key.public_key)
    assert peer_id(key.public_key).startswith("12D3KooW")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_peer_id_round_trip(public_key: bytes) -> None:
    text = peer_id(public_key)
    assert text.startswith("12D3KooW")
    assert len(text) in (52, 53)
    assert text == reference_b58(PEER_ID_PREFIX + public_key)
    assert public_key_from_peer_id(text) == public_key
    assert public_key_from_peer_id(f"  {text}\n") == public_key


def test_peer_id_needs_a_32_byte_key() -> None:
    with pytest.raises(LocalProtocolError) as info:
        peer_id(bytes(31))
    assert info.value.code == "bad-key"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "12D3KooWPf5rpurdrDv9pV7ZydsDt3RRGB9VGkcYhHQ21vYaCSu0",  # '0' is not base58
        "12D3KooWPf5rpurdrDv9pV7ZydsDt3RRGB9VGkcYhHQ21vYaCSuO",  # nor 'O'
        "12D3KooWPf5rpurdrDv9pV7ZydsDt3RRGB9VGkcYhHQ21vYaCSuI",  # nor 'I'
        "12D3KooWPf5rpurdrDv9pV7ZydsDt3RRGB9VGkcYhHQ21vYaCSul",  # nor 'l'
        "12D3KooWPf5rpurdrDv9pV7ZydsDt3RRGB9VGkcYhHQ21vYaCSu",  # one character short
        "12D3KooWPf5rpurdrDv9pV7ZydsDt3RRGB9VGkcYhHQ21vYaCSuMM",  # one too many
        "12D3KooWPf5rpurdrDv9pV7ZydsDt3RRGB9VGkcYhHQ21vYaCSuM" + "1" * 13,  # over 64
        "1" * 64,
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # a sha256 (RSA-style) peer id
        "12D3KooWPf5rpurdrDv9pV7ZydsDt3RRGB9VGkcYhHQ21vYaCSuM ✓",
    ],
)
def test_bad_peer_ids(text: str) -> None:
    assert bad_peer_id(text) == "bad-peer-id"


def test_peer_id_with_another_key_type_is_refused() -> None:
    # A secp256k1 libp2p key: protobuf type 2 and a 33-byte key.
    secp = bytes([0x00, 0x25, 0x08, 0x02, 0x12, 0x21]) + bytes([2]) + bytes(32)
    assert bad_peer_id(b58encode(secp)) == "bad-peer-id"
    # The right length with the wrong prefix.
    wrong = bytes([0x00, 0x24, 0x08, 0x02, 0x12, 0x20]) + bytes(32)
    assert bad_peer_id(b58encode(wrong)) == "bad-peer-id"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", ""),
        (b"\x00", "1"),
        (b"\x00\x00\x01", "112"),
        (b"hello world", "StV1DL6CwTryKyV"),
        (bytes.fromhex("0000287fb4cd"), "11233QC4"),
    ],
)
def test_base58_known_answers(data: bytes, text: str) -> None:
    assert b58encode(data) == text
    assert b58decode(text) == data


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=48))
def test_base58_round_trip(data: bytes) -> None:
    assert b58encode(data) == reference_b58(data)
    assert b58decode(b58encode(data)) == data


# --------------------------------------------------------------------------------------------
# Key files


def test_pem_round_trip() -> None:
    seed = testing.seed("alice")
    pem = seed_to_pem(seed)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert seed_from_pem(pem) == seed
    # The file is ordinary PKCS#8 that other tools read.
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(loaded, Ed25519PrivateKey)
    assert loaded.public_key().public_bytes_raw() == testing.key("alice").public_key


def test_pem_written_by_openssl_is_read() -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert SigningKey(seed_from_pem(pem)).public_key == key.public_key().public_bytes_raw()


def _pem(der: bytes) -> bytes:
    return (
        b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END PRIVATE KEY-----\n"
    )


def _encrypted_pem() -> bytes:
    return Ed25519PrivateKey.from_private_bytes(bytes(32)).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


def _ec_pem() -> bytes:
    return ec.derive_private_key(7, ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not a key", id="garbage"),
        pytest.param(
            b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n", id="bad-b64"
        ),
        pytest.param(seed_to_pem(bytes(32))[:-30], id="cut-short"),
        pytest.param(b"A" * (MAX_PEM_SIZE + 1), id="too-large"),
        pytest.param(
            _pem(bytes.fromhex("302e020100300506032a030404220420") + bytes(32)), id="unknown-oid"
        ),
        pytest.param(_encrypted_pem(), id="encrypted"),
        pytest.param(_ec_pem(), id="ec-key"),
    ],
)
def test_bad_pem_is_bad_key(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        seed_from_pem(data)
    assert info.value.code == "bad-key"
