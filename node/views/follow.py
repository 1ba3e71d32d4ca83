"""Which projects a node follows: the one rule the node, its API and the CLI all apply.

A node run with ``--follow`` (or ``follow`` in config.toml) holds, gossips and reconciles only
those projects; without any it follows every project. People name projects by id prefix
everywhere, so the list is resolved against the store once, at start: a full 64-character id
is taken as given (a node may follow a project it has not received yet), a shorter prefix
must name exactly one held project.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from node.store.sqlite import Store
from protocol.errors import ProtocolError
from protocol.record import ID_SIZE, parse_id_prefix

__all__ = ["Follow", "FollowError", "resolve_follow"]


class FollowError(ValueError):
    """A follow entry that names no project, or several."""


class Follow:
    """Every project (``projects`` None or empty), or only the listed project ids."""

    __slots__ = ("projects",)

    def __init__(self, projects: Iterable[bytes] | None = None) -> None:
        listed = frozenset(projects or ())
        self.projects: frozenset[bytes] | None = listed or None

    @property
    def everything(self) -> bool:
        return self.projects is None

    def follows(self, project: bytes) -> bool:
        return self.projects is None or project in self.projects

    def refusal(self, project: bytes) -> str | None:
        """The message for a request about a project not followed, or None when it is."""
        if self.follows(project):
            return None
        return f"this node does not follow project {project.hex()[:16]}"

    def to_json(self) -> list[str] | None:
        """The followed ids as hex (sorted), or None for every project."""
        return None if self.projects is None else sorted(p.hex() for p in self.projects)


def resolve_follow(store: Store | None, texts: Sequence[str]) -> Follow:
    """The :class:`Follow` for ``texts`` (ids or prefixes); raises :class:`FollowError`.

    Without a ``store`` only full ids are accepted.
    """
    found: list[bytes] = []
    for text in texts:
        try:
            prefix = parse_id_prefix(text)
            if len(prefix) == 2 * ID_SIZE:
                found.append(bytes.fromhex(prefix))
            elif store is None:
                raise FollowError(f"follow {text!r}: give the full 64-character project id")
            else:
                found.append(store.resolve_prefix(prefix, kind="project"))
        except ProtocolError as exc:
            raise FollowError(f"follow {text!r}: {exc.message}") from None
    return Follow(found)
