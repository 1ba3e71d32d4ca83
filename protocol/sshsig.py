"""SSH signatures that prove a claim (docs/RECORD-FORMAT.md sections 4.11 and 5.10).

A git commit signed with an SSH key (``gpg.format=ssh``) says that whoever holds that key made
it. When a maintainer imports such a commit, the attested contribution records the key's
fingerprint (``ssh_key``); the person who holds the key can then prove a claim of the commit's
author handle by signing, with that same key, a message that binds their Commons key, the
handle and the project. The signature is OpenSSH's own format (``ssh-keygen -Y sign``,
PROTOCOL.sshsig in OpenSSH's sources), so that people sign with the tool and the key they
already have, an agent or a passphrase included:

    blob   = "SSHSIG" uint32(1) string(public key) string(namespace) string(reserved)
             string(hash algorithm) string(signature)
    signed = "SSHSIG" string(namespace) string(reserved) string(hash algorithm)
             string(H(message))

where ``string`` is a uint32 big-endian length and that many bytes. Only Ed25519 keys are
supported (``ssh-ed25519``: the key string holds ``string("ssh-ed25519") string(32 bytes)``,
the signature string ``string("ssh-ed25519") string(64 bytes)``), verified strictly as record
signatures are (:func:`protocol.signing.verify`). The namespace is always ``commons-claim``, the
reserved string empty, the hash ``sha512`` or ``sha256``. So a proof is exactly
:data:`PROOF_SIZE` bytes, and every other byte string is refused with a reason before any
cryptography runs: the parser reads lengths against what remains, never allocates on a
declared length, and refuses trailing bytes.

The fingerprint of a key is what ``ssh-keygen -l`` and git's ``%GK`` print after ``SHA256:``:
the SHA-256 of its public key string, which records carry as 32 raw bytes.

The same parser reads the signature of an SSH-signed git commit, which ``commons import-git``
checks here rather than through ``ssh-keygen`` (two runs a commit, about 18 ms): that is the
same blob in the namespace ``git``, so :func:`parse_signature` takes the namespace, and
:func:`git_signature` admits only ``git``. A claim proof is still parsed only by
:func:`parse_proof`, in ``commons-claim`` alone: a commit's signature never passes for one, nor
the other way round, since the namespace is inside what the key signed.

Everything here is pure; :func:`sign_proof` makes the same bytes ``ssh-keygen -Y sign`` makes
(Ed25519 signatures are deterministic), for tests and test vectors.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import struct
from dataclasses import dataclass
from typing import Final

from protocol.errors import InvalidRecord
from protocol.signing import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, SigningKey, verify

__all__ = [
    "CLAIM_DOMAIN",
    "GIT_NAMESPACE",
    "NAMESPACE",
    "PROOF_SIZE",
    "SshProof",
    "claim_message",
    "fingerprint_text",
    "git_signature",
    "key_fingerprint",
    "parse_armored",
    "parse_fingerprint_text",
    "parse_proof",
    "parse_signature",
    "sign_proof",
]

MAGIC: Final = b"SSHSIG"
VERSION: Final = 1
#: The namespace every claim proof is made in (``ssh-keygen -Y sign -n commons-claim``), so no
#: signature the key made for anything else (a git commit: ``git``; a file: ``file``) is one.
NAMESPACE: Final = b"commons-claim"
#: The namespace git signs commits and tags in (``ssh-keygen -Y sign -n git``).
GIT_NAMESPACE: Final = b"git"
KEY_TYPE: Final = b"ssh-ed25519"
HASHES: Final = {b"sha512": hashlib.sha512, b"sha256": hashlib.sha256}
#: What the signed message starts with, before the claimant's key, the project and the handle.
CLAIM_DOMAIN: Final = b"commons-claim-v1\x00"
#: The length of an Ed25519 SSHSIG blob in the commons-claim namespace, with either hash.
PROOF_SIZE: Final = 6 + 4 + (4 + 4 + 11 + 4 + 32) + (4 + 13) + 4 + (4 + 6) + (4 + 4 + 11 + 4 + 64)
#: The longest armored signature read from a file (an Ed25519 one is about 300 bytes).
MAX_ARMORED: Final = 4096
_ARMOR_BEGIN: Final = "-----BEGIN SSH SIGNATURE-----"
_ARMOR_END: Final = "-----END SSH SIGNATURE-----"
_FINGERPRINT: Final = re.compile(r"SHA256:([A-Za-z0-9+/]{43})")
#: An armored signature as git stores it in a commit (``ssh-keygen -Y sign`` output): the
#: BEGIN line, lines of base64, the END line; nothing else, not even a blank line.
_GIT_ARMOR: Final = re.compile(
    rb"-----BEGIN SSH SIGNATURE-----\n((?:[A-Za-z0-9+/=]{1,76}\n){1,16})"
    rb"-----END SSH SIGNATURE-----\n?"
)


@dataclass(frozen=True, slots=True)
class SshProof:
    """A parsed SSH signature: the Ed25519 public key, the hash algorithm, the signature and
    the namespace it was made in (``commons-claim`` for a claim proof)."""

    public_key: bytes
    hash_name: bytes
    signature: bytes
    namespace: bytes = NAMESPACE

    @property
    def fingerprint(self) -> bytes:
        """The SHA-256 fingerprint of the signing key (32 bytes)."""
        return key_fingerprint(self.public_key)

    def signed_data(self, message: bytes) -> bytes:
        """What the key signed for ``message``: the SSHSIG wrapper of its hash."""
        return _wrap(self.namespace, self.hash_name, HASHES[self.hash_name](message).digest())

    def verifies(self, message: bytes) -> bool:
        """True when the signature verifies strictly for ``message``."""
        return verify(self.public_key, self.signed_data(message), self.signature)

    def verifies_digest(self, digest: bytes) -> bool:
        """True when the signature verifies strictly for the message whose hash (by
        :attr:`hash_name`) is ``digest``: for a message hashed as it streams by."""
        signed = _wrap(self.namespace, self.hash_name, digest)
        return verify(self.public_key, signed, self.signature)


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _wrap(namespace: bytes, hash_name: bytes, digest: bytes) -> bytes:
    return MAGIC + _string(namespace) + _string(b"") + _string(hash_name) + _string(digest)


def _key_blob(public_key: bytes) -> bytes:
    return _string(KEY_TYPE) + _string(public_key)


def key_fingerprint(public_key: bytes) -> bytes:
    """The SHA-256 fingerprint of an Ed25519 SSH public key: the hash of its key string."""
    return hashlib.sha256(_key_blob(public_key)).digest()


def fingerprint_text(fingerprint: bytes) -> str:
    """A fingerprint as OpenSSH prints it: ``SHA256:`` and unpadded base64."""
    return "SHA256:" + base64.b64encode(fingerprint).decode("ascii").rstrip("=")


def parse_fingerprint_text(text: str) -> bytes | None:
    """The 32 bytes of an OpenSSH ``SHA256:`` fingerprint, or None for any other text (a GPG
    key id, an empty field)."""
    found = _FINGERPRINT.fullmatch(text.strip())
    if found is None:
        return None
    try:
        raw = base64.b64decode(found.group(1) + "=", validate=True)
    except binascii.Error:  # pragma: no cover - the pattern admits only base64 digits
        return None
    # The last base64 digit carries two bits past the 32 bytes; a canonical one leaves them 0.
    return raw if fingerprint_text(raw) == found.group(0) else None


def claim_message(author: bytes, project: bytes, handle: str) -> bytes:
    """The message a claim's proof signs: the domain string, the claimant's 32-byte key, the
    32-byte project id and the handle's UTF-8 text (the handle is last, so no length is
    needed to keep the parts apart)."""
    return CLAIM_DOMAIN + author + project + handle.encode("utf-8")


class _Reader:
    """Reads SSH wire strings from a bounded buffer; every failure is ``bad-value:proof``."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def fail(self, why: str) -> InvalidRecord:
        return InvalidRecord("bad-value:proof", f"proof is not a commons SSH signature: {why}")

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.at:
            raise self.fail(f"{what} runs past the end")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def string(self, what: str) -> bytes:
        (n,) = struct.unpack(">I", self.take(4, f"the length of {what}"))
        return self.take(n, what)

    def expect(self, what: str, wanted: bytes) -> None:
        got = self.string(what)
        if got != wanted:
            raise self.fail(f"{what} is {got[:32]!r}, not {wanted.decode()!r}")

    def end(self, what: str) -> None:
        if self.at != len(self.data):
            raise self.fail(f"{len(self.data) - self.at} bytes follow {what}")


