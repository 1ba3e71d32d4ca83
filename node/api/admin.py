"""``/api/v1/admin/...``: the operator's moderation of a running node (``commons admin``).

Blocks and bans change what the node holds and whom it talks to, so every call, reads
included, needs the owner's token (scope ``all``): the list of blocked authors is the
operator's business. The work is :class:`node.handle.NodeHandle`'s ``admin_*`` methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from node.moderation import ModerationError

if TYPE_CHECKING:
    from node.runtime import Node

__all__ = ["admin_routes"]

Handler = Callable[[Request], Awaitable[Response]]
Guard = Callable[..., Handler]


def admin_routes(
    node: Node, guard: Guard, read_json: Callable[[Request], Awaitable[dict[str, Any]]]
) -> list[Route]:
    """The admin routes, each behind ``guard`` (the API's error mapping and token check)."""

    def text_field(fields: dict[str, Any], name: str) -> str:
        value = fields.get(name)
        if not isinstance(value, str) or not value:
            raise ModerationError(f"{name} must be a non-empty string")
        return value

    async def blocks(request: Request) -> Response:
        return JSONResponse(await node.admin_blocks())

    async def add_block(request: Request) -> Response:
        fields = await read_json(request)
        unknown = sorted(set(fields) - {"kind", "key", "purge"})
        if unknown:
            raise ModerationError(f"unknown fields {unknown}: send kind, key and purge")
        purge = fields.get("purge", False)
        if not isinstance(purge, bool):
            raise ModerationError("purge must be true or false")
        kind, key = text_field(fields, "kind"), text_field(fields, "key")
        answer = await node.admin_block(kind, key, purge=purge, on=True)
        return JSONResponse(answer, status_code=201 if answer["changed"] else 200)

    async def remove_block(request: Request) -> Response:
        params = request.path_params
        return JSONResponse(
            await node.admin_block(params["kind"], params["key"], purge=False, on=False)
        )

    async def bans(request: Request) -> Response:
        return JSONResponse(await node.admin_bans())

    async def add_ban(request: Request) -> Response:
        fields = await read_json(request)
        unknown = sorted(set(fields) - {"peer", "for"})
        if unknown:
            raise ModerationError(f"unknown fields {unknown}: send peer and for")
        peer = text_field(fields, "peer")
        duration = fields.get("for")
        if isinstance(duration, int | float) and not isinstance(duration, bool):
            duration = str(duration)
        if duration is not None and not isinstance(duration, str):
            raise ModerationError("for must be a duration (3600, 30m, 12h, 7d) or absent")
        return JSONResponse(await node.admin_ban(peer, duration), status_code=201)

    async def remove_ban(request: Request) -> Response:
        return JSONResponse(await node.admin_unban(request.path_params["peer"]))

    def owner(handler: Handler) -> Handler:
        return guard(handler, write=True)

    return [
        Route("/api/v1/admin/blocks", owner(blocks)),
        Route("/api/v1/admin/blocks", owner(add_block), methods=["POST"]),
        Route("/api/v1/admin/blocks/{kind}/{key}", owner(remove_block), methods=["DELETE"]),
        Route("/api/v1/admin/bans", owner(bans)),
        Route("/api/v1/admin/bans", owner(add_ban), methods=["POST"]),
        Route("/api/v1/admin/bans/{peer}", owner(remove_ban), methods=["DELETE"]),
    ]
