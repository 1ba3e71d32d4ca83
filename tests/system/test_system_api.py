"""The local HTTP API of a running node, from outside: auth, bad input, external records."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from system_harness import NodeProcess, Nodes, wait_connected, wait_until

from node.api.front import FRONT_RECORDS
from protocol.bundle import HEADER, BundleWriter, encode_bundle, encode_varint
from protocol.testing import RecordFactory

WRITE_PATHS = [
    "/api/v1/projects",
    "/api/v1/projects/{pid}/updates",
    "/api/v1/projects/{pid}/contributions",
    "/api/v1/endorsements",
    "/api/v1/retractions",
    "/api/v1/profiles",
    "/api/v1/records",
    "/api/v1/bundles",
    "/api/v1/sync",
]


def _json_error(response: httpx.Response, *statuses: int) -> str:
    """The response has one of ``statuses`` and a JSON ``{"error": "..."}`` body."""
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str), body
    assert body["error"], body
    return str(body["error"])


def _post_raw(node: NodeProcess, raw: bytes, *, auth: bool | str = True) -> httpx.Response:
    return node.request(
        "POST",
        "/api/v1/records",
        auth=auth,
        content=raw,
        headers={"Content-Type": "application/octet-stream"},
    )


def test_api_auth_and_bad_input(nodes: Nodes) -> None:
    a = nodes.start("alice")
    b = nodes.start("bob", a)
    wait_connected(a, b)
    pid = a.post("/api/v1/projects", {"name": "API"})["id"]
    before = a.status()["records"]

    # Writes without a token, with a wrong one, or with another scheme: 401, nothing stored.
    for template in WRITE_PATHS:
        path = template.format(pid=pid)
        for auth in (False, "not-the-token", a.token + "x"):
            response = a.request("POST", path, auth=auth, json={"name": "x"})
            _json_error(response, 401)
        response = a.request(
            "POST", path, json={"name": "x"}, headers={"Authorization": f"Basic {a.token}"}
        )
        _json_error(response, 401)
    # Reads need no token.
    assert a.get(f"/api/v1/projects/{pid}")["name"] == "API"

    # POST /api/v1/records: garbage, empty, oversized (declared and streamed).
    _json_error(_post_raw(a, b"\x00garbage\xff" * 10), 422)
    _json_error(_post_raw(a, b"\xc1\xc1\xc1"), 422)
    _json_error(_post_raw(a, b""), 422)
    _json_error(_post_raw(a, b"\x00" * 70_000), 413, 422)

    def chunks() -> Iterator[bytes]:
        for _ in range(70):
            yield b"\x01" * 1000

    streamed = a.request(
        "POST",
        "/api/v1/records",
        auth=True,
        content=chunks(),
        headers={"Content-Type": "application/octet-stream"},
    )
    _json_error(streamed, 413, 422)

    # POST /api/v1/projects: invalid JSON 400, not an object 400, a 101-byte name 422,
    # unknown fields 422, an oversized JSON body 413.
    def post(path: str, body: object) -> httpx.Response:
        return a.request("POST", path, auth=True, json=body)

    headers = {"Content-Type": "application/json"}
    bad_json = a.request("POST", "/api/v1/projects", auth=True, content=b"{nope", headers=headers)
    _json_error(bad_json, 400)
    deep = b"[" * 100_000 + b"]" * 100_000  # 200 KB: under the body limit, too deep to parse
    for path in ("/api/v1/projects", f"/api/v1/projects/{pid}/contributions", "/api/v1/sync"):
        _json_error(a.request("POST", path, auth=True, content=deep, headers=headers), 400)
    _json_error(post("/api/v1/projects", ["a list"]), 400)
    _json_error(post("/api/v1/projects", {"name": "n" * 101}), 422)
    _json_error(post("/api/v1/projects", {"name": "é" * 51}), 422)  # 102 bytes
    _json_error(post("/api/v1/projects", {}), 422)
    _json_error(post("/api/v1/projects", {"name": "x", "colour": "red"}), 422)
    too_big = post("/api/v1/projects", {"name": "x" * 300_000})
    _json_error(too_big, 413)
    # The body was not read: the server closes the connection and says so (a keep-alive
    # client would otherwise send its next request into it and lose that request).
    assert too_big.headers["connection"] == "close"
    contributions = f"/api/v1/projects/{pid}/contributions"
    _json_error(post(contributions, {"type": "code", "title": "t", "minutes": "ten"}), 422)
    _json_error(post(contributions, {"type": "code", "title": "t", "minutes": 1, "hours": 1}), 422)
    _json_error(post("/api/v1/endorsements", {"record": "deadbeefdeadbeef"}), 404, 422)

    # Reads of what does not exist: 4xx JSON, never a 500.
    _json_error(a.request("GET", "/api/v1/projects/zzzz"), 400, 404)
    _json_error(a.request("GET", "/api/v1/projects/deadbeefdeadbeef"), 404)
    _json_error(a.request("GET", f"/api/v1/projects/{pid}/ledger?limit=many"), 400)
    _json_error(a.request("GET", f"/api/v1/projects/{pid}/ledger?limit=-1"), 400)
    _json_error(a.request("GET", "/api/v1/records/0123456789abcdef"), 404)
    _json_error(a.request("GET", "/api/v1/no/such/thing"), 404)
    # Outside /api/ a path belongs to the dashboard: an unknown one is its 404 page.
    page = a.request("GET", "/nowhere")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    _json_error(a.request("DELETE", "/api/v1/status"), 404, 405)

    # Nothing of that was stored, and the node still works.
    assert a.status()["records"] == before
    assert a.status()["running"] is True
    made = a.post(contributions, {"type": "docs", "title": "Still works", "minutes": 5})
    assert made["kind"] == "contribution"
    assert a.cli("ledger", pid)[0]["id"] == made["id"]

    # An externally signed record: 201 when new, 200 when held, and it spreads.
    factory = RecordFactory(now_ms=int(time.time() * 1000))
    project = factory.project("system-test-maintainer", name="Signed elsewhere")
    response = _post_raw(a, project.raw)
    assert response.status_code == 201, response.text
    assert response.json() == {"id": project.id.hex()}
    response = _post_raw(a, project.raw)
    assert response.status_code == 200, response.text
    assert response.json() == {"id": project.id.hex()}
    contribution = factory.contribution(
        "system-test-contributor", project, title="External", minutes=20
    )
    _json_error(_post_raw(a, contribution.raw, auth=False), 401)
    response = _post_raw(a, contribution.raw)
    assert response.status_code == 201, response.text

    # A record from an hour ahead is refused, and so is a forged signature.
    future = RecordFactory(now_ms=int(time.time() * 1000) + 3_600_000).project("x", name="Later")
    assert "future-timestamp" in _json_error(_post_raw(a, future.raw), 422)
    forged = bytearray(contribution.raw)
    at = forged.find(contribution.sig)
    forged[at + 5] ^= 0x01
    _json_error(_post_raw(a, bytes(forged)), 422)

    wait_until(
        lambda: b.has_record(project.id.hex()) and b.has_record(contribution.id.hex()),
        what="the externally signed records to reach bob",
    )
    shown = b.cli("record", "show", contribution.id.hex())
    assert shown["kind"] == "contribution"
    assert shown["project"] == project.id.hex()
    assert [e["id"] for e in b.cli("ledger", project.id.hex())] == [contribution.id.hex()]
    assert "Traceback" not in a.log()


def test_api_sync_bad_address_is_a_client_error(nodes: Nodes) -> None:
    a = nodes.start("alice")
    result = a.run("sync", "garbage", expect=1)  # the CLI itself is fine: one error line
    assert "multiaddr" in result.error_lines[0]
    for addr in ("garbage", "/ip4/127.0.0.1/tcp/1"):
        response = a.request("POST", "/api/v1/sync", auth=True, json={"addr": addr})
        _json_error(response, 400, 422)


def test_api_bundles_take_a_batch_of_records(nodes: Nodes) -> None:
    """``POST /api/v1/bundles``: many externally signed records in one request, one commit.
    Each record is judged alone (the invalid ones come back with their reasons, the rest are
    stored and spread); a damaged bundle is refused whole."""
    a = nodes.start("alice")
    b = nodes.start("bob", a)
    wait_connected(a, b)
    factory = RecordFactory(now_ms=int(time.time() * 1000))
    project = factory.project("bundle-maintainer", name="Batched")
    contributions = list(factory.many_contributions("bundle-contributor", project, 300))
    forged = bytearray(contributions[7].raw)
    forged[forged.find(contributions[7].sig) + 3] ^= 0x01
    raws = [project.raw, *(c.raw for c in contributions)]
    raws[8] = bytes(forged)

    def post(body: bytes, auth: bool = True) -> httpx.Response:
        headers = {"Content-Type": "application/octet-stream"}
        return a.request("POST", "/api/v1/bundles", auth=auth, content=body, headers=headers)

    before = a.status()["records"]
    for bad in (b"", b"not a bundle", encode_bundle(raws)[:-5], encode_bundle([])):
        _json_error(post(bad), 422)
    _json_error(post(encode_bundle(raws), auth=False), 401)
    assert a.status()["records"] == before

    response = post(encode_bundle(raws))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["new"] == len(raws) - 1
    assert body["duplicates"] == 0
    assert [r["index"] for r in body["rejected"]] == [8]
    assert "signature" in body["rejected"][0]["error"]
    assert body["ids"][0] == project.id.hex()
    assert body["ids"][8] is None
    assert body["ids"][9] == contributions[8].id.hex()
    assert a.status()["records"] == before + len(raws) - 1

    again = post(encode_bundle(raws[:3]))
    assert again.status_code == 200, again.text
    assert again.json()["new"] == 0
    assert again.json()["duplicates"] == 3

    # A record too large to read is refused by its index; the records after it are stored.
    late = [factory.contribution("bundle-contributor", project, title=f"Late {i}") for i in (1, 2)]
    oversized = encode_varint(100_000) + bytes(100_000)
    frames = [BundleWriter.frame(late[0].raw), oversized, BundleWriter.frame(late[1].raw)]
    response = post(HEADER + b"".join(frames))
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["new"], body["duplicates"]) == (2, 0)
    assert body["rejected"] == [
        {
            "index": 1,
            "error": "record-too-large: a record of 100000 bytes, the limit is 65536 (not read)",
        }
    ]
    assert body["ids"] == [late[0].id.hex(), None, late[1].id.hex()]
    alone = post(HEADER + oversized)
    assert alone.status_code == 200, alone.text
    refusal = {"index": 0, "error": body["rejected"][0]["error"]}
    assert alone.json() == {"new": 0, "duplicates": 0, "rejected": [refusal], "ids": [None]}
    assert a.status()["records"] == before + len(raws) + 1

    last = (contributions[-1].id.hex(), late[-1].id.hex())
    wait_until(lambda: all(map(b.has_record, last)), what="the batches to reach bob by gossip")
    assert len(b.cli("ledger", project.id.hex(), "--limit", "1000")) == len(contributions) + 1
    assert "Traceback" not in a.log()


def test_scoped_tokens(nodes: Nodes) -> None:
    """``commons token``: a submit token posts signed records and bundles and nothing else,
    an ``all`` token writes like api.token, and a revoked token stops working at once, on
    the running node."""
    a = nodes.start("alice")
    submit = a.run("token", "create", "--scope", "submit", "--name", "git-hook", json=False)
    hook = submit.stdout.strip()  # the token alone on stdout; the note on stderr
    assert hook.startswith("cmns_")
    assert hook not in submit.stderr
    created = a.cli("token", "create", "--scope", "all")
    everything = created["token"]
    assert created["scope"] == "all"
    listed = a.cli("token", "list")
    assert [(t["name"], t["scope"]) for t in listed] == [("git-hook", "submit"), (None, "all")]
    assert all("token" not in t for t in listed)
    assert hook not in (a.home / "tokens.json").read_text()
    text = a.cli("token", "list", json=False)
    assert "git-hook" in text
    assert "submit" in text

    factory = RecordFactory(now_ms=int(time.time() * 1000))
    project = factory.project("hook-maintainer", name="Hooked")
    first = factory.contribution("hook-maintainer", project, title="From a git hook")
    second = factory.contribution("hook-maintainer", project, title="Batched")
    response = _post_raw(a, project.raw, auth=hook)
    assert response.status_code == 201, response.text
    response = a.request(
        "POST",
        "/api/v1/bundles",
        auth=hook,
        content=encode_bundle([first.raw, second.raw]),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    # Everything else is beyond its scope: 403, nothing stored.
    pid = project.id.hex()
    before = a.status()["records"]
    for template in (p for p in WRITE_PATHS if p not in ("/api/v1/records", "/api/v1/bundles")):
        response = a.request("POST", template.format(pid=pid), auth=hook, json={"name": "x"})
        assert "scope" in _json_error(response, 403)
    assert a.status()["records"] == before
    # The all-scope token and the owner's token write anything.
    assert a.post("/api/v1/projects", {"name": "By owner"})["kind"] == "project"
    response = a.request("POST", "/api/v1/projects", auth=everything, json={"name": "By token"})
    assert response.status_code == 201, response.text

    # Revoked: 401 at the next request, no restart; the other token still works.
    hook_id = next(t["id"] for t in listed if t["name"] == "git-hook")
    assert a.cli("token", "revoke", hook_id)["revoked"] is True
    third = factory.contribution("hook-maintainer", project, title="Too late")
    _json_error(_post_raw(a, third.raw, auth=hook), 401)
    _json_error(_post_raw(a, third.raw, auth="cmns_" + "x" * 43), 401)
    response = _post_raw(a, third.raw, auth=everything)
    assert response.status_code == 201, response.text
    assert [t["scope"] for t in a.cli("token", "list")] == ["all"]
    assert "no token with id" in a.run("token", "revoke", hook_id, expect=1).error_lines[0]
    assert a.run("token", "create", "--scope", "root", expect=2).returncode == 2


def _import_a_catch_up(node: NodeProcess) -> None:
    """Post a bundle of a catch-up's worth of records (``FRONT_RECORDS``, as many as a bundle
    call takes) to ``node``: a load that calls for the API's front process."""
    factory = RecordFactory(now_ms=int(time.time() * 1000))
    project = factory.project("bulk-maintainer", name="Bulk")
    many = factory.many_contributions("bulk-contributor", project, FRONT_RECORDS - 1)
    body = encode_bundle([project.raw, *(c.raw for c in many)])
    headers = {"Content-Type": "application/octet-stream"}
    response = node.request("POST", "/api/v1/bundles", auth=True, content=body, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["new"] == FRONT_RECORDS


def _fronts_of(node: NodeProcess, module: bytes = b"node.api.front") -> list[int]:
    """The node's API front processes running now (or those of another ``module``)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _child_of(int(entry), node.pid):
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                if module in cmdline.read():
                    found.append(int(entry))
    return found


def test_views_answer_while_the_node_process_is_frozen(nodes: Nodes) -> None:
    """While the node is busy (here: a big bundle posted), ``ledger`` and ``shares`` come
    from the API's front process, which reads the store itself: with the node's own process
    stopped (SIGSTOP, as a busy interpreter is at its worst), they still answer at once, and
    show what was written before; a write waits for the node and lands once it runs again.
    An idle node runs no front, only the small gate that holds its address."""
    a = nodes.start("alice")
    pid = a.post("/api/v1/projects", {"name": "Frozen"})["id"]
    written = a.post(
        f"/api/v1/projects/{pid}/contributions",
        {"type": "code", "title": "before the freeze", "minutes": 20},
    )["id"]
    assert _fronts_of(a) == [], "an idle node answers the views itself"
    gates = _fronts_of(a, b"node.api.gate")
    assert len(gates) == 1, "the node's gate holds its address"
    _import_a_catch_up(a)
    wait_until(lambda: _fronts_of(a), 30, what="the node's front process")
    fronts = _fronts_of(a)
    with httpx.Client(base_url=a.api, timeout=10) as client:
        # The gate sends the views to the front once it is ready and the node has told it.
        wait_until(
            lambda: "server" not in client.get(f"/api/v1/projects/{pid}/shares").headers,
            30,
            what="the front answering",
        )
    os.kill(a.pid, signal.SIGSTOP)
    try:
        with httpx.Client(base_url=a.api, timeout=5) as client:
            started = time.monotonic()
            ledger = client.get(f"/api/v1/projects/{pid}/ledger")
            shares = client.get(f"/api/v1/projects/{pid}/shares")
            took = time.monotonic() - started
            assert ledger.status_code == 200
            assert shares.status_code == 200
            assert [e["id"] for e in ledger.json()] == [written]
            assert shares.json()[0]["claimed_minutes"] == 20
            assert took < 4, took
            with pytest.raises(httpx.TimeoutException):
                client.get("/api/v1/status", timeout=1)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    assert a.status()["records"] == 2 + FRONT_RECORDS
    a.stop(signal.SIGTERM)
    for child in [*fronts, *gates]:
        gone = f"child {child} of the node gone"
        wait_until(lambda child=child: not os.path.exists(f"/proc/{child}"), 10, what=gone)


def test_config_can_leave_the_api_to_the_node_alone(nodes: Nodes) -> None:
    """``node.api_front = false`` in config.toml: no gate, no front process, even under load;
    the node's own server answers the views and everything else at the API address."""
    a = nodes.home("alice")
    config = a.home / "config.toml"
    text = config.read_text()
    assert "api_front = true" in text  # the default, written by init with its comment
    config.write_text(text.replace("api_front = true", "api_front = false"))
    a.start()
    pid = a.post("/api/v1/projects", {"name": "Alone"})["id"]
    _import_a_catch_up(a)  # a node with a front has started it by the time this is stored
    with httpx.Client(base_url=a.api, timeout=10) as client:
        shares = client.get(f"/api/v1/projects/{pid}/shares")
    assert shares.status_code == 200
    assert shares.headers["server"] == "hypercorn-h11"
    assert _fronts_of(a) == []
    assert _fronts_of(a, b"node.api.gate") == []


def _child_of(pid: int, parent: int) -> bool:
    """Whether process ``pid`` is a child of ``parent`` (and still there)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return False
    return int(fields[1]) == parent