def parse_proof(blob: object) -> SshProof:
    """Parse a claim proof strictly; ``bad-type:proof``, ``bad-length:proof`` or
    ``bad-value:proof`` (with the part that is wrong) for anything but an Ed25519 SSHSIG blob
    in the ``commons-claim`` namespace. The signature is not checked here."""
    return parse_signature(blob, NAMESPACE)


@functools.lru_cache(maxsize=4)
def _layout(namespace: bytes) -> tuple[bytes, bytes, bytes]:
    """The fixed bytes of an Ed25519 SSHSIG blob in ``namespace``: before the key, between
    the key and the hash name, between the hash name and the signature."""
    head = MAGIC + struct.pack(">I", VERSION) + _string(_key_blob(bytes(PUBLIC_KEY_SIZE)))
    middle = _string(namespace) + _string(b"") + struct.pack(">I", 6)
    tail = struct.pack(">I", 4 + len(KEY_TYPE) + 4 + SIGNATURE_SIZE) + _string(KEY_TYPE)
    tail += struct.pack(">I", SIGNATURE_SIZE)
    return head[:-PUBLIC_KEY_SIZE], middle, tail


def parse_signature(blob: object, namespace: bytes) -> SshProof:
    """Parse an Ed25519 SSHSIG blob made in ``namespace`` as strictly as :func:`parse_proof`
    parses a claim proof (the same codes: a commit's signature is refused with them too), and
    refuse one made in any other namespace. The signature is not checked here."""
    size = PROOF_SIZE - len(NAMESPACE) + len(namespace)
    if not isinstance(blob, bytes):
        raise InvalidRecord("bad-type:proof", "proof must be bytes")
    if len(blob) != size:
        raise InvalidRecord(
            "bad-length:proof",
            f"proof must be {size} bytes (an Ed25519 SSH signature), not {len(blob)}",
        )
    # Every length is fixed by the total, so a blob is valid exactly when it is the layout
    # with the key, the hash name and the signature in their places: compared in C first,
    # the part-by-part reader below runs only to name what is wrong (a history's worth of
    # commit signatures is read).
    head, middle, tail = _layout(namespace)
    key_end = len(head) + PUBLIC_KEY_SIZE
    hash_name = blob[key_end + len(middle) : key_end + len(middle) + 6]
    sig_at = key_end + len(middle) + 6 + len(tail)
    if (
        blob.startswith(head)
        and blob.startswith(middle, key_end)
        and blob.startswith(tail, sig_at - len(tail))
        and hash_name in HASHES
    ):
        return SshProof(blob[len(head) : key_end], hash_name, blob[sig_at:], namespace)
    return _read_signature(blob, namespace)


