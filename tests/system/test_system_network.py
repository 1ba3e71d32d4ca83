"""Several ``commons node run`` processes on loopback: convergence, catch-up, offline authoring,
clean stops. Driven only through the CLI and the HTTP API."""

from __future__ import annotations

import signal
import time

from system_harness import (
    SPREAD_TIMEOUT,
    NodeProcess,
    Nodes,
    wait_connected,
    wait_same_views,
    wait_until,
)

from protocol.testing import RecordFactory

#: A node must exit within this many seconds of SIGINT/SIGTERM (docs/INTERFACES.md).
CLEAN_EXIT = 5.0


def _ids(entries: list[dict[str, object]]) -> set[object]:
    return {e["id"] for e in entries}


def _assert_cli_agrees(project: str, views: dict[str, object], *group: NodeProcess) -> None:
    """The CLI (reading each store directly) shows what the API showed."""
    for node in group:
        assert node.cli_views(project) == views, node.name


def test_three_node_network(nodes: Nodes) -> None:
    a = nodes.start("alice", display_name="Alice")
    b = nodes.start("bob", a, display_name="Bob")
    c = nodes.start("carol", b, display_name="Carol")  # a chain: carol reaches alice via bob
    wait_connected(a, b)
    wait_connected(b, c)

    project = a.cli(
        "project",
        "create",
        "Wikispeed",
        "--license",
        "CERN-OHL-S-2.0",
        "--tag",
        "car",
        "--maintainer",
        c.peer_id,
    )
    assert project["kind"] == "project"
    pid = project["id"]
    wait_until(lambda: b.has_record(pid) and c.has_record(pid), what="the project to spread")

    contribution = b.cli(
        "contribute", pid[:12], "--type", "code", "--title", "Chassis CAD", "--minutes", "30"
    )
    assert contribution["kind"] == "contribution"
    assert contribution["author"] == b.peer_id
    cid = contribution["id"]
    wait_until(lambda: c.has_record(cid), what="the contribution to reach carol")

    endorsement = c.cli("endorse", cid[:12], "--weight", "3", "--comment", "solid work")
    assert endorsement["kind"] == "endorsement"
    assert endorsement["project"] == pid

    expected_shares = [
        {
            "contributor": b.peer_id,
            "person": b.peer_id,
            "contributions": 1,
            "claimed_minutes": 30,
            "endorsed_value": 90,
            "share": 1,
        }
    ]
    views = wait_same_views(pid, a, b, c, shares=expected_shares)

    show = views["show"]
    assert show["id"] == pid
    assert show["name"] == "Wikispeed"
    assert show["license"] == "CERN-OHL-S-2.0"
    assert show["tags"] == ["car"]
    assert sorted(show["maintainers"]) == sorted([a.peer_id, c.peer_id])
    assert (show["contributions"], show["contributors"]) == (1, 1)
    [entry] = views["ledger"]
    assert entry["id"] == cid
    assert entry["author"] == b.peer_id
    assert (entry["type"], entry["title"], entry["effort_minutes"]) == ("code", "Chassis CAD", 30)
    assert entry["coauthors"] == []
    assert entry["endorsements"] == 1

    # The CLI agrees on every node: 3 profiles, the project, the contribution, the endorsement.
    _assert_cli_agrees(pid, views, a, b, c)
    statuses = [n.cli("status") for n in (a, b, c)]
    assert [s["records"] for s in statuses] == [6, 6, 6]
    assert [s["projects"] for s in statuses] == [1, 1, 1]
    assert all(s["running"] is True for s in statuses)
    assert statuses[1]["peers"] == 2
    listed = [n.cli("project", "list") for n in (a, b, c)]
    assert listed[0] == listed[1] == listed[2]
    assert [(p["id"], p["contributions"], p["contributors"]) for p in listed[0]] == [(pid, 1, 1)]
    assert {p["peer_id"] for p in b.cli("peers")} == {a.peer_id, c.peer_id}
    assert c.cli("record", "show", cid[:16]) == b.cli("record", "show", cid)


