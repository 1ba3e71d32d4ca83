"""The dashboard's routes, added to the API app by :func:`node.api.app.build_app`.

Reads (``/``, ``/projects``, ``/projects/{pid}``, ``/records/{rid}``, ``/people/{peer}``,
``/peers``) are open, like the API's; writes are forms posted by a logged-in owner
(:mod:`node.web.auth`) and go through ``node.author_checked``, the API's own authoring path.
Every answer refuses a ``Host`` that is not an address or ``localhost``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from importlib import resources
from typing import TYPE_CHECKING, Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from node.authoring import AuthoringError, NoEffect
from node.views.cache import ViewError
from node.web import pages
from node.web.auth import (
    SESSION_TTL,
    Session,
    Sessions,
    cookie_name,
    csrf_ok,
    host_ok,
    origin_ok,
)
from node.web.events import EventHub
from node.web.forms import MAX_FORM_BODY, field_of, fields_of, parse_form
from node.web.render import SECURITY_HEADERS, render
from protocol.attest import names_handle
from protocol.errors import ProtocolError
from protocol.record import parse_id_prefix

if TYPE_CHECKING:
    from node.handle import NodeHandle

__all__ = ["Dashboard"]

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]

#: The static files and their types; nothing else under /static/ is served.
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Dashboard:
    """The dashboard of one node: its sessions, its event streams and its routes."""

    def __init__(self, node: NodeHandle) -> None:
        self.node = node
        self.sessions = Sessions()
        self.events = EventHub()
        self._listening = False
        folder = resources.files("node.web") / "static"
        self._static = {
            f.name: f.read_bytes()
            for f in folder.iterdir()
            if f.is_file() and any(f.name.endswith(s) for s in STATIC_TYPES)
        }

    # ---------------------------------------------------------------------------- plumbing

    def _page(
        self, request: Request, template: str, context: dict[str, Any], status: int = 200
    ) -> Response:
        session = self.sessions.of(request)
        context = {
            **context,
            "session": session,
            "me": getattr(self.node, "peer_id", None),
            "path": request.url.path,
        }
        return render(template, context, status=status)

    def error_page(self, request: Request, status: int, message: str) -> Response:
        titles = {400: "Bad request", 403: "Not allowed", 404: "Not found", 422: "Refused"}
        context = {"status": status, "title": titles.get(status, "Error"), "message": message}
        return self._page(request, "error.html", context, status)

    def guard(self, handler: Handler) -> Handler:
        """``handler`` behind the Host check and the mapping of errors to error pages."""

        async def wrapped(request: Request) -> Response:
            if not host_ok(request):
                message = "this dashboard answers only at an IP address or localhost"
                return render(
                    "error.html",
                    {"status": 400, "title": "Bad Host", "message": message},
                    status=400,
                )
            try:
                return await handler(request)
            except ViewError as exc:
                return self.error_page(request, exc.status, str(exc))
            except _Refused as exc:
                return self.error_page(request, exc.status, str(exc))
            except Exception:
                log.exception("dashboard page %s failed", request.url.path)
                return self.error_page(request, 500, "internal error (see the node's log)")

        return wrapped

    async def _in_thread(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return await trio.to_thread.run_sync(partial(fn, self.node, *args, **kw))

    # ---------------------------------------------------------------------------- reads

    async def home(self, request: Request, form: dict[str, Any] | None = None) -> Response:
        context = await self._in_thread(pages.home)
        return self._page(request, "home.html", {**context, "form": form}, 422 if form else 200)

    async def projects(self, request: Request, form: dict[str, Any] | None = None) -> Response:
        q = request.query_params
        context = await self._in_thread(pages.projects, q.get("q", "")[:200], q.get("sort", "name"))
        return self._page(request, "projects.html", {**context, "form": form}, 422 if form else 200)

    async def project(self, request: Request, form: dict[str, Any] | None = None) -> Response:
        q = request.query_params
        context = await self._in_thread(
            pages.project,
            request.path_params["pid"],
            type=q.get("type") or None,
            author=q.get("author") or None,
            cursor=q.get("cursor") or None,
        )
        return self._page(request, "project.html", {**context, "form": form}, 422 if form else 200)

    async def record(self, request: Request, form: dict[str, Any] | None = None) -> Response:
        context = await self._in_thread(pages.record, request.path_params["rid"])
        context["created"] = request.query_params.get("created") == "1"
        return self._page(request, "record.html", {**context, "form": form}, 422 if form else 200)

    async def raw(self, request: Request) -> Response:
        r = await self._in_thread(
            lambda node, text: node.views.record(text), request.path_params["rid"]
        )
        headers = {
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="{r.id.hex()}.record"',
        }
        return Response(r.raw, media_type="application/octet-stream", headers=headers)

    async def person(self, request: Request) -> Response:
        text = request.path_params["peer"]
        if names_handle(text):
            context = await self._in_thread(pages.handle, text)
            return self._page(request, "handle.html", context)
        context = await self._in_thread(pages.person, text)
        return self._page(request, "person.html", context)

    async def peers(self, request: Request) -> Response:
        return self._page(request, "peers.html", await self._in_thread(pages.peers))

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        data = self._static.get(name)
        if data is None:
            raise _Refused(404, f"no such file: /static/{name[:80]}")
        media = next(t for s, t in STATIC_TYPES.items() if name.endswith(s))
        headers = {**SECURITY_HEADERS, "Cache-Control": "max-age=300"}
        return Response(data, media_type=media, headers=headers)

    async def not_found(self, request: Request) -> Response:
        return self.error_page(request, 404, f"no page at {request.url.path[:200]}")

    # ---------------------------------------------------------------------------- log in

    async def login(self, request: Request) -> Response:
        session = self.sessions.redeem(request.query_params.get("token", ""))
        if session is None:
            message = (
                "this login link was used already or has expired: run `commons dashboard` "
                "again for a new one"
            )
            raise _Refused(403, message)
        response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
        response.set_cookie(
            cookie_name(request),
            session.id,
            max_age=int(SESSION_TTL),
            path="/",
            httponly=True,
            samesite="strict",
        )
        return response

    async def logout(self, request: Request) -> Response:
        session, _ = await self._checked_form(request)
        self.sessions.end(session)
        response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)
        response.delete_cookie(cookie_name(request), path="/", httponly=True, samesite="strict")
        return response

    async def issue_login(self, request: Request) -> Response:
        """``POST /api/v1/dashboard/logins`` (bearer token): a one-time login URL."""
        token = self.sessions.issue_login()
        base = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        return JSONResponse({"url": f"{base}/login?token={token}"}, status_code=201)

    # ---------------------------------------------------------------------------- writes

    async def _checked_form(self, request: Request) -> tuple[Session, dict[str, str]]:
        """The session and the form of a write, after the Origin, session and CSRF checks."""
        if not origin_ok(request):
            raise _Refused(403, "refused: this form was not sent by a page of this dashboard")
        session = self.sessions.of(request)
        if session is None:
            raise _Refused(403, "log in first: run `commons dashboard` and open the URL it prints")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_FORM_BODY:
            raise _Refused(400, f"the form is larger than {MAX_FORM_BODY} bytes")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BODY:
                raise _Refused(400, f"the form is larger than {MAX_FORM_BODY} bytes")
        try:
            form = parse_form(body)
        except ValueError:
            raise _Refused(
                400, "the form could not be read (not UTF-8, or too many fields)"
            ) from None
        if not csrf_ok(session, form.get("csrf")):
            raise _Refused(
                403,
                "this form is out of date (its CSRF token does not match): reload the page "
                "and send it again",
            )
        return session, form

    def write(
        self, action: str, page: Callable[..., Awaitable[Response]], target: str | None = None
    ) -> Handler:
        """The handler of one form: author ``action``; on a refusal, ``page`` again with the
        form's values and the message beside its field."""

        async def handler(request: Request) -> Response:
            _, form = await self._checked_form(request)
            fields, errors = fields_of(action, form)
            if target is not None:
                fields[target] = request.path_params["pid" if target == "project" else "rid"]
            authored = None
            if not errors:
                try:
                    authored = await self.node.author_checked(action, fields)
                except NoEffect as exc:
                    # The CLI's message names its flag; here the box beside the field is it.
                    because = str(exc).split(" (publish it anyway", 1)[0]
                    errors["force"] = f"{because}. Tick this box to publish it anyway."
                except AuthoringError as exc:
                    errors[field_of(str(exc), action)] = str(exc)
            if authored is None:
                state = {"action": action, "values": form, "errors": errors}
                return await page(request, state)
            where = f"/records/{authored.record.id.hex()}?created=1"
            return RedirectResponse(where, status_code=303, headers=SECURITY_HEADERS)

        return handler

    # ---------------------------------------------------------------------------- events

    async def event_stream(self, request: Request) -> Response:
        """``GET /api/v1/events[?project=ID]``: Server-Sent Events (``node.web.events``)."""
        project = request.query_params.get("project") or None
        if project is not None:
            try:
                project = parse_id_prefix(project)
            except ProtocolError as exc:
                return JSONResponse({"error": f"project: {exc.message}"}, status_code=400)
            if len(project) != 64:
                return JSONResponse(
                    {"error": "project must be a full 64-character id"}, status_code=400
                )
        if self.events.full():
            message = f"too many event streams open (at most {self.events.max_clients})"
            return JSONResponse({"error": message}, status_code=503)
        if not self._listening:
            self.node.ingestor.on_new(self.events.publish)
            self._listening = True
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(
            self.events.stream(project), media_type="text/event-stream", headers=headers
        )

    # ---------------------------------------------------------------------------- routes

    def routes(self) -> list[Route]:
        g = self.guard
        post = ["POST"]
        return [
            Route("/", g(self.home)),
            Route("/projects", g(self.projects)),
            Route("/projects", g(self.write("project", self.projects)), methods=post),
            Route("/projects/{pid}", g(self.project)),
            Route(
                "/projects/{pid}/update",
                g(self.write("update", self.project, "project")),
                methods=post,
            ),
            Route(
                "/projects/{pid}/contribute",
                g(self.write("contribution", self.project, "project")),
                methods=post,
            ),
            Route("/records/{rid}", g(self.record)),
            Route("/records/{rid}/raw", g(self.raw)),
            Route(
                "/records/{rid}/endorse",
                g(self.write("endorsement", self.record, "record")),
                methods=post,
            ),
            Route(
                "/records/{rid}/retract",
                g(self.write("retraction", self.record, "record")),
                methods=post,
            ),
            Route("/profile", g(self.write("profile", self.home)), methods=post),
            # A path: a forge handle (``forge:host/user``) holds a slash.
            Route("/people/{peer:path}", g(self.person)),
            Route("/peers", g(self.peers)),
            Route("/login", g(self.login)),
            Route("/logout", g(self.logout), methods=post),
            Route("/static/{name}", g(self.static)),
            Route("/api/v1/events", g(self.event_stream)),
        ]
