"""Who may write through the dashboard: the owner, once logged in with a one-time URL.

The API's writes need the bearer token, which a browser must not hold. So ``commons
dashboard`` (with that token) asks the node for a one-time login URL; opening it exchanges
the one-time token for a session cookie (``HttpOnly``, ``SameSite=Strict``), and each form
carries the session's CSRF token. Without a session the pages are read-only.

Two more checks stop other web pages from using the browser against the node:

- ``Host`` must be an IP address or ``localhost``. A DNS-rebinding page reaches the node under
  the attacker's own host name; a real name is never needed to reach a loopback API.
- A write's ``Origin`` must be this very origin (``http://`` plus the ``Host`` asked for).

Sessions and login tokens live in memory only: a node restart logs everyone out.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request

__all__ = ["Session", "Sessions", "cookie_name", "host_ok", "origin_ok"]
#: A login URL works once, within this many seconds.
LOGIN_TTL = 600.0
#: A session lasts this long after its last use.
SESSION_TTL = 12 * 3600.0
#: Outstanding login tokens and live sessions kept; the oldest go first.
MAX_LOGINS = 16
MAX_SESSIONS = 64


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    expires: float = field(default=0.0)


class Sessions:
    """One-time login tokens and the sessions they open, bounded and expiring."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._logins: OrderedDict[str, float] = OrderedDict()
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def issue_login(self) -> str:
        """A new one-time login token, valid for ``LOGIN_TTL`` seconds."""
        token = secrets.token_urlsafe(32)
        self._logins[token] = self._clock() + LOGIN_TTL
        while len(self._logins) > MAX_LOGINS:
            self._logins.popitem(last=False)
        return token

    def redeem(self, token: str) -> Session | None:
        """The new session for a login token, which is used up; None if it is unknown,
        used or expired."""
        now = self._clock()
        found = None
        for known in list(self._logins):
            if hmac.compare_digest(known.encode(), token.encode()):
                found = known
        if found is None:
            return None
        expires = self._logins.pop(found)
        if expires < now:
            return None
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now + SESSION_TTL)
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def of(self, request: Request) -> Session | None:
        """The live session the request's cookie names, or None (its expiry renewed)."""
        sid = request.cookies.get(cookie_name(request))
        if not sid:
            return None
        session = self._sessions.get(sid)
        now = self._clock()
        if session is None or not hmac.compare_digest(session.id.encode(), sid.encode()):
            return None
        if session.expires < now:
            del self._sessions[sid]
            return None
        session.expires = now + SESSION_TTL
        return session

    def end(self, session: Session) -> None:
        self._sessions.pop(session.id, None)


def cookie_name(request: Request) -> str:
    """The session cookie's name, which carries the port: browsers share cookies between
    the ports of one host, so two nodes' dashboards on 127.0.0.1 would otherwise log each
    other out (and each would receive the other's session)."""
    port = request.headers.get("host", "").rpartition(":")[2]
    return f"commons_session_{port}" if port.isdigit() else "commons_session"


def _hostname(host: str) -> str:
    """The name part of a ``Host`` header (``[::1]:4711`` gives ``::1``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def host_ok(request: Request) -> bool:
    """Whether ``Host`` names the node by address or as ``localhost`` (see the module doc)."""
    name = _hostname(request.headers.get("host", "")).lower()
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def origin_ok(request: Request) -> bool:
    """Whether a write comes from a page of this origin (``Origin`` equal to ours)."""
    origin = request.headers.get("origin")
    host = request.headers.get("host")
    if not origin or not host:
        return False
    return origin == f"{request.url.scheme}://{host}"


def csrf_ok(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), (given or "").encode())
