"""Scoped API tokens: ``tokens.json`` in the home, and the check the API runs on each write.

The owner's ``api.token`` authorises every write. A tool that only needs part of that (a git
hook that submits records it signed itself) gets a token of its own, with a scope, that can be
revoked on its own: ``commons token create --scope submit``.

Scopes (``SCOPES``): ``submit`` allows ``POST /api/v1/records`` and ``POST /api/v1/bundles``
(records signed elsewhere: the token cannot sign anything as the node); ``all`` allows every
write, like ``api.token``.

``tokens.json`` (mode 0600) holds, per token, an id, an optional name, the scope, the creation
time (milliseconds since the epoch) and the SHA-256 of the token, never the token itself: a
token is 256 random bits, so one unsalted hash is enough and a stolen file gives nothing away.
The file is replaced atomically on every change, under a lock (``tokens.lock``) so that two
commands changing it at once do not lose either change. A running node reads the file again
whenever its size, modification time or inode change (one ``stat`` per write request), so a
revocation takes effect at the next request, without a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from node.textout import terminal_safe

__all__ = ["SCOPES", "Token", "TokenBook", "TokenError", "allows"]

log = logging.getLogger(__name__)

#: Every scope, from the narrowest.
SCOPES: Final = ("submit", "all")
#: What a token's text starts with, so that secret scanners and people can recognise one.
TOKEN_PREFIX: Final = "cmns_"
#: Bounds on the file, so a damaged or hostile one cannot cost the API more than this.
MAX_TOKENS: Final = 256
MAX_FILE_SIZE: Final = 256 * 1024
MAX_NAME: Final = 64
FILE_VERSION: Final = 1


class TokenError(Exception):
    """The token file is unusable, or a request about tokens is wrong; the message says why."""


@dataclass(frozen=True)
class Token:
    """One scoped token as stored: everything but the token itself."""

    id: str
    name: str | None
    scope: str
    created: int
    sha256: str

    def public(self) -> dict[str, Any]:
        """The token as ``commons token list --json`` shows it (without its hash)."""
        return {"id": self.id, "name": self.name, "scope": self.scope, "created": self.created}


def allows(granted: str, needed: str) -> bool:
    """Whether a token of scope ``granted`` may make a call that needs scope ``needed``."""
    return granted == "all" or granted == needed


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _parse(data: bytes, path: Path) -> list[Token]:
    """The tokens of a ``tokens.json``; :class:`TokenError` naming the file if it is wrong."""
    if len(data) > MAX_FILE_SIZE:
        raise TokenError(f"{path} is larger than {MAX_FILE_SIZE} bytes")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise TokenError(f"{path} is not valid JSON") from None
    if not isinstance(value, dict) or value.get("version") != FILE_VERSION:
        raise TokenError(f"{path}: not a version {FILE_VERSION} token file")
    entries = value.get("tokens")
    if not isinstance(entries, list) or len(entries) > MAX_TOKENS:
        raise TokenError(f"{path}: tokens must be a list of at most {MAX_TOKENS}")
    out = []
    for entry in entries:
        try:
            token = Token(**entry)
        except TypeError:
            raise TokenError(f"{path}: a token entry has missing or unknown keys") from None
        if not (
            isinstance(token.id, str)
            and (token.name is None or isinstance(token.name, str))
            and token.scope in SCOPES
            and isinstance(token.created, int)
            and isinstance(token.sha256, str)
            and len(token.sha256) == 64
        ):
            raise TokenError(f"{path}: token {str(token.id)[:16]!r} is malformed")
        out.append(token)
    return out


class TokenBook:
    """The scoped tokens of one home: changed by commands, checked by the API."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name("tokens.lock")
        self._seen: tuple[int, int, int] | None = None
        self._tokens: list[Token] = []

    # ---- reading

    def tokens(self) -> list[Token]:
        """The tokens now in the file (none when there is no file)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise TokenError(f"cannot read {self.path}: {exc.strerror}") from None
        return _parse(data, self.path)

    def check(self, given: str) -> Token | None:
        """The token whose text is ``given``, or None (unknown or revoked).

        Every stored hash is compared, in constant time, whatever matches: how long the check
        takes says nothing about the tokens held.
        """
        digest = _digest(given).encode()
        found = None
        for token in self._current():
            if hmac.compare_digest(digest, token.sha256.encode()):
                found = token
        return found

    def _current(self) -> list[Token]:
        """The tokens, read again only when the file changed since the last read."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._seen, self._tokens = None, []
            return []
        except OSError as exc:
            log.warning("cannot read %s (%s): no scoped token is accepted", self.path, exc)
            self._seen, self._tokens = None, []
            return []
        seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        if seen != self._seen:
            self._seen = seen
            try:
                self._tokens = self.tokens()
            except TokenError as exc:
                log.warning("%s; no scoped token is accepted until it is fixed", exc)
                self._tokens = []
        return self._tokens

    # ---- changing

    def create(
        self, scope: str, name: str | None = None, *, now_ms: int | None = None
    ) -> tuple[str, Token]:
        """Add a token of ``scope``: its text, which is stored nowhere (only its hash), and
        its entry."""
        if scope not in SCOPES:
            raise TokenError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
        if name is not None and (
            not name or len(name) > MAX_NAME or terminal_safe(name) != name or name != name.strip()
        ):
            raise TokenError(
                f"a token name is 1..{MAX_NAME} characters of one line, without control "
                "characters or surrounding spaces"
            )
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        created = int(time.time() * 1000) if now_ms is None else now_ms
        with self._locked() as tokens:
            if len(tokens) >= MAX_TOKENS:
                raise TokenError(f"this home has {len(tokens)} tokens, the most it can hold")
            if name is not None and any(t.name == name for t in tokens):
                raise TokenError(f"a token named {name!r} exists already: revoke it first")
            ids = {t.id for t in tokens}
            token_id = secrets.token_hex(4)
            while token_id in ids:
                token_id = secrets.token_hex(4)
            token = Token(token_id, name, scope, created, _digest(secret))
            tokens.append(token)
        return secret, token

    def revoke(self, token_id: str) -> Token:
        """Remove the token with id ``token_id``; returns it."""
        with self._locked() as tokens:
            for i, token in enumerate(tokens):
                if token.id == token_id:
                    del tokens[i]
                    return token
        raise TokenError(f"no token with id {token_id!r} (see `commons token list`)")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[Token]]:
        """The tokens, to change in place; written back atomically when the block succeeds."""
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise TokenError(f"cannot lock {self._lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            tokens = self.tokens()
            yield tokens
            self._write(tokens)
        finally:
            os.close(fd)

    def _write(self, tokens: list[Token]) -> None:
        data = json.dumps(
            {"version": FILE_VERSION, "tokens": [asdict(t) for t in tokens]}, indent=2
        )
        tmp = self.path.with_name(f"{self.path.name}.tmp{os.getpid()}")
        try:
            tmp.unlink(missing_ok=True)  # left by a crash, perhaps with another mode
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(data.encode() + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise TokenError(f"cannot write {self.path}: {exc.strerror}") from None
