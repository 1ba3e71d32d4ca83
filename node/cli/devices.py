"""``commons identity ...``: a person's devices, their revocation and the recovery key.

docs/IDENTITY.md is the design. The device acts (``link``, ``join``, ``revoke``) are signed by
this home's key, through the running node's API when there is one (so they spread at once),
else stored here, like every authoring command. The recovery key's acts are signed here, by
the CLI, from words typed on standard input: the words never reach the node, its API or a
file, and are dropped when the command ends.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import datetime
from functools import partial
from typing import Any

from node.cli.author import author
from node.cli.client import running_client
from node.cli.errors import CommandError
from node.cli.output import emit, home_of, identity, now_ms
from node.cli.parser import Parser, add_command
from node.cli.store_access import open_store
from node.home import Home
from node.recovery import RecoveryError, code_bytes, entropy_of, new_code, new_entropy, words_of
from node.recovery import recovery_key as recovery_key_of
from node.views.cache import ViewError, record_json
from node.views.details import people_of, person_json
from protocol.errors import InvalidRecord, ProtocolError
from protocol.identity_records import DeviceLinkBody, DeviceRevokeBody, ticket_key
from protocol.record import Body, Record, sign_record
from protocol.signing import SigningKey, peer_id, public_key_from_peer_id
from protocol.validation import parse_record

__all__ = ["register"]


def _person(home: Home, peer: str) -> dict[str, Any]:
    """``identity show``'s JSON of ``peer``: from the running node, else from the store."""
    client = running_client(home)
    if client is not None:
        value: dict[str, Any] = client.get(f"/api/v1/people/{peer}")
        return value
    with open_store(home) as store:
        try:
            return person_json(people_of(store), peer)
        except ViewError as exc:
            raise CommandError(str(exc)) from None


def _submit(home: Home, record: Record) -> None:
    """Store (and, with a node running, gossip) a record the CLI signed itself."""
    parse_record(record.raw, now_ms=now_ms())  # every door checks what it lets in
    client = running_client(home)
    if client is not None:
        client.post_raw("/api/v1/records", record.raw)
        return
    with open_store(home) as store:
        store.add([record], published=False)


def _sign(key: SigningKey, body: Body) -> Record:
    try:
        return sign_record(key, body=body, ts=now_ms())
    except InvalidRecord as exc:
        raise CommandError(f"{exc.code}: {exc.message}") from None


def _read_words() -> SigningKey:
    """The recovery key, from the 18 words on standard input (asked for on a terminal)."""
    if sys.stdin.isatty():
        text = getpass.getpass("recovery words (not shown): ")
    else:
        text = sys.stdin.read(4096)
    try:
        return recovery_key_of(entropy_of(text))
    except RecoveryError as exc:
        raise CommandError(str(exc)) from None


def _admit(args: argparse.Namespace, home: Home, recovery: SigningKey) -> str:
    """Link this device to the recovery key's person: the key signs a link for a fresh code,
    and this device joins with it. Returns the join record's id."""
    code = new_code()
    ticket = ticket_key(code_bytes(code)).public_key
    _submit(home, _sign(recovery, DeviceLinkBody(person=recovery.public_key, ticket=ticket)))
    joined, _ = author(args, "join", {"code": code}, "/api/v1/identity/join", home=home)
    return str(joined["id"])


def cmd_recovery_kit(args: argparse.Namespace) -> int:
    home = home_of(args)
    me = identity(home)
    current = _person(home, me.peer_id)
    if current["person"] != me.peer_id or current["recovery_key"]:
        raise CommandError(
            f"this device already acts for person {current['person']}: its recovery words "
            "were shown when it was created, and are kept nowhere"
        )
    entropy = new_entropy()
    recovery = recovery_key_of(entropy)
    join_id = _admit(args, home, recovery)
    words = words_of(entropy)
    person = peer_id(recovery.public_key)
    lines = [
        f"person: {person}",
        "recovery words (write them on paper and keep them offline; they are shown only now,",
        "and they can add and revoke this person's devices):",
        "",
        *("  " + " ".join(words[i : i + 6]) for i in range(0, len(words), 6)),
    ]
    emit(args, {"person": person, "words": words, "join": join_id}, "\n".join(lines))
    return 0


def cmd_link(args: argparse.Namespace) -> int:
    code = new_code()
    result, how = author(args, "link", {"code": code}, "/api/v1/identity/link")
    text = (
        f"link code: {code}\n"
        f"on the new device, once its node has synchronised: commons identity join {code}\n"
        f"device-link {result['id']} {how}"
    )
    emit(args, {"code": code, **result}, text)
    return 0


