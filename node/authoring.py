"""Turning what a person typed (CLI flags or API JSON) into record bodies, and signing them.

The CLI and the HTTP API accept the same fields (docs/INTERFACES.md, "Writes"), so both call
:func:`draft` with a plain mapping. A list field has two names: the record body's plural
(``links``) and the CLI flag's singular (``link``, from ``--link``), so a request written
after the flags it mirrors is understood as it reads.
Every problem is an :class:`AuthoringError` whose message says which field is wrong and how;
the protocol's own rules (lengths, ranges) come back from the record classes with their error
codes.

:func:`prepare` is the one place that decides, before anything is published, whether the
record would have an effect now (``protocol.ledger``'s :meth:`ProjectView.why_no_effect` on the
project's current view): one that would not (an update by a non-maintainer, an endorsement
that cannot count, a second retraction) is refused unless the person insists with ``force``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from node.recovery import RecoveryError, code_bytes
from node.store.sqlite import Store
from node.views.cache import ViewCache, ViewError
from node.views.follow import Follow
from protocol.errors import InvalidRecord, ProtocolError
from protocol.identity import People
from protocol.identity_records import (
    DeviceLinkBody,
    DeviceRevokeBody,
    join_body,
    ticket_key,
)
from protocol.record import (
    MAX_EFFORT_MINUTES,
    Artifact,
    Body,
    ContributionBody,
    EndorsementBody,
    ProfileBody,
    ProjectBody,
    ProjectFields,
    ProjectUpdateBody,
    Record,
    RetractionBody,
    sign_record,
)
from protocol.signing import SigningKey, public_key_from_peer_id

__all__ = [
    "ACTIONS",
    "Authored",
    "AuthoringError",
    "Draft",
    "NoEffect",
    "draft",
    "no_effect",
    "prepare",
    "sign_draft",
]

#: The authoring actions, by the name the API and CLI use.
ACTIONS = ("project", "update", "contribution", "endorsement", "retraction", "profile")
#: The device acts of docs/IDENTITY.md, signed by this node's key for its person.
IDENTITY_ACTIONS = ("link", "join", "revoke")
#: At most this many items in one list field of a request (the format's own limits are lower).
MAX_LIST = 64
#: The CLI flag's name of each list field (``--add-maintainer`` is ``add_maintainer``), accepted
#: beside the record body's name; docs/INTERFACES.md maps every flag to its field.
FLAG_NAMES = {
    "link": "links",
    "tag": "tags",
    "maintainer": "maintainers",
    "add_maintainer": "add_maintainers",
    "remove_maintainer": "remove_maintainers",
    "artifact": "artifacts",
    "coauthor": "coauthors",
}


class AuthoringError(Exception):
    """The request cannot become a record; the message is for the person who made it."""


class NoEffect(AuthoringError):
    """The record would have no effect now, and ``force`` was not given."""


@dataclass(frozen=True)
class Authored:
    """A signed record ready to store, and why it will not count when it was forced."""

    record: Record
    no_effect: str | None


@dataclass(frozen=True)
class Draft:
    body: Body
    project: bytes | None


def _known(fields: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(fields) - allowed)
    if unknown:
        accepted = sorted(allowed | {flag for flag, body in FLAG_NAMES.items() if body in allowed})
        raise AuthoringError(
            f"unknown field(s): {', '.join(unknown)} (accepted: {', '.join(accepted)})"
        )


def _body_names(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with each CLI flag name (``link``) renamed to the record body's (``links``).

    Giving both names of one field is refused: which of the two was meant cannot be known."""
    out = dict(fields)
    for flag, body in FLAG_NAMES.items():
        if flag in out:
            if body in out:
                raise AuthoringError(f"give {body} or {flag}, not both (they are one field)")
            out[body] = out.pop(flag)
    return out


def _refuse_clearing(fields: Mapping[str, Any], name: str) -> None:
    """An update asking for no ``links`` (or ``tags``) at all: ``[]`` or ``[""]``.

    The record format holds no empty list (docs/RECORD-FORMAT.md, section 4), so an update cannot
    say "none": it can only replace the list with another of at least one item. Saying so
    beats the two dishonest alternatives, ignoring the request or storing a placeholder."""
    value = fields.get(name)
    if isinstance(value, list | tuple) and all(v == "" for v in value):
        raise AuthoringError(
            f"{name} cannot be cleared: the record format has no empty list, so a project "
            f"update can only replace its {name} with at least one (see docs/INTERFACES.md)"
        )


