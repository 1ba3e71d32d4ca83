"""What every command shares: its home, its key, id arguments, and how it prints."""

from __future__ import annotations

import argparse
import json
from typing import Any

from node.cli.errors import CommandError
from node.clock import now_ms
from node.home import Home, HomeError, resolve_home
from node.textout import terminal_safe
from protocol.errors import ProtocolError
from protocol.record import parse_id_prefix
from protocol.signing import SigningKey

__all__ = ["emit", "home_of", "id_prefix", "identity", "now_ms"]


def emit(args: argparse.Namespace, value: Any, text: str) -> None:
    """Print ``value`` as JSON under ``--json``, else ``text`` for people.

    The JSON is ASCII (``json.dumps`` escapes the rest), and the text passes through
    :func:`terminal_safe`: whatever peer text a command forgot to escape line by line still
    reaches the terminal only as visible escapes."""
    if args.json:
        print(json.dumps(value))
    elif text:
        print(terminal_safe(text, multiline=True))


def home_of(args: argparse.Namespace) -> Home:
    return Home(resolve_home(args.home))


def identity(home: Home) -> SigningKey:
    try:
        return home.signing_key()
    except HomeError as exc:
        raise CommandError(str(exc)) from None


def id_prefix(text: str) -> str:
    """A record or project id argument (hex, or a prefix of at least 8), or a clear error."""
    try:
        return parse_id_prefix(text)
    except ProtocolError as exc:
        raise CommandError(exc.message) from None