def cmd_join(args: argparse.Namespace) -> int:
    result, how = author(args, "join", {"code": args.code}, "/api/v1/identity/join")
    person = result["body"]["person"]
    emit(
        args, result, f"this device now acts for person {person}\ndevice-join {result['id']} {how}"
    )
    return 0


def _cut(text: str | None) -> int | None:
    """``--cut``: milliseconds since the epoch, or an ISO 8601 time with a zone."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"--cut {text[:40]!r}: give milliseconds or a time such as 2026-12-01T09:30Z"
        ) from None
    if when.tzinfo is None:
        raise CommandError("--cut needs a time zone (such as Z or +01:00)")
    return int(when.timestamp() * 1000)


def cmd_revoke(args: argparse.Namespace) -> int:
    home = home_of(args)
    cut = _cut(args.cut)
    if not args.recovery:
        if args.keep:
            raise CommandError("--keep is for the recovery key: add --recovery")
        fields = {"device": args.device, "cut": cut, "reason": args.reason}
        result, how = author(args, "revoke", fields, "/api/v1/identity/revoke")
        emit(args, result, f"device-revoke {result['id']} {how}")
        return 0
    try:
        device = public_key_from_peer_id(args.device)
        keep = tuple(public_key_from_peer_id(k) for k in args.keep or ())
    except ProtocolError as exc:
        raise CommandError(exc.message) from None
    recovery = _read_words()
    now = now_ms()
    body = DeviceRevokeBody(
        person=recovery.public_key,
        device=device,
        cut=now if cut is None else min(cut, now),
        keep=keep or None,
        reason=args.reason,
    )
    record = _sign(recovery, body)
    _submit(home, record)
    result = record_json(record)
    lines = [f"device-revoke {result['id']} signed by the recovery key"]
    me = identity(home)
    if _person(home, me.peer_id)["person"] == me.peer_id:  # this device acts for no one yet
        result["join"] = _admit(args, home, recovery)
        lines.append(f"this device now acts for person {peer_id(recovery.public_key)}")
    emit(args, result, "\n".join(lines))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    home = home_of(args)
    peer = args.peer or identity(home).peer_id
    value = _person(home, peer)
    lines = [f"person: {value['person'] or 'none (two persons claim this key)'}"]
    for d in value["devices"]:
        state = "active" if d["active"] else f"revoked, counts up to {d['cut']}"
        lines.append(f"  device {d['device']}  {state}")
    if value["waiting_links"]:
        lines.append(f"  {value['waiting_links']} link code(s) not joined yet")
    if value["contested_links"]:
        lines.append(f"  {value['contested_links']} link code(s) joined by two devices: void")
    emit(args, value, "\n".join(lines))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    group = sub.add_parser(
        "identity",
        help="this person's devices: link, join, revoke, recovery-kit, show",
        parents=[common],
    )
    isub = group.add_subparsers(dest="identity_command", metavar="COMMAND", parser_class=Parser)
    isub.required = True
    add = partial(add_command, isub, common)
    add(
        "recovery-kit", cmd_recovery_kit, "create this device's person and print its recovery words"
    )
    add("link", cmd_link, "let a new device join this person: prints a one-time link code")
    p = add("join", cmd_join, "join a person with the link code another of its devices showed")
    p.add_argument("code", metavar="CODE", help="the link code, such as 7KQF-3MZA-9XPD-2WHC")
    p = add(
        "revoke",
        cmd_revoke,
        "revoke a device of this person (from another device, or the recovery words)",
    )
    p.add_argument("device", metavar="DEVICE", help="the peer id of the device to revoke")
    p.add_argument(
        "--cut", metavar="TIME", help="its records after this time count for nothing (default: now)"
    )
    p.add_argument("--reason", metavar="T", help="why (shown with the record)")
    p.add_argument(
        "--recovery",
        action="store_true",
        help="sign with the recovery words, read from standard input",
    )
    p.add_argument(
        "--keep",
        action="append",
        metavar="PEER",
        help="with --recovery: a device the revoked one linked that stays (repeatable)",
    )
    p = add("show", cmd_show, "show a person and its devices")
    p.add_argument(
        "peer",
        nargs="?",
        metavar="PEER",
        help="a device's or person's peer id (default: this device)",
    )