def _str(fields: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = fields.get(name)
    if value is None:
        if required:
            raise AuthoringError(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise AuthoringError(f"{name} must be text")
    return value


def _strs(fields: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    value = fields.get(name)
    if value is None or value == []:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise AuthoringError(f"{name} must be a list of text")
    if len(value) > MAX_LIST:
        raise AuthoringError(f"{name} has {len(value)} items, too many")
    return tuple(value)


def _peers(fields: Mapping[str, Any], name: str) -> tuple[bytes, ...] | None:
    items = _strs(fields, name)
    if items is None:
        return None
    keys = []
    for item in items:
        try:
            keys.append(public_key_from_peer_id(item))
        except ProtocolError as exc:
            raise AuthoringError(f"{name}: {exc.message}") from None
    return tuple(keys)


def _int(fields: Mapping[str, Any], name: str) -> int | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise AuthoringError(f"{name} must be a whole number")
    return value


def _record(store: Store, text: Any, name: str) -> Record:
    if not isinstance(text, str):
        raise AuthoringError(f"{name} must be a record id (hex, at least 8 characters)")
    try:
        record_id = store.resolve_prefix(text)
    except ProtocolError as exc:
        raise AuthoringError(f"{name}: {exc.message}") from None
    record = store.get(record_id)
    if record is None:  # pragma: no cover - resolve_prefix found it
        raise AuthoringError(f"{name}: no record {text}")
    return record


def _project(store: Store, text: Any) -> Record:
    record = _record(store, text, "project")
    if record.kind != "project":
        raise AuthoringError(f"{record.id.hex()[:16]} is a {record.kind} record, not a project")
    return record


def _minutes(fields: Mapping[str, Any]) -> int | None:
    minutes = _int(fields, "minutes")
    hours = fields.get("hours")
    if hours is not None:
        if minutes is not None:
            raise AuthoringError("give minutes or hours, not both")
        if (
            isinstance(hours, bool)
            or not isinstance(hours, int | float)
            or not math.isfinite(hours)
        ):
            raise AuthoringError("hours must be a number")
        minutes = _whole_minutes(hours)
    return minutes


def _whole_minutes(hours: float) -> int:
    """``hours`` as whole minutes; the refusals quote the hours as given, since that is
    what the person typed (0.01 hours is not silently one minute, nor none)."""
    exact = hours * 60
    minutes = round(exact)
    most = MAX_EFFORT_MINUTES / 60
    if hours < 0:
        raise AuthoringError(f"hours {hours:g} is negative")
    if hours > most:
        raise AuthoringError(f"hours {hours:g} is more than a contribution can claim ({most:g})")
    if 0 < exact < 1:
        raise AuthoringError(f"hours {hours:g} is less than a minute: effort is whole minutes")
    if abs(exact - minutes) > 1e-6:
        raise AuthoringError(
            f"hours {hours:g} is {exact:g} minutes: effort is whole minutes (give minutes)"
        )
    return minutes


def _artifacts(fields: Mapping[str, Any]) -> tuple[Artifact, ...] | None:
    value = fields.get("artifacts")
    if value is None or value == []:
        return None
    if not isinstance(value, list | tuple) or len(value) > MAX_LIST:
        raise AuthoringError("artifacts must be a list")
    out: list[tuple[str, str | None]] = []
    for item in value:
        if isinstance(item, str):
            # URI[@DIGEST]: the digest follows the last '@' only when it looks like one
            # (algorithm:hex), so URIs with user@host keep their '@'.
            uri, sep, digest = item.rpartition("@")
            if sep and uri and ":" in digest and "/" not in digest:
                out.append((uri, digest))
            else:
                out.append((item, None))
        elif isinstance(item, Mapping):
            given_uri = item.get("uri")
            given_digest = item.get("digest")
            if not isinstance(given_uri, str) or (
                given_digest is not None and not isinstance(given_digest, str)
            ):
                raise AuthoringError("each artifact needs a uri (and optionally a digest) as text")
            out.append((given_uri, given_digest))
        else:
            raise AuthoringError("artifacts must be URI[@DIGEST] strings or {uri, digest} maps")
    try:
        return tuple(Artifact(uri=u, digest=d) for u, d in out)
    except InvalidRecord as exc:
        raise AuthoringError(f"{exc.code}: {exc.message}") from None


def draft(action: str, fields: Mapping[str, Any], *, store: Store, author: bytes) -> Draft:
    """Build the body (and project id) for ``action`` from ``fields``."""
    try:
        return _draft(action, _body_names(fields), store=store, author=author)
    except InvalidRecord as exc:
        raise AuthoringError(f"{exc.code}: {exc.message}") from None


def _draft(action: str, fields: Mapping[str, Any], *, store: Store, author: bytes) -> Draft:
    if action == "project":
        _known(fields, {"name", "description", "license", "links", "tags", "maintainers"})
        maintainers = _peers(fields, "maintainers")
        if maintainers is not None:
            maintainers = tuple(dict.fromkeys(m for m in maintainers if m != author)) or None
        return Draft(
            body=ProjectBody(
                name=_str(fields, "name", required=True) or "",
                description=_str(fields, "description"),
                license=_str(fields, "license"),
                links=_strs(fields, "links"),
                tags=_strs(fields, "tags"),
                maintainers=maintainers,
            ),
            project=None,
        )
    if action == "update":
        _known(
            fields,
            {
                "project",
                "name",
                "description",
                "license",
                "links",
                "tags",
                "add_maintainers",
                "remove_maintainers",
            },
        )
        project = _project(store, fields.get("project"))
        _refuse_clearing(fields, "links")
        _refuse_clearing(fields, "tags")
        given = {
            "name": _str(fields, "name"),
            "description": _str(fields, "description"),
            "license": _str(fields, "license"),
            "links": _strs(fields, "links"),
            "tags": _strs(fields, "tags"),
        }
        set_fields = {k: v for k, v in given.items() if v is not None}
        body: Body = ProjectUpdateBody(
            set=ProjectFields(**set_fields) if set_fields else None,  # type: ignore[arg-type]
            add_maintainers=_peers(fields, "add_maintainers"),
            remove_maintainers=_peers(fields, "remove_maintainers"),
        )
        return Draft(body=body, project=project.id)
    if action == "contribution":
        _known(
            fields,
            {
                "project",
                "type",
                "title",
                "description",
                "minutes",
                "hours",
                "artifacts",
                "coauthors",
            },
        )
        project = _project(store, fields.get("project"))
        coauthors = _peers(fields, "coauthors")
        if coauthors is not None and author in coauthors:
            raise AuthoringError("you are the author: do not list yourself as a coauthor")
        body = ContributionBody(
            type=_str(fields, "type", required=True) or "",
            title=_str(fields, "title", required=True) or "",
            description=_str(fields, "description"),
            effort_minutes=_minutes(fields),
            artifacts=_artifacts(fields),
            coauthors=coauthors,
        )
        return Draft(body=body, project=project.id)
    if action == "endorsement":
        _known(fields, {"record", "target", "weight", "comment"})
        target = _record(store, fields.get("record", fields.get("target")), "record")
        if target.kind != "contribution":
            raise AuthoringError(
                f"{target.id.hex()[:16]} is a {target.kind} record; only contributions are endorsed"
            )
        body = EndorsementBody(
            target=target.id, weight=_int(fields, "weight"), comment=_str(fields, "comment")
        )
        return Draft(body=body, project=target.project)
    if action == "retraction":
        _known(fields, {"record", "target", "reason"})
        target = _record(store, fields.get("record", fields.get("target")), "record")
        if target.kind not in ("contribution", "endorsement", "claim", "claim-confirmation"):
            raise AuthoringError(
                f"{target.id.hex()[:16]} is a {target.kind} record; only contributions, "
                "endorsements and claims can be retracted"
            )
        body = RetractionBody(target=target.id, reason=_str(fields, "reason"))
        return Draft(body=body, project=target.project)
    if action == "profile":
        _known(fields, {"name", "about", "links"})
        body = ProfileBody(
            name=_str(fields, "name", required=True) or "",
            about=_str(fields, "about"),
            links=_strs(fields, "links"),
        )
        return Draft(body=body, project=None)
    raise AuthoringError(f"unknown action {action!r}")


def sign_draft(key: SigningKey, d: Draft, *, now_ms: int) -> Record:
    try:
        return sign_record(key, body=d.body, ts=now_ms, project=d.project)
    except InvalidRecord as exc:
        raise AuthoringError(f"{exc.code}: {exc.message}") from None


def no_effect(views: ViewCache, record: Record) -> str | None:
    """Why ``record`` would have no effect if published now, or None when it would.

    The judgement is ``protocol.ledger``'s, on the project's current fold; a record of a
    project whose genesis is not held cannot be judged and is let through.
    """
    if record.project is None or record.kind not in ("project-update", "endorsement", "retraction"):
        return None
    try:
        view = views.project_view(record.project.hex())
    except ViewError:
        return None
    target = None
    if isinstance(record.body, RetractionBody):
        target = views.store.get(record.body.target)
    why = view.why_no_effect(record, target)
    if why is None:
        return None
    # The reasons speak of "its author"; the person asking is that author.
    for theirs, yours in (("its author is", "you are"), ("its author", "you")):
        if why.startswith(theirs):
            return yours + why[len(theirs) :]
    return why


def prepare(
    action: str,
    fields: Mapping[str, Any],
    *,
    views: ViewCache,
    key: SigningKey,
    follow: Follow,
    now_ms: int,
) -> Authored:
    """Draft, check and sign a record for ``action``; nothing is stored here.

    ``fields`` may carry ``force`` (a boolean): without it a record that would have no
    effect raises :class:`NoEffect`, with it the record is signed all the same and
    :attr:`Authored.no_effect` says why it will not count. A project the node does not
    follow is refused whatever ``force`` says: the record could be neither gossiped (the
    node's own validator refuses topics it does not follow) nor reconciled.
    """
    fields = dict(fields)
    force = fields.pop("force", False)
    if not isinstance(force, bool):
        raise AuthoringError("force must be true or false")
    if action in IDENTITY_ACTIONS:
        body = identity_body(action, fields, views=views, device=key.public_key, now_ms=now_ms)
        return Authored(sign_draft(key, Draft(body, None), now_ms=now_ms), None)
    d = draft(action, fields, store=views.store, author=key.public_key)
    if d.project is not None:
        refusal = follow.refusal(d.project)
        if refusal is not None:
            raise AuthoringError(
                f"{refusal}: follow project {d.project.hex()} (or every project) to author there"
            )
    record = sign_draft(key, d, now_ms=now_ms)
    why = no_effect(views, record)
    if why is not None and not force:
        raise NoEffect(
            f"this {record.kind} would have no effect: {why} "
            '(publish it anyway with --force, or "force": true in the API)'
        )
    return Authored(record, why)


# --------------------------------------------------------------------------------------------
# Device acts (docs/IDENTITY.md section 5)


def _code(fields: Mapping[str, Any]) -> bytes:
    text = _str(fields, "code", required=True)
    try:
        return code_bytes(text or "")
    except RecoveryError as exc:
        raise AuthoringError(f"code: {exc}") from None


def _my_person(people: People, device: bytes) -> bytes:
    """The person this device acts for now; an AuthoringError when it acts for none."""
    persons = people.persons_of_device(device)
    person = people.person_now(device)
    if not persons:
        raise AuthoringError(
            "this device acts for no person yet: create your identity with "
            "`commons identity recovery-kit`, or join one with `commons identity join CODE`"
        )
    if person is None:
        raise AuthoringError("this device was revoked: it no longer acts for its person")
    return person


def identity_body(
    action: str, fields: Mapping[str, Any], *, views: ViewCache, device: bytes, now_ms: int
) -> Body:
    """The body of a device act by ``device`` (this node's key), checked against the person
    fold of the records held, so that an act that could not take effect is refused.

    ``link`` takes ``code`` (a link code the caller drew, :func:`node.recovery.new_code`);
    ``join`` takes the ``code`` another device showed, whose link must be held here; ``revoke``
    takes ``device`` (a peer id of another device of the person, or this one), and optionally
    ``cut`` (milliseconds, at most now; default now) and ``reason``.
    """
    people = views.people()
    if action == "link":
        _known(fields, {"code"})
        ticket = ticket_key(_code(fields)).public_key
        return DeviceLinkBody(person=_my_person(people, device), ticket=ticket)
    if action == "join":
        _known(fields, {"code"})
        key = ticket_key(_code(fields))
        links = [
            r.body
            for r in views.store.of_kinds(("device-link",))
            if isinstance(r.body, DeviceLinkBody) and r.body.ticket == key.public_key
        ]
        if not links:
            raise AuthoringError(
                "no link for this code is held here: check the code, and let this node "
                "synchronise with the network of the device that showed it (commons sync)"
            )
        persons = people.persons_of_device(device)
        if persons or people.is_recovery_key(device):
            raise AuthoringError("this device already acts for a person: a device joins once")
        return join_body(links[0].person, device, key)
    if action == "revoke":
        _known(fields, {"device", "cut", "reason"})
        person = _my_person(people, device)
        try:
            target = public_key_from_peer_id(_str(fields, "device", required=True) or "")
        except ProtocolError as exc:
            raise AuthoringError(f"device: {exc.message}") from None
        state = people.person(person)
        member = state.device(target) if state is not None else None
        if member is None or member.revoked:
            raise AuthoringError("that device is not an active device of your person")
        cut = _int(fields, "cut")
        cut = now_ms if cut is None else cut
        if not 0 <= cut <= now_ms:
            raise AuthoringError("cut must be a time in milliseconds, not in the future")
        reason = _str(fields, "reason")
        return DeviceRevokeBody(person=person, device=target, cut=cut, reason=reason)
    raise AuthoringError(f"unknown action {action!r}")
