"""Errors the node's commands report to people: one line, no traceback."""

from __future__ import annotations

from typing import Any


class CommandError(Exception):
    """An expected failure of a command; ``str()`` is the one-line message after ``error:``.

    ``payload`` is the JSON value to print on stdout under ``--json`` (e.g. the import
    summary, whose rejected records make the command fail), or None.
    """

    def __init__(self, message: str, *, payload: Any = None) -> None:
        super().__init__(message)
        self.payload = payload
