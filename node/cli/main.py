"""The ``commons`` command (docs/INTERFACES.md): argument parsing, dispatch, output, exit codes.

Exit codes: 0 done; 1 the operation failed (invalid input, not found, refused, unreachable);
2 wrong usage. Every expected failure is one ``error: ...`` line on stderr, never a traceback.
The commands live in one module a topic (identity, author, show, network, run, bundles,
tokens), each with a ``register`` function; this module only wires them up.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from node.cli.errors import CommandError
from node.cli.parser import EXIT_FAILED, Parser, common_options
from node.textout import terminal_safe

__all__ = ["main"]


#: The modules of the ``node`` extra (pyproject.toml) that the node imports. ``pip install
#: commons-ledger`` installs the protocol library alone, which cannot run any command, so
#: their absence is reported before anything imports them (tests/test_packaging.py keeps this
#: list and the extra's requirements equal).
NODE_DEPENDENCIES = ("libp2p", "trio", "starlette", "h11", "hypercorn", "jinja2")


def missing_node_dependencies() -> list[str]:
    """The modules of :data:`NODE_DEPENDENCIES` that cannot be imported here."""
    return [name for name in NODE_DEPENDENCIES if importlib.util.find_spec(name) is None]


class _Version(argparse.Action):
    """``--version``: the installed version, read only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        from node import __version__

        sys.stdout.write(f"commons {__version__}\n")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from node.cli import (
        admin,
        author,
        backups,
        bundles,
        completion,
        devices,
        history,
        identity,
        network,
        profile,
        run,
        show,
        tokens,
    )

    common = common_options()
    parser = Parser(
        prog="commons",
        description="Commons: a peer-to-peer ledger of who contributed what to which commons "
        "project. Records are signed by their authors, endorsed by maintainers, gossiped "
        "between peers and reconciled so every node converges on the same ledger.",
        parents=[common],
    )
    parser.add_argument("--version", action=_Version, help="print the version")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    identity.register(sub, common)
    devices.register(sub, common)
    profile.register(sub, common)
    run.register(sub, common)
    project = sub.add_parser(
        "project", help="create, update, list and show projects", parents=[common]
    )
    psub = project.add_subparsers(dest="project_command", metavar="COMMAND", parser_class=Parser)
    psub.required = True
    author.register_project(psub, common)
    show.register_project(psub, common)
    author.register(sub, common)
    show.register(sub, common)
    network.register(sub, common)
    bundles.register(sub, common)
    history.register(sub, common)
    tokens.register(sub, common)
    backups.register(sub, common)
    admin.register(sub, common)
    completion.register(sub, common, parser)
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
    except ImportError as exc:
        # node.net refuses a py-libp2p release its patches were not written for
        # (Libp2pVersionError, raised on import): one line, no traceback. Any other
        # ImportError is a bug and keeps its traceback.
        if type(exc).__module__ != "node.net":
            raise
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