def test_stopped_node_catches_up(nodes: Nodes) -> None:
    a = nodes.start("alice")
    b = nodes.start("bob", a)
    wait_connected(a, b)
    pid = a.post("/api/v1/projects", {"name": "Catch-up", "license": "MIT"})["id"]
    wait_until(lambda: b.has_record(pid), what="the project to reach bob")

    assert b.stop(signal.SIGTERM) < CLEAN_EXIT
    held = b.cli("status")
    assert held["running"] is False
    assert held["records"] == 1

    path = f"/api/v1/projects/{pid}/contributions"
    for i in range(200):
        a.post(path, {"type": "code", "title": f"Change {i}", "minutes": 1 + i % 90})
    assert a.status()["records"] == 201
    assert b.cli("status")["records"] == 1  # nothing reached the stopped node
    # Meanwhile Bob authors offline: the partition heals both ways.
    offline = [
        b.cli("contribute", pid, "--type", "review", "--title", f"Offline {i}")["id"]
        for i in range(3)
    ]
    total = 201 + 3

    b.start(a)
    wait_until(
        lambda: b.status()["records"] == total,
        timeout=SPREAD_TIMEOUT,
        what="bob to catch up with alice's 200 new records",
    )
    assert b.cli("status")["records"] == a.cli("status")["records"] == total
    wait_until(lambda: a.status()["records"] == total, what="alice to get bob's offline records")
    ledger_a = a.cli("ledger", pid, "--limit", "1000")
    assert len(ledger_a) == 203
    assert set(offline) <= _ids(ledger_a)
    assert b.cli("ledger", pid, "--limit", "1000") == ledger_a
    assert b.cli("shares", pid) == a.cli("shares", pid)
    # Nothing is left to reconcile.
    assert b.cli("sync") == {"peers": 1, "received": 0, "sent": 0}
    assert a.cli("sync", b.addr) == {"peers": 1, "received": 0, "sent": 0}


def test_late_joiner(nodes: Nodes) -> None:
    a = nodes.start("alice")
    pid = a.post("/api/v1/projects", {"name": "History", "tags": ["old"]})["id"]
    path = f"/api/v1/projects/{pid}/contributions"
    made = [
        a.post(path, {"type": "docs", "title": f"Page {i}", "hours": 0.5 + i % 3})["id"]
        for i in range(46)
    ]
    a.post(f"/api/v1/projects/{pid}/updates", {"description": "grown over time"})
    for rid in made[:2]:
        a.post("/api/v1/retractions", {"record": rid, "reason": "duplicate"})
    held = a.status()["records"]
    assert held == 50

    d = nodes.start("dave", a)  # a brand-new node: nothing but its identity
    views = wait_same_views(pid, a, d)
    assert len(views["ledger"]) == 44
    assert _ids(views["ledger"]) == set(made[2:])
    assert views["show"]["description"] == "grown over time"
    assert d.cli("status")["records"] == held
    _assert_cli_agrees(pid, views, a, d)
    assert d.cli("project", "list") == a.cli("project", "list")


def test_offline_authoring_spreads(nodes: Nodes) -> None:
    a = nodes.start("alice")
    pid = a.cli("project", "create", "Offline first")["id"]

    # Bob's home never ran a node: it learns the project from a bundle, authors offline.
    bundle = nodes.root / "project.bundle"
    assert a.cli("export", str(bundle), "--project", pid) == {"records": 1}
    b = nodes.home("bob")
    assert b.cli("import", str(bundle)) == {"accepted": 1, "duplicates": 0, "rejected": []}
    text = b.cli(
        "contribute",
        pid,
        "--type",
        "docs",
        "--title",
        "Written offline",
        "--minutes",
        "45",
        json=False,
    )
    assert "stored" in text, text
    first = text.split()[1]
    assert b.cli("record", "show", first)["body"]["title"] == "Written offline"
    assert b.cli("status")["running"] is False
    assert not a.has_record(first)

    b.start(a)
    wait_until(lambda: a.has_record(first), what="the offline record to reach alice")

    # Again with Bob's node down while Alice's is up: a contribution and a retraction.
    assert b.stop() < CLEAN_EXIT
    second = b.cli("contribute", pid, "--type", "code", "--title", "Also offline", "--hours", "1.5")
    assert second["author"] == b.peer_id
    retraction = b.cli("retract", first, "--reason", "superseded")
    assert retraction["kind"] == "retraction"
    assert not a.has_record(second["id"])

    b.start(a)
    views = wait_same_views(
        pid,
        a,
        b,
        shares=[
            {
                "contributor": b.peer_id,
                "person": b.peer_id,
                "contributions": 1,
                "claimed_minutes": 90,
                "endorsed_value": 0,
                "share": 0,
            }
        ],
    )
    assert [e["id"] for e in views["ledger"]] == [second["id"]]
    assert a.has_record(retraction["id"])
    _assert_cli_agrees(pid, views, a, b)


