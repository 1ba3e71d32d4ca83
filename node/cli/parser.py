"""The command's argument parser: the contract's usage errors and the options of every command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROJECT_HELP",
    "RECORD_HELP",
    "Parser",
    "add_command",
    "common_options",
]

#: Help of the id arguments many commands take.
PROJECT_HELP = "the project's id, or a prefix of at least 8 hex digits"
RECORD_HELP = "the record's id, or a prefix of at least 8 hex digits"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """argparse with the contract's error format: one ``error:`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_USAGE)


def common_options() -> Parser:
    """Options every command takes, before or after the command name."""
    common = Parser(add_help=False)
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


def add_command(
    sub: Any,
    common: argparse.ArgumentParser,
    name: str,
    func: Callable[[argparse.Namespace], int],
    help: str,
    **kw: Any,
) -> Any:
    """Add the command ``name`` to the sub-parsers ``sub``, run by ``func``."""
    p = sub.add_parser(name, help=help, description=help, parents=[common], **kw)
    p.set_defaults(func=func)
    return p
