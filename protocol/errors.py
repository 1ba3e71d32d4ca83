"""The protocol library's exceptions.

Errors are split the way h11 splits them: a ``RemoteProtocolError`` means the bytes we were
given (by a peer, a file, an API caller) break the protocol; a ``LocalProtocolError`` means the
calling code asked for something the protocol does not allow. Every error carries a stable,
machine-readable ``code`` (documented in ``protocol/validation.py`` for records) and a human
``message``; ``str(err)`` is ``"<code>: <message>"``.
"""

from __future__ import annotations

__all__ = [
    "BundleError",
    "InvalidRecord",
    "LocalProtocolError",
    "NegentropyError",
    "ProtocolError",
    "RemoteProtocolError",
]


class ProtocolError(Exception):
    """Base class of every error the protocol library raises on purpose."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RemoteProtocolError(ProtocolError):
    """Input from outside (a peer, a file, a caller's bytes) violates the protocol."""


class LocalProtocolError(ProtocolError):
    """The calling code asked for something the protocol does not allow."""


class InvalidRecord(RemoteProtocolError):
    """A record is not well-formed: its ``code`` says which rule it broke."""


class BundleError(RemoteProtocolError):
    """A bundle file is damaged; ``offset`` is the byte position where reading stopped."""

    def __init__(self, code: str, message: str, *, offset: int, index: int) -> None:
        super().__init__(code, message)
        self.offset = offset
        self.index = index


class NegentropyError(RemoteProtocolError):
    """A negentropy message from the peer is malformed or exceeds a bound."""
