"""What each dashboard page shows: plain dictionaries built from the node's views.

The figures come from :mod:`node.views` (``project_show``, ``ledger_page``, ``shares``) and
:func:`node.views.details.record_detail`, the calls behind ``commons ... --json`` and the API,
so a page cannot disagree with them. These functions block (they read the store and may fold
a project): the routes call them from a worker thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from node.views.cache import ViewError, record_json
from node.views.details import names, person_json, profile_json, record_detail
from node.web.chart import MAX_MONTHS, month_columns, month_start, share_bars
from node.web.events import event_json
from protocol.attest import check_handle
from protocol.errors import InvalidRecord, ProtocolError
from protocol.ledger import order_key
from protocol.record import CONTRIBUTION_TYPES, Record
from protocol.signing import public_key_from_peer_id, verify

if TYPE_CHECKING:
    from node.handle import NodeHandle

__all__ = ["home", "peers", "person", "project", "projects", "record", "resolve_person"]

#: Ledger entries per page of a project page.
PAGE = 50
#: Recent records listed on the home page and a person's page.
RECENT = 30
#: Kinds listed as activity.
ACTIVITY = ("project", "project-update", "contribution", "endorsement", "retraction", "profile")
#: Sort orders of the project list, by query value.
SORTS = {
    "name": (lambda p: (str(p["name"]).lower(), p["id"]), False),
    "contributions": (lambda p: (p.get("contributions") or 0, p["id"]), True),
    "contributors": (lambda p: (p.get("contributors") or 0, p["id"]), True),
    "activity": (lambda p: (p.get("last_activity") or 0, p["id"]), True),
}


def _project_names(node: NodeHandle) -> dict[str, str]:
    return {p["id"]: p["name"] for p in node.views.project_list()}


def _activity(node: NodeHandle, records: list[Record]) -> list[dict[str, Any]]:
    projects = _project_names(node)
    who = names(node.store)
    out = []
    for r in records:
        item = event_json(r, "")
        item["author_name"] = who.get(item["author"])
        item["project_name"] = projects.get(item["project"] or "")
        out.append(item)
    return out


def home(node: NodeHandle) -> dict[str, Any]:
    status = node.status()
    try:
        profile = profile_json(node.store, node.peer_id)
    except ViewError:
        profile = None
    listed = node.views.project_list()
    followed = [p for p in listed if p.get("followed", True)]
    uptime = max(float(status.get("uptime_seconds") or 0), 1.0)
    gossip = {
        "accepted": node.metrics.total("commons_gossip_accepted_total"),
        "rejected": node.metrics.total("commons_gossip_rejected_total"),
        "published": node.metrics.total("commons_published_total"),
        "sync_sessions": node.metrics.total("commons_sync_sessions_total"),
    }
    gossip["accepted_per_minute"] = round(60 * gossip["accepted"] / uptime, 1)
    values = {
        "name": profile["name"] if profile else "",
        "about": (profile["about"] or "") if profile else "",
        "links": "\n".join(profile["links"]) if profile else "",
    }
    return {
        "status": status,
        "profile": profile,
        "profile_form": {"action": "profile", "values": values, "errors": {}},
        "followed": followed,
        "follows_everything": node.follow.everything,
        "activity": _activity(node, node.store.latest(ACTIVITY, limit=RECENT)),
        "gossip": gossip,
    }


def projects(node: NodeHandle, query: str = "", sort: str = "name") -> dict[str, Any]:
    listed = node.views.project_list()
    for item in listed:
        latest = node.store.latest(ACTIVITY, project=bytes.fromhex(item["id"]), limit=1)
        item["last_activity"] = latest[0].ts if latest else None
        try:
            item["license"] = node.views.project_show(item["id"])["license"]
        except ViewError:
            item["license"] = None
    q = query.strip().lower()
    if q:
        listed = [p for p in listed if q in str(p["name"]).lower() or p["id"].startswith(q)]
    key, reverse = SORTS.get(sort, SORTS["name"])
    listed.sort(key=key, reverse=reverse)
    return {
        "projects": listed,
        "query": query,
        "sort": sort if sort in SORTS else "name",
        "names": names(node.store),
    }


def project(
    node: NodeHandle,
    text: str,
    *,
    type: str | None = None,
    author: str | None = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    shown = node.views.project_show(text)
    pid = shown["id"]
    who = names(node.store)
    out: dict[str, Any] = {"project": shown, "names": who, "types": sorted(CONTRIBUTION_TYPES)}
    updates = node.store.latest(("project-update",), project=bytes.fromhex(pid), limit=200)
    genesis = node.store.get(bytes.fromhex(pid))
    history = sorted(updates, key=order_key)
    out["history"] = [record_json(r) for r in ([genesis] if genesis else []) + history]
    out["filters"] = {"type": type or "", "author": author or ""}
    out["cursor"] = cursor
    if not shown.get("followed", True):
        out["followed"] = False
        return out
    out["followed"] = True
    shares = node.views.shares(pid)
    out["shares"] = shares
    out["bars"] = share_bars(shares)
    out["claims"] = node.views.claims(pid)
    page = node.views.ledger_page(pid, type=type, author=author, limit=PAGE, cursor=cursor)
    out["ledger"] = page.entries
    out["total"] = page.total
    out["next_cursor"] = page.next_cursor
    counts = node.views.contribution_months(pid, month_start, MAX_MONTHS)
    out["months"] = month_columns(counts)
    return out


def record(node: NodeHandle, text: str) -> dict[str, Any]:
    r = node.views.record(text)
    detail = record_detail(node.views, r)
    project_name = None
    if r.project is not None:
        try:
            project_name = node.views.project_show(r.project.hex())["name"]
        except ViewError:
            project_name = None
    return {
        "record": detail,
        "names": names(node.store),
        "project_name": project_name,
        "signature_ok": verify(r.author, r.signing_input(), r.sig),
        "size": len(r.raw),
        "raw_hex": r.raw.hex(),
        "mine": detail["author"] == node.peer_id,
    }


def _known_people(node: NodeHandle) -> set[str]:
    people = set(names(node.store))
    for p in node.views.project_list():
        people.update(p["maintainers"])
        if p.get("followed", True):
            # An unclaimed handle (``email:…``) is a contributor but no person with a page.
            shares = node.views.shares(p["id"])
            people.update(s["contributor"] for s in shares if ":" not in s["contributor"])
    return people


def resolve_person(node: NodeHandle, text: str) -> str:
    """A full peer id, or the one known person whose id starts with ``text``."""
    try:
        public_key_from_peer_id(text)
        return text
    except ProtocolError:
        pass
    if len(text) < 6:
        raise ViewError(f"{text[:60]!r} is not a peer id: give the id, or 6 characters of it")
    found = sorted(p for p in _known_people(node) if p.startswith(text))
    if not found:
        raise ViewError(f"no known person's id starts with {text[:60]!r}")
    if len(found) > 1:
        raise ViewError(f"{text[:60]!r} matches several people's ids: type more of it", 400)
    return found[0]


def person(node: NodeHandle, text: str) -> dict[str, Any]:
    pid = resolve_person(node, text)
    key = public_key_from_peer_id(pid)
    try:
        profile = profile_json(node.store, pid)
    except ViewError:
        profile = None
    # The views count per person (docs/IDENTITY.md): a device's page shows its person's
    # shares and maintainerships, and lists the person's devices.
    identity = person_json(node.views.people(), pid)
    whom = identity["person"] or pid
    projects_of = []
    for p in node.views.project_list():
        if not p.get("followed", True):
            continue
        line = next((s for s in node.views.shares(p["id"]) if s["contributor"] == whom), None)
        page = node.views.ledger_page(p["id"], author=pid, limit=PAGE)
        if line is None and not page.entries and whom not in p["maintainers"]:
            continue
        projects_of.append(
            {
                "project": p,
                "share": line,
                "ledger": page.entries,
                "total": page.total,
                "maintainer": whom in p["maintainers"],
            }
        )
    given = node.store.latest(("endorsement",), author=key, limit=RECENT)
    return {
        "peer": pid,
        "identity": identity,
        "profile": profile,
        "projects": projects_of,
        "endorsements": [record_json(r) for r in given],
        "activity": _activity(node, node.store.latest(ACTIVITY, author=key, limit=RECENT)),
        "names": names(node.store),
        "me": pid == node.peer_id,
    }


def handle(node: NodeHandle, text: str) -> dict[str, Any]:
    """The page of a handle: in each followed project where it appears, how many live
    contributions were recorded on its behalf (linked to the project's ledger filtered by
    it), its share line while no confirmed or proven claim has moved its credit to a person,
    and every claim of it."""
    try:
        value = check_handle("handle", text)
    except InvalidRecord as exc:
        raise ViewError(exc.message) from None
    where = []
    for p in node.views.project_list():
        if not p.get("followed", True):
            continue
        line = next((s for s in node.views.shares(p["id"]) if s["contributor"] == value), None)
        claims = [c for c in node.views.claims(p["id"]) if c["handle"] == value]
        recorded = node.views.ledger_page(p["id"], author=value, limit=1).total
        if line is not None or claims or recorded:
            where.append({"project": p, "share": line, "claims": claims, "recorded": recorded})
    return {"handle": value, "projects": where, "names": names(node.store)}


def peers(node: NodeHandle) -> dict[str, Any]:
    connected = node.peers()
    here = {p["peer_id"] for p in connected}
    remembered = [
        {"peer_id": p, "addrs": addrs}
        for p, addrs in node.store.known_peers(limit=200)
        if p not in here
    ]
    return {
        "connected": connected,
        "remembered": remembered,
        "banned": node.transport.banned_peers(),
        "names": names(node.store),
    }
