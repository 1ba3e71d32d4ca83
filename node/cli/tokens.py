"""``commons token create|list|revoke``: scoped API tokens for outside tools (node.tokens)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from node.cli.errors import CommandError
from node.cli.output import emit, home_of
from node.cli.parser import Parser
from node.home import Home, HomeError
from node.textout import table, terminal_safe
from node.tokens import SCOPES, TokenBook, TokenError

__all__ = ["register"]


def _book(args: argparse.Namespace) -> TokenBook:
    home: Home = home_of(args)
    try:
        home.require()
    except HomeError as exc:
        raise CommandError(str(exc)) from None
    return TokenBook(home.tokens_path)


def cmd_token_create(args: argparse.Namespace) -> int:
    book = _book(args)
    try:
        secret, token = book.create(args.scope, args.name)
    except TokenError as exc:
        raise CommandError(str(exc)) from None
    if args.json:
        emit(args, {**token.public(), "token": secret}, "")
    else:
        # Only the token on stdout, so `TOKEN=$(commons token create ...)` captures it.
        print(secret)
        name = f" {terminal_safe(token.name)!r}" if token.name else ""
        sys.stderr.write(
            f"created token {token.id}{name} with scope {token.scope}; it is shown only now "
            f"(revoke it with `commons token revoke {token.id}`)\n"
        )
    return 0


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def cmd_token_list(args: argparse.Namespace) -> int:
    try:
        tokens = _book(args).tokens()
    except TokenError as exc:
        raise CommandError(str(exc)) from None
    rows: list[tuple[Any, ...]] = [(t.id, t.name or "-", t.scope, _when(t.created)) for t in tokens]
    text = (
        table(["ID", "NAME", "SCOPE", "CREATED"], rows)
        if rows
        else "no scoped tokens (api.token alone allows writes): see `commons token create`"
    )
    emit(args, [t.public() for t in tokens], text)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    try:
        token = _book(args).revoke(args.id)
    except TokenError as exc:
        raise CommandError(str(exc)) from None
    emit(args, {**token.public(), "revoked": True}, f"revoked token {token.id}")
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "token",
        parents=[common],
        help="scoped API tokens for outside tools (create, list, revoke)",
        description="Scoped API tokens: a tool that only submits records signed elsewhere "
        "(a git hook) gets a token of scope submit, which allows POST /api/v1/records and "
        "POST /api/v1/bundles and nothing else; scope all allows every write, like "
        "api.token. Only a hash of each token is kept (tokens.json); revoking one takes "
        "effect on a running node at its next request.",
    )
    tsub = parser.add_subparsers(dest="token_command", metavar="COMMAND", parser_class=Parser)
    tsub.required = True
    p = tsub.add_parser(
        "create",
        parents=[common],
        help="make a token and print it, once",
        description="Make a token and print it on stdout, once: it is stored only as a hash.",
    )
    p.set_defaults(func=cmd_token_create)
    p.add_argument(
        "--scope",
        required=True,
        choices=SCOPES,
        help="submit: POST /api/v1/records and /api/v1/bundles only; all: every write",
    )
    p.add_argument("--name", metavar="NAME", help="what the token is for (e.g. git-hook)")
    p = tsub.add_parser("list", parents=[common], help="the tokens of this home (not the tokens)")
    p.set_defaults(func=cmd_token_list)
    p = tsub.add_parser("revoke", parents=[common], help="revoke a token at once, by its id")
    p.set_defaults(func=cmd_token_revoke)
    p.add_argument("id", metavar="ID", help="the token's id, as `commons token list` shows it")
