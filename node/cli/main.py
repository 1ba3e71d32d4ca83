"""The ``commons`` command (docs/INTERFACES.md): argument parsing, dispatch, output, exit codes.

Exit codes: 0 done; 1 the operation failed (invalid input, not found, refused, unreachable);
2 wrong usage. Every expected failure is one ``error: ...`` line on stderr, never a traceback.
The commands themselves live in :mod:`node.cli.commands`; this module only wires them up.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from node.cli.errors import CommandError
from node.cli.textout import terminal_safe

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: The modules of the ``node`` extra (pyproject.toml) that the node imports. ``pip install
#: commons-ledger`` installs the protocol library alone, which cannot run any command, so
#: their absence is reported before anything imports them (tests/test_packaging.py keeps this
#: list and the extra's requirements equal).
NODE_DEPENDENCIES = ("libp2p", "trio", "starlette", "hypercorn")


def missing_node_dependencies() -> list[str]:
    """The modules of :data:`NODE_DEPENDENCIES` that cannot be imported here."""
    return [name for name in NODE_DEPENDENCIES if importlib.util.find_spec(name) is None]


class _Parser(argparse.ArgumentParser):
    """argparse with the contract's error format: one ``error:`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_USAGE)


def _common() -> _Parser:
    """Options every command takes, before or after the command name."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--home",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="the node's home folder (default: $COMMONS_HOME, else $XDG_DATA_HOME/commons)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON value on stdout instead of text",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    from node.cli import commands as c

    common = _common()
    parser = _Parser(
        prog="commons",
        description="Commons: a peer-to-peer ledger of who contributed what to which commons "
        "project. Records are signed by their authors, endorsed by maintainers, gossiped "
        "between peers and reconciled so every node converges on the same ledger.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, func: Callable[[argparse.Namespace], int], help: str, **kw: Any) -> Any:
        p = sub.add_parser(name, help=help, description=help, parents=[common], **kw)
        p.set_defaults(func=func)
        return p

    p = add("init", c.cmd_init, "create this home's identity, config and store (idempotent)")
    p.add_argument("--name", help="also publish a profile with this display name")

    add("id", c.cmd_id, "show this home's identity (peer id and public key)")

    p = add(
        "verify",
        c.cmd_verify,
        "check a bundle file offline: every record's form and signature; stores nothing",
    )
    p.add_argument("file", metavar="FILE", help="the bundle file to check")

    c.add_commands(add, sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    missing = missing_node_dependencies()
    if missing:
        sys.stderr.write(
            f"error: the node's dependencies are not installed (no {', '.join(missing)}): "
            "install them with: pip install 'commons-ledger[node]'\n"
        )
        return EXIT_FAILED
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "home"):
        args.home = None
    if not hasattr(args, "json"):
        args.json = False
    try:
        return int(args.func(args))
    except CommandError as exc:
        if args.json and exc.payload is not None:
            print(json.dumps(exc.payload))
        # The message may quote a peer or the node's API: one escaped line, always.
        sys.stderr.write(f"error: {terminal_safe(str(exc))}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_FAILED


def entry() -> NoReturn:  # pragma: no cover - thin wrapper for the console script
    raise SystemExit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