def _read_signature(blob: bytes, namespace: bytes) -> SshProof:
    """:func:`parse_signature` part by part, for a blob of the right length: the first part
    that is wrong is named (tests check that it accepts exactly what the layout accepts)."""
    reader = _Reader(blob)
    if reader.take(6, "the magic") != MAGIC:
        raise reader.fail("it does not start with SSHSIG")
    (version,) = struct.unpack(">I", reader.take(4, "the version"))
    if version != VERSION:
        raise reader.fail(f"version {version}, not {VERSION}")
    key = _Reader(reader.string("the public key"))
    key.expect("the key type", KEY_TYPE)
    public_key = key.string("the Ed25519 key")
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise reader.fail(f"an Ed25519 key of {len(public_key)} bytes")
    key.end("the public key")
    reader.expect("the namespace", namespace)
    reader.expect("the reserved field", b"")
    hash_name = reader.string("the hash algorithm")
    if hash_name not in HASHES:
        raise reader.fail(f"hash algorithm {hash_name[:16]!r}, not sha512 or sha256")
    sig = _Reader(reader.string("the signature"))
    sig.expect("the signature type", KEY_TYPE)
    signature = sig.string("the Ed25519 signature")
    if len(signature) != SIGNATURE_SIZE:
        raise reader.fail(f"an Ed25519 signature of {len(signature)} bytes")
    sig.end("the signature")
    reader.end("the signature")
    return SshProof(public_key, hash_name, signature, namespace)


def parse_armored(text: str) -> bytes:
    """The blob inside an armored SSH signature (what ``ssh-keygen -Y sign`` writes);
    ``bad-value:proof`` when the text is not exactly one such block."""
    if len(text) > MAX_ARMORED:
        raise InvalidRecord("bad-value:proof", f"an SSH signature is not {len(text)} characters")
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) < 3 or lines[0] != _ARMOR_BEGIN or lines[-1] != _ARMOR_END:
        raise InvalidRecord("bad-value:proof", "not an armored SSH signature (BEGIN/END lines)")
    try:
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
    except binascii.Error:
        raise InvalidRecord("bad-value:proof", "the SSH signature is not base64") from None
    parse_proof(blob)
    return blob


def git_signature(armored: bytes) -> SshProof | None:
    """The Ed25519 SSH signature in namespace ``git`` that a commit's ``gpgsig`` header holds
    (its lines joined, as git joins them), or None for anything else: an RSA, ECDSA or
    security-key signature, an OpenPGP or X.509 one, another namespace, or bytes that are not
    exactly one armored block. At most :data:`MAX_ARMORED` bytes are looked at."""
    if len(armored) > MAX_ARMORED:
        return None
    found = _GIT_ARMOR.fullmatch(armored)
    if found is None:
        return None
    try:
        blob = base64.b64decode(found.group(1).replace(b"\n", b""), validate=True)
        return parse_signature(blob, GIT_NAMESPACE)
    except (binascii.Error, InvalidRecord):
        return None


def sign_proof(
    key: SigningKey, message: bytes, hash_name: bytes = b"sha512", namespace: bytes = NAMESPACE
) -> bytes:
    """The SSHSIG blob ``ssh-keygen -Y sign -n commons-claim`` makes for ``message`` with the
    Ed25519 key whose seed ``key`` holds (or ``-n git`` with ``namespace=GIT_NAMESPACE``: the
    signature of a commit, for tests and benchmarks)."""
    signature = key.sign(_wrap(namespace, hash_name, HASHES[hash_name](message).digest()))
    return (
        MAGIC
        + struct.pack(">I", VERSION)
        + _string(_key_blob(key.public_key))
        + _string(namespace)
        + _string(b"")
        + _string(hash_name)
        + _string(_string(KEY_TYPE) + _string(signature))
    )