def test_sigterm_clean_exit(nodes: Nodes) -> None:
    a = nodes.start("alice")
    b = nodes.start("bob", a, display_name="Bob")
    wait_connected(a, b)
    pid = b.cli("project", "create", "Signals")["id"]
    wait_until(lambda: a.has_record(pid), what="the project to reach alice")
    held = b.status()["records"]
    assert held == 2

    # A second node for the same home is refused while the first runs.
    second = b.run(
        "node",
        "run",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        "127.0.0.1:0",
        "--no-mdns",
        json=False,
        expect=1,
    )
    assert "already running" in second.error_lines[0]
    assert b.running
    assert b.status()["running"] is True

    # SIGTERM on the dialling side, with a peer connected.
    elapsed = b.stop(signal.SIGTERM)
    assert elapsed < CLEAN_EXIT
    assert b.returncode == 0
    assert not (b.home / "node.json").exists()
    status = b.cli("status")
    assert status["running"] is False
    assert (status["records"], status["projects"]) == (held, 1)
    wait_until(lambda: b.peer_id not in a.peer_ids(), what="alice to notice bob left")

    # SIGINT on the listening side, with a peer connected.
    b.start(a)
    wait_connected(a, b)
    a_held = a.status()["records"]
    elapsed = a.stop(signal.SIGINT)
    assert elapsed < CLEAN_EXIT
    assert a.returncode == 0
    assert not (a.home / "node.json").exists()
    status = a.cli("status")
    assert status["running"] is False
    assert status["records"] == a_held
    wait_until(lambda: a.peer_id not in b.peer_ids(), what="bob to notice alice left")
    assert b.status()["records"] == held
    assert "Traceback" not in a.log() + b.log()


def test_killed_node_restarts(nodes: Nodes) -> None:
    a = nodes.start("alice")
    b = nodes.start("bob", a)
    wait_connected(a, b)
    pid = b.post("/api/v1/projects", {"name": "Durable"})["id"]
    made = [
        b.post(f"/api/v1/projects/{pid}/contributions", {"type": "code", "title": f"#{i}"})["id"]
        for i in range(20)
    ]
    b.kill()  # SIGKILL: no clean stop; what the API acknowledged was committed
    assert (b.home / "node.json").exists()  # stale, and recognised as such
    status = b.cli("status")
    assert status["running"] is False
    assert status["records"] == 21
    b.run("peers", expect=1)

    b.start(a)
    assert b.status()["records"] == 21
    views = wait_same_views(pid, a, b)
    assert _ids(views["ledger"]) == set(made)


def _two_projects(a: NodeProcess, contributions: int) -> tuple[str, str]:
    one = a.post("/api/v1/projects", {"name": "One"})["id"]
    two = a.post("/api/v1/projects", {"name": "Two"})["id"]
    for i in range(contributions):
        for pid in (one, two):
            a.post(f"/api/v1/projects/{pid}/contributions", {"type": "code", "title": f"#{i}"})
    return one, two


