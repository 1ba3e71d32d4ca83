"""The local HTTP API (docs/INTERFACES.md): Starlette routes served by Hypercorn inside the node.

Reads are open on the API address; every write needs ``Authorization: Bearer <token>``: the
owner's ``api.token``, or a scoped token (:mod:`node.tokens`) whose scope allows the call.
No token, or one that is unknown or revoked, gets 401; a valid token whose scope does not
allow the call gets 403. Errors are JSON ``{"error": "..."}`` with a 4xx status for anything
the caller got wrong; a bug in a handler becomes a logged 500, never a dead node. Bodies are
bounded before they are read in full.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from node.api.admin import admin_routes
from node.api.front import Fronts, GateProcess
from node.api.viewcalls import JSON_TYPE, ApiError, view_answer, viewed
from node.authoring import AuthoringError
from node.moderation import ModerationError
from node.net.transport import TransportError
from node.textout import terminal_safe
from node.tokens import TokenBook, allows
from node.views.cache import ViewError, record_json
from node.views.details import person_json, profile_json, record_detail
from node.web.site import Dashboard
from protocol.bundle import BundleReader, OversizedRecord
from protocol.errors import BundleError, InvalidRecord, ProtocolError
from protocol.record import MAX_RECORD_SIZE, record_id

if TYPE_CHECKING:
    from node.runtime import Node

__all__ = ["ApiSockets", "ApiStartError", "bind_api", "build_app", "serve_api"]

log = logging.getLogger(__name__)

#: The largest JSON request body accepted, in bytes.
MAX_JSON_BODY = 256 * 1024
#: ``POST /api/v1/bundles``: records a request may carry, and bytes.
MAX_BUNDLE_RECORDS = 4096
MAX_BUNDLE_BODY = 16 * 1024 * 1024

Handler = Callable[[Request], Awaitable[Response]]


def _error(status: int, message: str, *, close: bool = False) -> JSONResponse:
    """An error answer. ``close`` when the request's body was not read to its end: the server
    then closes the connection after the answer, and says so, or a keep-alive client would
    send its next request into a connection about to close."""
    headers = {"Connection": "close"} if close else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class ApiStartError(Exception):
    """The API could not start (address taken, not an address)."""


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise ApiError(413, f"request body larger than {limit} bytes", close=True)
        except ValueError:
            raise ApiError(400, "bad Content-Length header") from None
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body larger than {limit} bytes", close=True)
        chunks.append(chunk)
    return b"".join(chunks)


async def _json(request: Request) -> dict[str, Any]:
    data = await _body(request, MAX_JSON_BODY)
    if not data:
        return {}
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return value


def build_app(node: Node) -> Starlette:
    token = node.home.api_token()
    scoped = TokenBook(node.home.tokens_path)

    def granted(request: Request) -> str | None:
        """The scope the request's bearer token grants, or None (no, unknown or revoked token)."""
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        given = given.strip()
        if hmac.compare_digest(given.encode(), token.encode()):
            return "all"
        found = scoped.check(given)
        return None if found is None else found.scope

    def guard(handler: Handler, *, write: bool = False, scope: str = "all") -> Handler:
        """``handler`` behind the error mapping; a ``write`` needs a token allowing ``scope``."""

        async def wrapped(request: Request) -> Response:
            started = time.monotonic()
            response = await answer(request)
            # One debug line a call: method, path and status, never a header (the token).
            # Escaping the path costs a pass over it: only when the line is written.
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "%s %s -> %d in %.1f ms",
                    request.method,
                    terminal_safe(request.url.path),
                    response.status_code,
                    (time.monotonic() - started) * 1000,
                )
            return response

        async def answer(request: Request) -> Response:
            if write:
                headers = request.headers
                unread = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
                has = granted(request)
                if has is None:
                    message = "this call needs Authorization: Bearer <api.token or a scoped token>"
                    return _error(401, message, close=unread)
                if not allows(has, scope):
                    message = f"this token's scope ({has}) does not allow this call (scope {scope})"
                    return _error(403, message, close=unread)
            try:
                return await handler(request)
            except ApiError as exc:
                return _error(exc.status, str(exc), close=exc.close)
            except ViewError as exc:
                return _error(exc.status, str(exc))
            except AuthoringError as exc:
                return _error(422, str(exc))
            except ModerationError as exc:
                return _error(exc.status, str(exc))
            except InvalidRecord as exc:
                return _error(422, str(exc))
            except ProtocolError as exc:
                return _error(400, str(exc))
            except TransportError as exc:
                return _error(502, str(exc))
            except Exception:
                log.exception("API handler %s failed", request.url.path)
                return _error(500, "internal error (see the node's log)")

        return wrapped

    async def in_thread(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return await trio.to_thread.run_sync(partial(fn, *args, **kw))

    # ---- reads

    async def status(request: Request) -> Response:
        return JSONResponse(await in_thread(node.status))

    async def peers(request: Request) -> Response:
        return JSONResponse(node.peers())

    async def projects(request: Request) -> Response:
        return JSONResponse(await in_thread(node.views.project_list))

    async def project(request: Request) -> Response:
        pid = request.path_params["pid"]
        return JSONResponse(await viewed(node.views, node.views.project_show, pid))

    async def views_call(request: Request) -> Response:
        # Built as the API's front process builds them (node.api.viewcalls).
        path = request.scope["path"]
        view, pid = path.rsplit("/", 1)[1], request.path_params["pid"]
        answer = await view_answer(node.views, view, pid, path, request.scope["query_string"])
        headers = answer.headers
        if node.front is not None:
            # The front answers the views meanwhile: the client's next one goes through the
            # API's gate again, on a new connection, which the gate sends to the front.
            headers = {**headers, "connection": "close"}
        return Response(answer.body, answer.status, headers, media_type=JSON_TYPE)

    async def claims(request: Request) -> Response:
        return JSONResponse(await in_thread(node.views.claims, request.path_params["pid"]))

    async def record(request: Request) -> Response:
        r = await in_thread(node.views.record, request.path_params["rid"])
        if request.query_params.get("raw") in ("1", "true"):
            return JSONResponse({"id": r.id.hex(), "raw": r.raw.hex()})
        return JSONResponse(await in_thread(record_detail, node.views, r))

    async def profile(request: Request) -> Response:
        peer = request.path_params["peer"]
        return JSONResponse(await in_thread(profile_json, node.store, peer))

    async def healthz(request: Request) -> Response:
        # The process runs and its event loop answers: nothing else is looked at, so a busy
        # store or a lonely node is never restarted for it.
        return JSONResponse({"ok": True})

    async def readyz(request: Request) -> Response:
        state = node.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    async def person(request: Request) -> Response:
        peer = request.path_params["peer"]
        people = await in_thread(node.views.people)
        return JSONResponse(person_json(people, peer))

    async def metrics(request: Request) -> Response:
        text = await in_thread(node.metrics.render)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # ---- writes

    async def post_record(request: Request) -> Response:
        # A body longer than any record is a record that is too large: 422 with the code
        # every other door gives it (docs/INTERFACES.md), whether or not it declared its length.
        try:
            raw = await _body(request, MAX_RECORD_SIZE + 1)
        except ApiError as exc:
            if exc.status == 413:
                message = "too-large: a record is at most 65536 bytes"
                raise ApiError(422, message, close=True) from None
            raise
        if not raw:
            raise ApiError(422, "empty body: send one canonical signed record")
        if len(raw) > MAX_RECORD_SIZE:
            raise ApiError(422, "too-large: a record is at most 65536 bytes")
        r, new = await node.submit(raw)
        return JSONResponse({"id": r.id.hex()}, status_code=201 if new else 200)

    async def post_bundle(request: Request) -> Response:
        # A whole batch in one request: tools that author many records (an import from git
        # history, a benchmark) pay the HTTP round trip and the commit once per batch.
        body = await _body(request, MAX_BUNDLE_BODY)
        reader = BundleReader()
        try:
            entries = reader.feed(body)
            reader.close()
        except BundleError as exc:
            raise ApiError(422, str(exc)) from None
        if not entries:
            raise ApiError(422, "empty bundle: send at least one record")
        if len(entries) > MAX_BUNDLE_RECORDS:
            raise ApiError(422, f"too-many: {len(entries)} records, at most {MAX_BUNDLE_RECORDS}")
        # A record too large to read is refused by its index, like an invalid one; the
        # others are judged and stored together.
        raws = [e for e in entries if isinstance(e, bytes)]
        where = [i for i, e in enumerate(entries) if isinstance(e, bytes)]
        refused = [(e.index, str(e)) for e in entries if isinstance(e, OversizedRecord)]
        if refused:
            node.metrics.inc(
                "commons_ingest_rejected_total",
                len(refused),
                source="api",
                reason=OversizedRecord.code,
            )
        result = await node.submit_many(raws) if raws else None
        if result is not None:
            refused += [(where[i], e) for i, e in result.rejected]
        refused.sort()
        failed = {i for i, _ in refused}
        ids = [
            record_id(e).hex() if isinstance(e, bytes) and i not in failed else None
            for i, e in enumerate(entries)
        ]
        new = len(result.new) if result is not None else 0
        body_json = {
            "new": new,
            "duplicates": len(result.duplicates) if result is not None else 0,
            "rejected": [{"index": i, "error": e} for i, e in refused],
            "ids": ids,
        }
        return JSONResponse(body_json, status_code=201 if new else 200)

    def author(action: str, project_param: bool = False) -> Handler:
        async def handler(request: Request) -> Response:
            fields = await _json(request)
            if project_param:
                fields["project"] = request.path_params["pid"]
            authored = await node.author_checked(action, fields)
            answer = record_json(authored.record)
            if authored.no_effect is not None:
                # Published because the caller insisted: say that it will not count.
                answer["no_effect"] = authored.no_effect
            return JSONResponse(answer, status_code=201)

        return handler

    async def sync(request: Request) -> Response:
        fields = await _json(request)
        addr = fields.get("addr")
        if addr is not None and (
            not isinstance(addr, str) or not addr.startswith("/") or "/p2p/" not in addr
        ):
            raise ApiError(400, "addr must be a multiaddr ending in /p2p/<peer id>")
        return JSONResponse(await node.sync_now(addr))

    dashboard = Dashboard(node)

    async def not_found(request: Request, exc: Exception) -> Response:
        if request.url.path.startswith(("/api/", "/metrics")):
            return _error(404, f"no such endpoint: {request.method} {request.url.path}")
        return await dashboard.guard(dashboard.not_found)(request)

    async def bad_method(request: Request, exc: Exception) -> Response:
        return _error(405, f"{request.method} is not allowed on {request.url.path}")

    routes = [
        Route("/api/v1/status", guard(status)),
        Route("/api/v1/peers", guard(peers)),
        Route("/api/v1/projects", guard(projects)),
        Route("/api/v1/projects", guard(author("project"), write=True), methods=["POST"]),
        Route("/api/v1/projects/{pid}", guard(project)),
        Route("/api/v1/projects/{pid}/ledger", guard(views_call)),
        Route("/api/v1/projects/{pid}/shares", guard(views_call)),
        Route("/api/v1/projects/{pid}/claims", guard(claims)),
        Route(
            "/api/v1/projects/{pid}/updates",
            guard(author("update", True), write=True),
            methods=["POST"],
        ),
        Route(
            "/api/v1/projects/{pid}/contributions",
            guard(author("contribution", True), write=True),
            methods=["POST"],
        ),
        Route("/api/v1/endorsements", guard(author("endorsement"), write=True), methods=["POST"]),
        Route("/api/v1/retractions", guard(author("retraction"), write=True), methods=["POST"]),
        Route("/api/v1/profiles", guard(author("profile"), write=True), methods=["POST"]),
        Route("/api/v1/profiles/{peer}", guard(profile)),
        Route("/api/v1/people/{peer}", guard(person)),
        Route("/api/v1/identity/link", guard(author("link"), write=True), methods=["POST"]),
        Route("/api/v1/identity/join", guard(author("join"), write=True), methods=["POST"]),
        Route("/api/v1/identity/revoke", guard(author("revoke"), write=True), methods=["POST"]),
        Route("/api/v1/records/{rid}", guard(record)),
        Route("/api/v1/records", guard(post_record, write=True, scope="submit"), methods=["POST"]),
        Route("/api/v1/bundles", guard(post_bundle, write=True, scope="submit"), methods=["POST"]),
        Route("/api/v1/sync", guard(sync, write=True), methods=["POST"]),
        Route("/metrics", guard(metrics)),
        Route("/healthz", guard(healthz)),
        Route("/readyz", guard(readyz)),
        *admin_routes(node, guard, _json),
        Route(
            "/api/v1/dashboard/logins",
            guard(dashboard.issue_login, write=True),
            methods=["POST"],
        ),
        *dashboard.routes(),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: bad_method})


