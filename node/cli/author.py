"""Authoring commands: ``project create/update``, ``contribute``, ``endorse``, ``retract``.

With a node running for the home, a record is authored through its API (so it is gossiped at
once); without one, it is signed and stored here and published when the node next runs.
"""

from __future__ import annotations

import argparse
import hashlib
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from node.authoring import AuthoringError, prepare
from node.cli.client import running_client
from node.cli.errors import CommandError
from node.cli.output import emit, home_of, id_prefix, identity, now_ms
from node.cli.parser import PROJECT_HELP, RECORD_HELP, add_command
from node.cli.store_access import home_follow, home_policy, open_store
from node.home import Home
from node.metrics import Metrics
from node.sync.admission import Admission
from node.views.cache import ViewCache, record_json
from protocol.record import CONTRIBUTION_TYPES

__all__ = ["register"]


def author(
    args: argparse.Namespace,
    action: str,
    fields: dict[str, Any],
    path: str,
    *,
    home: Home | None = None,
) -> tuple[dict[str, Any], str]:
    """Sign and store a record: through the running node's API if there is one, else locally.

    ``home`` is the command's home unless given (``init`` authors into the home it builds).
    Returns the record's JSON and how it was handled, for the caller to print.
    """
    home = home or home_of(args)
    fields = {k: v for k, v in fields.items() if v is not None and v != []}
    if getattr(args, "force", False):
        fields["force"] = True
    client = running_client(home)
    if client is not None:
        result = client.post(path, fields)
        how = "published"
    else:
        key = identity(home)
        with open_store(home) as store:
            views = ViewCache(store, cache=False)
            try:
                authored = prepare(
                    action,
                    fields,
                    views=views,
                    key=key,
                    follow=home_follow(home, store),
                    now_ms=now_ms(),
                )
            except AuthoringError as exc:
                raise CommandError(str(exc)) from None
            admit = Admission(store, Metrics(), lambda: home_policy(home, store))
            _, refused = admit([(0, authored.record)], published=False, source="local")
            if refused:  # a block, or a limit, of this node's own policy
                raise CommandError(refused[0][1])
        result = record_json(authored.record)
        if authored.no_effect is not None:
            result["no_effect"] = authored.no_effect
        how = "stored (no node is running: it spreads when the node next runs)"
    if "no_effect" in result:
        how += f", but it will not count: {result['no_effect']}"
    return result, how


def _author(args: argparse.Namespace, action: str, fields: dict[str, Any], path: str) -> int:
    result, how = author(args, action, fields, path)
    emit(args, result, f"{result['kind']} {result['id']} {how}")
    return 0


def cmd_project_create(args: argparse.Namespace) -> int:
    fields = {
        "name": args.name,
        "description": args.description,
        "license": args.license,
        "links": args.link,
        "tags": args.tag,
        "maintainers": args.maintainer,
    }
    return _author(args, "project", fields, "/api/v1/projects")


def cmd_project_update(args: argparse.Namespace) -> int:
    project = id_prefix(args.project)
    fields = {
        "project": project,
        "name": args.name,
        "description": args.description,
        "license": args.license,
        "links": args.link,
        "tags": args.tag,
        "add_maintainers": args.add_maintainer,
        "remove_maintainers": args.remove_maintainer,
    }
    if all(v is None or v == [] for k, v in fields.items() if k != "project"):
        raise CommandError("nothing to update: give at least one of the update options")
    api_fields = {k: v for k, v in fields.items() if k != "project"}
    if running_client(home_of(args)) is not None:
        return _author(args, "update", api_fields, f"/api/v1/projects/{project}/updates")
    return _author(args, "update", fields, "")


#: Bytes read at a time when hashing an ``--artifact-file`` (a CAD model or a video may be
#: gigabytes: it is streamed, never read whole).
HASH_CHUNK = 1 << 20

#: The artifact syntax, for ``contribute --help`` and docs/INTERFACES.md.
ARTIFACT_HELP = (
    "ARTIFACTS: --artifact URI[@DIGEST] names something the contribution produced, e.g. "
    "https://example.org/pr/12 or git:https://example.org/repo@sha1:0123abcd; the digest is "
    "ALGORITHM:HEX after the last '@'. --artifact-file PATH hashes a local file (SHA-256, "
    "streamed) and records it as file:NAME@sha256:HEX, NAME being the file's name "
    "percent-encoded, so anyone holding the file can check it is the one meant."
)


def file_artifact(text: str) -> str:
    """``file:NAME@sha256:HEX`` for the local file ``text``, hashed in chunks."""
    path = Path(text)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise CommandError(f"--artifact-file {text}: {exc.strerror or exc}") from None
    return f"file:{quote(path.name)}@sha256:{digest.hexdigest()}"


