"""The node's log lines: text for a terminal, or one JSON object a line (``--log-json``).

The node (``commons node run``) and its front process (:mod:`node.api.front`) write the same
lines to the same standard error.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

__all__ = ["JsonFormatter", "TextFormatter", "log_handler"]

#: The text lines' format.
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class TextFormatter(logging.Formatter):
    """Log lines for a terminal: a message (which may quote a peer) stays one escaped line,
    and a traceback keeps its lines but loses any control character."""

    # ``terminal_safe`` is imported at the first line written, not with this module: the
    # API's gate logs through it and stays a process of the standard library alone.

    def formatMessage(self, record: logging.LogRecord) -> str:
        from node.textout import terminal_safe

        return terminal_safe(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        from node.textout import terminal_safe

        return terminal_safe(super().formatException(ei), multiline=True)

    def formatStack(self, stack_info: str) -> str:
        from node.textout import terminal_safe

        return terminal_safe(super().formatStack(stack_info), multiline=True)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": round(record.created, 3),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def log_handler(as_json: bool) -> logging.Handler:
    """A handler writing the node's log lines to standard error."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter(TEXT_FORMAT, "%H:%M:%S"))
    return handler