@dataclass
class ApiSockets:
    """The API's listening sockets, bound before the node starts (see :func:`bind_api`)."""

    #: The API address's socket, and its ``http://HOST:PORT``.
    public: socket.socket
    url: str
    #: Where the node's own app listens behind the API's gate (loopback), if any.
    inner: socket.socket | None = None

    def close(self) -> None:
        """Close what was not handed over to a server."""
        self.public.close()
        if self.inner is not None:
            self.inner.close()


def bind_api(address: str, *, front: bool = False) -> ApiSockets:
    """Bind the API's address (HOST:PORT, port 0 picks one), and with ``front`` a loopback
    port for the node's own app behind the API's gate (:mod:`node.api.gate`).

    Bound here, so a taken port is a clear error (:class:`ApiStartError`) before the node
    starts rather than a failure inside Hypercorn, and handed over as they are (no window in
    which another program could take a port)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ApiStartError(f"API address {address!r} is not HOST:PORT")
    if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
        log.warning(
            "the API listens on %s, beyond loopback: anyone who can reach it can read the "
            "ledger, and writes depend only on the token",
            address,
        )
    try:
        public = socket.create_server((host.strip("[]"), int(port)))
    except OSError as exc:
        raise ApiStartError(f"cannot serve the API on {address}: {exc.strerror}") from None
    sockets = ApiSockets(public, f"http://{host}:{public.getsockname()[1]}")
    if front:
        sockets.inner = socket.create_server(("127.0.0.1", 0))
    for each in (sockets.public, sockets.inner):
        if each is not None:  # connections inherit it; Hypercorn sets it only on its own
            each.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sockets


async def serve_api(
    node: Node,
    sockets: ApiSockets,
    gate: GateProcess | None = None,
    fronts: Fronts | None = None,
    *,
    task_status: Any = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API until cancelled; report its ``http://HOST:PORT`` through ``task_status``.

    With ``gate`` (started on ``sockets.public``), the app is served on ``sockets.inner`` and
    the gate holds the address, passing every connection to the app, or while the node is
    busy (``fronts``) those asking for views to its front process; if the gate does not
    become ready, or stops, the app serves the address itself."""
    app = build_app(node)
    try:
        async with trio.open_nursery() as nursery:
            if sockets.inner is not None:
                await _serve_on(nursery, app, sockets.inner)
            if gate is None or sockets.inner is None or not await gate.started():
                await _serve_on(nursery, app, sockets.public)
                task_status.started(sockets.url)
                return
            node.gate = gate
            task_status.started(sockets.url)
            try:
                async with trio.open_nursery() as watch:
                    if fronts is not None:
                        watch.start_soon(fronts.run)
                    code = await gate.wait()
                    watch.cancel_scope.cancel()
            finally:
                node.gate = None
                await gate.close()
            log.warning(
                "the API's gate process stopped (exit status %s): the node serves the API itself",
                code,
            )
            await _serve_on(nursery, app, sockets.public)
    finally:
        sockets.close()


async def _serve_on(nursery: trio.Nursery, app: Starlette, listener: socket.socket) -> None:
    """Serve ``app`` with Hypercorn on ``listener`` (handed over) in ``nursery``."""
    config = HypercornConfig()
    config.accesslog = None
    config.errorlog = logging.getLogger("node.api.server")
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 5.0
    config.bind = [f"fd://{listener.detach()}"]
    await nursery.start(partial(serve, app, config, mode="asgi"))  # type: ignore[arg-type]
