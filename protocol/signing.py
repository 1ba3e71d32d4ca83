"""Ed25519 signing and strict verification, key files, and peer-id text forms.

Verification must decide exactly as libsodium's ``crypto_sign_verify_detached`` does, on every
node, or the ledger forks (docs/RECORD-FORMAT.md §3). OpenSSL, through the ``cryptography``
package, accepts a forged signature under the small-order key ``01 00 .. 00`` for any message,
so verification here goes through PyNaCl (libsodium) only; ``cryptography`` is used just to read
and write PKCS#8 PEM key files.

:meth:`SigningKey.generate` is the one place the protocol library draws randomness: a new
key's seed must be unpredictable, so it comes from libsodium's ``randombytes`` (the operating
system's CSPRNG) rather than from a parameter, the way clocks are passed in. Everything else
here, and everything a key does, is deterministic.

Authors are written as libp2p peer ids: base58btc of the identity multihash of the libp2p
protobuf public key, i.e. base58btc(``00 24 08 01 12 20`` + 32-byte key), which always starts
with ``12D3KooW``.
"""

from __future__ import annotations

import nacl.bindings
import nacl.exceptions
import nacl.utils

from protocol.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "PUBLIC_KEY_SIZE",
    "SEED_SIZE",
    "SIGNATURE_SIZE",
    "SigningKey",
    "b58decode",
    "b58encode",
    "peer_id",
    "public_key_from_peer_id",
    "seed_from_pem",
    "seed_to_pem",
    "verify",
]

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64
#: The identity-multihash prefix of an Ed25519 libp2p public key (multihash code 0, length 36,
#: then the protobuf ``PublicKey{Type: Ed25519, Data: <32 bytes>}``).
PEER_ID_PREFIX = bytes.fromhex("002408011220")
#: A peer id string is 52 or 53 characters; anything much longer is not one.
MAX_PEER_ID_LENGTH = 64
#: PEM key files are a few hundred bytes; refuse to parse anything much larger.
MAX_PEM_SIZE = 4096


class SigningKey:
    """An Ed25519 private key that signs. The seed is never shown by ``repr``."""

    __slots__ = ("_secret", "public_key", "seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise LocalProtocolError("bad-key", f"a seed is {SEED_SIZE} bytes, not {len(seed)}")
        public, secret = nacl.bindings.crypto_sign_seed_keypair(bytes(seed))
        self.seed = bytes(seed)
        self.public_key: bytes = public
        self._secret: bytes = secret

    @classmethod
    def generate(cls) -> SigningKey:
        """A new key with a fresh random seed.

        Keep ``key.seed`` (e.g. as a PEM file, :func:`seed_to_pem`) to sign as the same author
        later: ``SigningKey(seed)`` rebuilds the key, and a lost seed is a lost identity.
        """
        return cls(nacl.utils.random(SEED_SIZE))

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte pure-Ed25519 signature of ``message``."""
        signed: bytes = nacl.bindings.crypto_sign(message, self._secret)
        return signed[:SIGNATURE_SIZE]

    @property
    def peer_id(self) -> str:
        """The text form of this key's public half, as records' authors are written."""
        return peer_id(self.public_key)

    def __repr__(self) -> str:
        return f"SigningKey(public_key={self.public_key.hex()})"


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Strict Ed25519 verification, as libsodium does it.

    False for a wrong signature, a small-order or non-canonical public key or ``R``, and
    ``S >= L``; never raises for any input.
    """
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        nacl.bindings.crypto_sign_open(bytes(signature) + bytes(message), bytes(public_key))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


# --------------------------------------------------------------------------------------------
# Key files


def seed_to_pem(seed: bytes) -> bytes:
    """The PKCS#8 PEM encoding of the private key with this 32-byte seed."""
    # Imported here: ``cryptography`` is about 10 MB of memory, which a process that never
    # reads a key file (the node's helper processes) need not hold.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(seed)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def seed_from_pem(data: bytes) -> bytes:
    """Read a PKCS#8 PEM Ed25519 private key; raise ``RemoteProtocolError("bad-key")``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if len(data) > MAX_PEM_SIZE:
        raise RemoteProtocolError("bad-key", f"key file is {len(data)} bytes, expected a PEM key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise RemoteProtocolError("bad-key", f"not a PKCS#8 PEM private key ({exc})") from None
    except Exception as exc:  # the cryptography backend raises its own types on odd input
        raise RemoteProtocolError("bad-key", f"not a readable private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise RemoteProtocolError("bad-key", "the key is not an Ed25519 key")
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


# --------------------------------------------------------------------------------------------
# Peer ids

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


def b58encode(data: bytes) -> str:
    """Base58btc (Bitcoin alphabet) encoding."""
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58_ALPHABET[r])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Base58btc decoding; ``RemoteProtocolError("bad-peer-id")`` for a foreign character."""
    n = 0
    for c in text:
        digit = _B58_INDEX.get(c)
        if digit is None:
            raise RemoteProtocolError("bad-peer-id", f"{c!r} is not a base58 character")
        n = n * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * zeros + body


def peer_id(public_key: bytes) -> str:
    """The libp2p peer id (``12D3KooW...``) of a 32-byte Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise LocalProtocolError("bad-key", f"a public key is 32 bytes, not {len(public_key)}")
    return b58encode(PEER_ID_PREFIX + public_key)


def public_key_from_peer_id(text: str) -> bytes:
    """The Ed25519 public key inside a peer id string; ``RemoteProtocolError("bad-peer-id")``."""
    text = text.strip()
    if not text or len(text) > MAX_PEER_ID_LENGTH:
        raise RemoteProtocolError("bad-peer-id", f"{text[:70]!r} is not an Ed25519 peer id")
    raw = b58decode(text)
    if len(raw) != len(PEER_ID_PREFIX) + PUBLIC_KEY_SIZE or not raw.startswith(PEER_ID_PREFIX):
        raise RemoteProtocolError(
            "bad-peer-id", f"{text!r} is not an Ed25519 peer id (expected 12D3KooW...)"
        )
    return raw[len(PEER_ID_PREFIX) :]
