"""Talking to the node that runs for a home, through its local HTTP API (stdlib only).

The CLI finds the node through ``node.json`` (written by ``commons node run``), and uses the
API token from the home for writes. Errors become :class:`CommandError` with a hint.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from node.cli.errors import CommandError
from node.home import Home

__all__ = ["NodeClient", "NodeUnreachable", "running_client"]

#: Seconds to wait for an API answer (a sync of a large ledger can take a while).
TIMEOUT = 30.0
SYNC_TIMEOUT = 900.0
#: The largest API response read, in bytes.
MAX_RESPONSE = 256 << 20


class NodeUnreachable(CommandError):
    """The node's API did not answer at all (as opposed to answering with an error)."""


class NodeClient:
    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = TIMEOUT,
        auth: bool = False,
    ) -> tuple[int, Any, dict[str, str]]:
        """One request: its status, its JSON (or text), and its headers (names lowercased).
        Writes carry the token; a read only with ``auth`` (the admin reads need it)."""
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", content_type)
        if self.token is not None and (method != "GET" or auth):
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status = response.status
                data = response.read(MAX_RESPONSE)
                headers = {k.lower(): v for k, v in response.headers.items()}
        except urllib.error.HTTPError as exc:
            status = exc.code
            data = exc.read(MAX_RESPONSE)
            headers = {k.lower(): v for k, v in exc.headers.items()}
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise NodeUnreachable(
                f"the node's API at {self.base_url} is not reachable ({reason}); "
                "is `commons node run` still running?"
            ) from None
        try:
            value = json.loads(data) if data else None
        except ValueError:
            value = data.decode("utf-8", "replace")
        if status >= 400:
            message = value.get("error") if isinstance(value, dict) else str(value)
            raise CommandError(str(message))
        return status, value, headers

    def get(self, path: str, *, timeout: float = TIMEOUT, auth: bool = False) -> Any:
        return self._exchange("GET", path, timeout=timeout, auth=auth)[1]

    def delete(self, path: str) -> Any:
        return self._exchange("DELETE", path)[1]

    def get_with_headers(
        self, path: str, *, timeout: float = TIMEOUT
    ) -> tuple[Any, dict[str, str]]:
        """``GET path``: its JSON and its headers (names lowercased), e.g. a page's cursor."""
        _, value, headers = self._exchange("GET", path, timeout=timeout)
        return value, headers

    def post(self, path: str, fields: dict[str, Any], *, timeout: float = TIMEOUT) -> Any:
        body = json.dumps(fields).encode()
        return self._exchange("POST", path, body=body, timeout=timeout)[1]

    def post_raw(self, path: str, raw: bytes) -> tuple[int, Any]:
        status, value, _ = self._exchange(
            "POST", path, body=raw, content_type="application/octet-stream"
        )
        return status, value


def running_client(home: Home) -> NodeClient | None:
    """A client for the live node of ``home``, or None when no node runs for it."""
    info = home.running_node()
    if info is None or not isinstance(info.get("api"), str):
        return None
    try:
        token = home.api_token()
    except Exception:
        token = None
    return NodeClient(info["api"], token)