def test_follow_limits_projects(nodes: Nodes) -> None:
    a = nodes.start("alice")
    one, two = _two_projects(a, 5)
    f = nodes.home("frank").start(a, extra=("--follow", one))

    # Reconciliation brings the followed project's records; every project's genesis (meta).
    wait_until(
        lambda: len(f.get(f"/api/v1/projects/{one}/ledger")) == 5,
        what="frank to hold project one",
    )
    # Gossip brings new records of the followed project only.
    new_one = a.post(f"/api/v1/projects/{one}/contributions", {"type": "docs", "title": "new"})
    new_two = a.post(f"/api/v1/projects/{two}/contributions", {"type": "docs", "title": "new"})
    wait_until(lambda: f.has_record(new_one["id"]), what="gossip of project one to reach frank")
    assert f.cli("sync") == {"peers": 1, "received": 0, "sent": 0}
    assert not f.has_record(new_two["id"])
    # Project two's genesis is held, its contributions are not: it says "not followed",
    # never "no contributions".
    unfollowed = f.request("GET", f"/api/v1/projects/{two}/ledger")
    assert unfollowed.status_code == 404
    assert unfollowed.json()["error"] == f"this node does not follow project {two[:16]}"
    listed = {p["name"]: p["followed"] for p in f.cli("project", "list")}
    assert listed == {"One": True, "Two": False}
    assert "does not follow" in f.run("ledger", two, expect=1).error_lines[0]
    assert f.cli("status")["records"] == 2 + 6
    assert f.cli("ledger", one) == a.cli("ledger", one)

    # An externally signed record of a project it does not hold is refused.
    factory = RecordFactory(now_ms=int(time.time() * 1000))
    outside = factory.contribution("follow-test", bytes.fromhex(two), title="Outside")
    response = f.request(
        "POST",
        "/api/v1/records",
        auth=True,
        content=outside.raw,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 422, response.text
    assert "not-followed" in response.json()["error"]
    assert not f.has_record(outside.id.hex())


def test_authoring_outside_followed_projects(nodes: Nodes) -> None:
    a = nodes.start("alice")
    one, two = _two_projects(a, 0)
    f = nodes.home("frank").start(a, extra=("--follow", one))
    wait_connected(a, f)
    wait_until(lambda: f.has_record(two), what="frank to learn of project two")
    response = f.request(
        "POST",
        f"/api/v1/projects/{two}/contributions",
        auth=True,
        json={"type": "code", "title": "Outside the follow list"},
    )
    if 400 <= response.status_code < 500:
        assert "error" in response.json()
        return  # refusing is a fine answer
    assert response.status_code == 201, response.text
    rid = response.json()["id"]
    # Either gossip delivers it, or publishing fails at once (logged); then sync must.
    wait_until(
        lambda: a.has_record(rid) or f"could not publish record {rid[:16]}" in f.log(),
        timeout=15,
        what="the record to be published or refused",
    )
    f.cli("sync")
    a.cli("sync")
    assert a.has_record(rid), "the record authored on frank never reached alice"


def test_sync_to_a_wrong_port_fails_on_one_line_and_is_not_remembered(nodes: Nodes) -> None:
    """A dial needs a process: the port that answers nothing is a real closed port."""
    import socket

    from node.store.sqlite import Store

    a = nodes.start("alice")
    b = nodes.start("bob")
    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    good_port = b.addr.split("/tcp/")[1].split("/")[0]
    wrong = b.addr.replace(f"/tcp/{good_port}/", f"/tcp/{closed}/")
    result = a.run("sync", wrong, json=False, expect=1)
    assert len(result.error_lines) == 1, result.describe()
    line = result.error_lines[0]
    assert line.startswith(f"error: could not connect to {wrong}: "), line
    assert line.endswith("Connection refused"), line  # the cause, not libp2p's wrappers
    # The right address works, and the wrong one is not what the peer book keeps.
    assert a.cli("sync", b.addr)["peers"] == 1
    a.stop()
    with Store.open(a.home / "ledger.db") as store:
        remembered = dict(store.known_peers())
    assert b.peer_id in remembered
    assert not [addr for addr in remembered[b.peer_id] if f"/tcp/{closed}/" in addr]