def cmd_contribute(args: argparse.Namespace) -> int:
    project = id_prefix(args.project)
    artifacts = (args.artifact or []) + [file_artifact(f) for f in args.artifact_file or []]
    fields: dict[str, Any] = {
        "type": args.type,
        "title": args.title,
        "description": args.description,
        "minutes": args.minutes,
        "hours": args.hours,
        "artifacts": artifacts,
        "coauthors": args.coauthor,
    }
    if running_client(home_of(args)) is not None:
        return _author(args, "contribution", fields, f"/api/v1/projects/{project}/contributions")
    fields["project"] = project
    return _author(args, "contribution", fields, "")


def cmd_endorse(args: argparse.Namespace) -> int:
    fields = {"record": id_prefix(args.record), "weight": args.weight, "comment": args.comment}
    return _author(args, "endorsement", fields, "/api/v1/endorsements")


def cmd_retract(args: argparse.Namespace) -> int:
    fields = {"record": id_prefix(args.record), "reason": args.reason}
    return _author(args, "retraction", fields, "/api/v1/retractions")


def register_project(psub: Any, common: argparse.ArgumentParser) -> None:
    """``project create`` and ``project update``, in the ``project`` group."""
    p = psub.add_parser("create", parents=[common], help="author a project (its genesis record)")
    p.set_defaults(func=cmd_project_create)
    p.add_argument("name", metavar="NAME", help="the project's name")
    p.add_argument("--description", metavar="T", help="what the project is (may span lines)")
    p.add_argument("--license", metavar="SPDX", help="its license, as an SPDX id (MIT, CC-BY-4.0)")
    p.add_argument("--link", action="append", metavar="URL", help="a link (repeatable)")
    p.add_argument("--tag", action="append", metavar="T", help="a tag (repeatable)")
    p.add_argument(
        "--maintainer",
        action="append",
        metavar="PEER",
        help="another maintainer's peer id (repeatable; you are one)",
    )
    p = psub.add_parser("update", parents=[common], help="author a project update")
    p.set_defaults(func=cmd_project_update)
    p.add_argument("project", metavar="PROJECT", help=PROJECT_HELP)
    p.add_argument("--name", metavar="T", help="a new name")
    p.add_argument("--description", metavar="T", help="a new description")
    p.add_argument("--license", metavar="SPDX", help="a new license (SPDX id)")
    p.add_argument(
        "--link", action="append", metavar="URL", help="a link (repeatable; replaces all links)"
    )
    p.add_argument(
        "--tag", action="append", metavar="T", help="a tag (repeatable; replaces all tags)"
    )
    p.add_argument(
        "--add-maintainer", action="append", metavar="PEER", help="make a maintainer (repeatable)"
    )
    p.add_argument(
        "--remove-maintainer",
        action="append",
        metavar="PEER",
        help="stop being or make stop being a maintainer (repeatable)",
    )
    _force_option(p)


def _force_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="publish even when the record would have no effect (it then says why)",
    )


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    add = partial(add_command, sub, common)
    p = add(
        "contribute",
        cmd_contribute,
        "author a contribution to a project",
        epilog=ARTIFACT_HELP,
    )
    p.add_argument("project", metavar="PROJECT", help=PROJECT_HELP)
    p.add_argument(
        "--type",
        required=True,
        choices=sorted(CONTRIBUTION_TYPES),
        metavar="TYPE",
        help="what kind of work: " + ", ".join(sorted(CONTRIBUTION_TYPES)),
    )
    p.add_argument("--title", required=True, metavar="T", help="one line saying what was done")
    p.add_argument("--description", metavar="T", help="more about it (may span lines)")
    effort = p.add_mutually_exclusive_group()
    effort.add_argument("--minutes", type=int, metavar="N", help="effort in minutes")
    effort.add_argument("--hours", type=float, metavar="H", help="effort in hours")
    p.add_argument(
        "--artifact",
        action="append",
        metavar="URI[@DIGEST]",
        help="something it produced, optionally with ALGORITHM:HEX digest (repeatable)",
    )
    p.add_argument(
        "--artifact-file",
        action="append",
        metavar="PATH",
        help="a local file, hashed into file:NAME@sha256:HEX (repeatable)",
    )
    p.add_argument(
        "--coauthor", action="append", metavar="PEER", help="a coauthor's peer id (repeatable)"
    )

    p = add("endorse", cmd_endorse, "endorse a contribution (as a maintainer)")
    p.add_argument("record", metavar="RECORD", help=RECORD_HELP)
    p.add_argument("--weight", type=int, metavar="N", help="1..10 (default 1)")
    p.add_argument("--comment", metavar="T", help="why, for the contributor")
    _force_option(p)

    p = add(
        "retract",
        cmd_retract,
        "retract one of your contributions, endorsements, claims or claim confirmations",
    )
    p.add_argument("record", metavar="RECORD", help=RECORD_HELP)
    p.add_argument("--reason", metavar="T", help="why it is retracted")
    _force_option(p)
