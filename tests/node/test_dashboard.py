"""The web dashboard in-process (issue 12): its pages, its figures against the API's, inert
peer text, the login, CSRF, Host and Origin checks, the forms, and the event stream.

The browser tests (tests/web) drive the same pages in chromium; these run in the default
suite through ``httpx.ASGITransport`` on :func:`node.api.app.build_app` with a
:class:`FakeNode` (a real store, views and authoring; no network).
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from dashboard_fakes import FakeNode, csrf_of, log_in
from hypothesis import given
from hypothesis import strategies as st

from node.api.app import build_app
from node.cli.main import main
from node.views.cache import ViewCache
from node.views.months import SortedTimes, month_counts
from node.web.auth import Sessions
from node.web.chart import MAX_MONTHS, month_columns, month_start
from node.web.events import EventHub
from node.web.forms import field_of, fields_of
from node.web.render import safe_href
from protocol.fields import CHECK_CHARACTERS
from protocol.record import Record
from protocol.testing import RecordFactory

BASE = "http://127.0.0.1:4711"
ORIGIN = {"Origin": BASE}
HOSTILE_TITLE = '<script>alert("t")</script><img src=x onerror=alert(1)>'
LONG_WORD = "W" * 200


@pytest.fixture
def node(tmp_path: Path) -> Iterator[FakeNode]:
    n = FakeNode(tmp_path / "home")
    yield n
    n.close()


class Seed:
    """A seeded ledger: a project by alice, contributions by bob and carol, endorsements."""

    def __init__(self, node: FakeNode) -> None:
        f = self.f = RecordFactory()
        self.project = f.project(
            "alice",
            name="Open car",
            description="A car <b>anyone</b> can build",
            license="CERN-OHL-S-2.0",
            links=("https://example.org/car", "javascript:alert(1)"),
        )
        self.bob = f.contribution("bob", self.project, title="Chassis CAD", minutes=120)
        self.carol = f.contribution("carol", self.project, title=LONG_WORD, minutes=30)
        # A record stored before the format refused bidi controls: it still reads back.
        token = CHECK_CHARACTERS.set(False)
        try:
            self.hostile = f.contribution(
                "carol", self.project, title=HOSTILE_TITLE + "\u202eevil", minutes=5
            )
        finally:
            CHECK_CHARACTERS.reset(token)
        self.e1 = f.endorsement("alice", self.bob, weight=3)
        self.e2 = f.endorsement("alice", self.carol, weight=1)
        self.profiles = [
            f.profile("bob", name="Bob <i>the builder</i>"),
            f.profile("alice", name="Alice"),
        ]
        node.add(self.project, self.bob, self.carol, self.hostile, self.e1, self.e2, *self.profiles)

    @property
    def pid(self) -> str:
        return self.project.id.hex()


@pytest.fixture
def seed(node: FakeNode) -> Seed:
    return Seed(node)


@pytest.fixture
async def http(node: FakeNode) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(node))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def _pages(seed: Seed, node: FakeNode) -> list[str]:
    return [
        "/",
        "/projects",
        "/projects?q=car&sort=contributions",
        f"/projects/{seed.pid}",
        f"/projects/{seed.pid[:10]}",
        f"/projects/{seed.pid}?type=code&author={seed.f.key('bob').peer_id}",
        f"/records/{seed.bob.id.hex()}",
        f"/records/{seed.e1.id.hex()[:12]}",
        f"/records/{seed.project.id.hex()}",
        f"/people/{node.peer_id}",
        f"/people/{seed.f.key('bob').peer_id}",
        f"/people/{seed.f.key('carol').peer_id[:20]}",
        "/peers",
    ]


async def test_every_page_renders_with_the_security_headers(
    http: httpx.AsyncClient, node: FakeNode, seed: Seed
) -> None:
    for path in _pages(seed, node):
        answer = await http.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
        assert answer.headers["content-type"].startswith("text/html")
        csp = answer.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        # No inline script or style anywhere: the CSP would block them.
        assert not re.search(r"<script(?![^>]*\bsrc=)", answer.text), path
        assert "<style" not in answer.text, path
        assert " style=" not in answer.text, path
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", answer.text), path  # no onclick=...


async def test_unknown_ids_and_paths_answer_a_404_page(http: httpx.AsyncClient, seed: Seed) -> None:
    for path in ("/projects/" + "ab" * 32, "/records/00000000", "/nothing/here", "/static/x.css"):
        answer = await http.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html")
        assert "Not found" in answer.text
        assert "Traceback" not in answer.text
    bad = await http.get("/projects/zz")
    assert bad.status_code == 400
    assert "hex" in bad.text
    nobody = await http.get("/people/12D3KooWnobody")
    assert nobody.status_code == 404
    # The API keeps its JSON errors.
    api = await http.get("/api/v1/nothing")
    assert api.status_code == 404
    assert "error" in api.json()


async def test_a_foreign_host_is_refused(http: httpx.AsyncClient, seed: Seed) -> None:
    rebound = await http.get("/", headers={"Host": "evil.example:4711"})
    assert rebound.status_code == 400
    assert "Host" in rebound.text
    for host in ("localhost:4711", "[::1]:4711", "10.0.0.7"):
        assert (await http.get("/", headers={"Host": host})).status_code == 200, host


async def test_the_chart_and_tables_give_the_apis_numbers(
    http: httpx.AsyncClient, seed: Seed
) -> None:
    page = (await http.get(f"/projects/{seed.pid}")).text
    shares = (await http.get(f"/api/v1/projects/{seed.pid}/shares")).json()
    assert len(shares) == 2
    bars = re.findall(
        r'<g class="bar" data-contributor="([^"]*)" data-share="([^"]*)" '
        r'data-claimed="([^"]*)" data-endorsed="([^"]*)" data-contributions="(\d+)"',
        page,
    )
    rows = re.findall(
        r'<tr data-contributor="([^"]*)" data-share="([^"]*)" data-claimed="([^"]*)" '
        r'data-endorsed="([^"]*)"',
        page,
    )
    expected = [
        (s["contributor"], s["share"], s["claimed_minutes"], s["endorsed_value"]) for s in shares
    ]
    got_bars = [(c, json.loads(a), json.loads(b), json.loads(d)) for c, a, b, d, _ in bars]
    got_rows = [(c, json.loads(a), json.loads(b), json.loads(d)) for c, a, b, d in rows]
    assert got_bars == expected
    assert got_rows == expected
    shown = (await http.get(f"/api/v1/projects/{seed.pid}")).json()
    assert (
        f'data-figure="contributions">{shown["contributions"]} by {shown["contributors"]}' in page
    )
    ledger = (await http.get(f"/api/v1/projects/{seed.pid}/ledger")).json()
    assert all(f"/records/{e['id']}" in page for e in ledger)
    assert f'<tbody data-live="{seed.pid}">' in page
    older = (await http.get(f"/projects/{seed.pid}?cursor={ledger[0]['id']}")).text
    assert "Newest contributions" in older
    assert f"/records/{ledger[0]['id']}" not in older
    assert f"/records/{ledger[1]['id']}" in older
    filtered = (await http.get(f"/projects/{seed.pid}?type=code")).text
    assert "data-live" not in filtered  # live rows would ignore the filter
    month = re.search(r'data-month="[^"]+" data-count="(\d+)"', page)
    assert month
    assert int(month.group(1)) == len(ledger)


async def test_record_page_says_where_it_went(http: httpx.AsyncClient, seed: Seed) -> None:
    rid = seed.bob.id.hex()
    detail = (await http.get(f"/api/v1/records/{rid}")).json()
    page = (await http.get(f"/records/{rid}")).text
    assert "verified" in page
    assert f'data-figure="endorsed_weight">{detail["endorsed_weight"]}<' in page
    share = detail["counts_for"]["share_of_project"]
    assert f'data-figure="share_of_project">{share * 100:.1f} %<' in page
    raw = await http.get(f"/records/{rid}/raw")
    assert raw.content == seed.bob.raw
    assert raw.headers["content-disposition"] == f'attachment; filename="{rid}.record"'


async def test_peer_text_is_inert(http: httpx.AsyncClient, node: FakeNode, seed: Seed) -> None:
    for path in (f"/projects/{seed.pid}", f"/records/{seed.hostile.id.hex()}", "/"):
        page = (await http.get(path)).text
        assert "<script>alert" not in page
        assert "<img" not in page
        assert "\u202e" not in page
    project = (await http.get(f"/projects/{seed.pid}")).text
    assert html.escape(HOSTILE_TITLE, quote=False) in project.replace("&#34;", '"')
    assert "\\u202eevil" in project  # the override shown as a visible escape, as the CLI does
    assert LONG_WORD in project
    assert 'href="javascript:' not in project
    assert '<span class="inert">javascript:alert(1)</span>' in project
    assert 'href="https://example.org/car"' in project
    assert "A car &lt;b&gt;anyone&lt;/b&gt; can build" in project
    bob = (await http.get(f"/people/{seed.f.key('bob').peer_id}")).text
    assert "Bob &lt;i&gt;the builder&lt;/i&gt;" in bob


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.org/a?b=c#d", True),
        ("http://[::1]:8080/", True),
        ("javascript:alert(1)", False),
        ("JAVASCRIPT:alert(1)", False),
        (" https://example.org", False),
        ("data:text/html,x", False),
        ("//example.org", False),
        ("https://exa mple.org", False),
        ('https://example.org/"onmouseover=x', False),
        ("https://" + "a" * 3000, False),
    ],
)
def test_only_http_urls_become_links(url: str, ok: bool) -> None:
    assert (safe_href(url) == url) is ok


async def test_without_login_the_pages_are_read_only(
    http: httpx.AsyncClient, node: FakeNode, seed: Seed
) -> None:
    for path in _pages(seed, node):
        page = (await http.get(path)).text
        assert 'method="post"' not in page, path
    assert "read-only" in (await http.get("/")).text
    before = node.store.count()
    refused = await http.post(
        f"/projects/{seed.pid}/contribute", data={"type": "code", "title": "x"}, headers=ORIGIN
    )
    assert refused.status_code == 403
    assert "commons dashboard" in refused.text
    assert node.store.count() == before


async def test_writes_need_origin_session_and_csrf(
    http: httpx.AsyncClient, node: FakeNode, seed: Seed
) -> None:
    csrf = await log_in(http, node.home.api_token())
    before = node.store.count()
    form = {"csrf": csrf, "type": "code", "title": "Door hinge"}
    url = f"/projects/{seed.pid}/contribute"
    cases = [
        ({}, form, "not sent by a page of this dashboard"),
        ({"Origin": "http://evil.example"}, form, "not sent by a page"),
        ({"Origin": "null"}, form, "not sent by a page"),
        (ORIGIN, {**form, "csrf": "forged"}, "CSRF"),
        (ORIGIN, {k: v for k, v in form.items() if k != "csrf"}, "CSRF"),
    ]
    for headers, data, words in cases:
        answer = await http.post(url, data=data, headers=headers)
        assert answer.status_code == 403, (headers, data)
        assert words in answer.text
    rebound = await http.post(url, data=form, headers={**ORIGIN, "Host": "evil.example"})
    assert rebound.status_code == 400
    assert node.store.count() == before
    too_big = await http.post(url, data={**form, "description": "x" * 200_000}, headers=ORIGIN)
    assert too_big.status_code == 400
    ok = await http.post(url, data=form, headers=ORIGIN)
    assert ok.status_code == 303
    assert node.store.count() == before + 1


async def test_login_url_works_once(http: httpx.AsyncClient, node: FakeNode) -> None:
    auth = {"Authorization": f"Bearer {node.home.api_token()}"}
    assert (await http.post("/api/v1/dashboard/logins")).status_code == 401
    made = await http.post("/api/v1/dashboard/logins", headers=auth)
    url = httpx.URL(made.json()["url"])
    assert str(url).startswith(f"{BASE}/login?token=")
    first = await http.get(url.raw_path.decode())
    assert first.status_code == 303
    cookie = first.headers["set-cookie"]
    assert cookie.startswith("commons_session_4711=")  # one cookie per node (port)
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie.replace("Strict", "strict")
    http.cookies.clear()
    again = await http.get(url.raw_path.decode())
    assert again.status_code == 403
    assert "used already or has expired" in again.text
    assert "set-cookie" not in again.headers
    page = await http.get("/")
    assert 'method="post"' not in page.text


def test_sessions_expire_and_are_bounded() -> None:
    now = [0.0]
    sessions = Sessions(clock=lambda: now[0])
    token = sessions.issue_login()
    now[0] += 601
    assert sessions.redeem(token) is None
    tokens = [sessions.issue_login() for _ in range(20)]
    assert sessions.redeem(tokens[0]) is None  # the oldest were dropped
    assert sessions.redeem(tokens[-1]) is not None


async def test_the_write_flow_through_forms(
    http: httpx.AsyncClient, node: FakeNode, seed: Seed
) -> None:
    csrf = await log_in(http, node.home.api_token())

    async def post(path: str, **data: str) -> httpx.Response:
        return await http.post(path, data={"csrf": csrf, **data}, headers=ORIGIN)

    created = await post(
        "/projects", name="Bike", license="MIT", links="https://example.org/bike\n", tags="x\ny"
    )
    assert created.status_code == 303
    project_id = created.headers["location"].split("/records/")[1].split("?")[0]
    page = (await http.get(created.headers["location"])).text
    assert "Recorded and published" in page
    shown = (await http.get(f"/api/v1/projects/{project_id}")).json()
    assert (shown["name"], shown["license"], shown["tags"]) == ("Bike", "MIT", ["x", "y"])
    assert shown["maintainers"] == [node.peer_id]

    digest = "sha256:" + "ab" * 32
    made = await post(
        f"/projects/{project_id[:12]}/contribute",
        type="design",
        title="Frame",
        hours="1.5",
        artifacts=f"https://example.org/frame.step@{digest}\nhttps://example.org/notes",
    )
    assert made.status_code == 303
    rid = made.headers["location"].split("/records/")[1].split("?")[0]
    record = (await http.get(f"/api/v1/records/{rid}")).json()
    assert record["body"]["effort_minutes"] == 90
    assert record["body"]["artifacts"] == [
        {"uri": "https://example.org/frame.step", "digest": digest},
        {"uri": "https://example.org/notes"},
    ]
    # A maintainer endorses someone else's contribution (their own would not count).
    theirs = seed.f.contribution("bob", bytes.fromhex(project_id), title="Wheels", minutes=60)
    node.add(theirs)
    endorsed = await post(f"/records/{theirs.id.hex()}/endorse", weight="4", comment="solid")
    assert endorsed.status_code == 303
    after = (await http.get(f"/api/v1/records/{theirs.id.hex()}")).json()
    assert after["endorsed_weight"] == 4
    assert after["endorsements"][0]["comment"] == "solid"
    retracted = await post(f"/records/{rid}/retract", reason="wrong file")
    assert retracted.status_code == 303
    assert (await http.get(f"/api/v1/records/{rid}")).json()["live"] is False
    updated = await post(f"/projects/{project_id}/update", description="Now with gears")
    assert updated.status_code == 303
    assert (await http.get(f"/api/v1/projects/{project_id}")).json()["description"] == (
        "Now with gears"
    )
    profiled = await post("/profile", name="Me, the owner", about="Welder", links="")
    assert profiled.status_code == 303
    assert (await http.get(f"/api/v1/profiles/{node.peer_id}")).json()["name"] == ("Me, the owner")


async def test_refusals_show_beside_their_field(
    http: httpx.AsyncClient, node: FakeNode, seed: Seed
) -> None:
    csrf = await log_in(http, node.home.api_token())
    before = node.store.count()

    async def refused(path: str, field: str, words: str, **data: str) -> None:
        answer = await http.post(path, data={"csrf": csrf, **data}, headers=ORIGIN)
        assert answer.status_code == 422, answer.text[:300]
        error = re.search(
            rf'<p class="error" id="[a-z]+-{field}-error" role="alert">([^<]*)<', answer.text
        )
        assert error, (field, answer.text[answer.text.find("error") - 200 :][:600])
        assert words in html.unescape(error.group(1))
        assert 'aria-invalid="true"' in answer.text

    contribute = f"/projects/{seed.pid}/contribute"
    await refused(contribute, "hours", "less than a minute", type="code", title="x", hours="0.01")
    await refused(contribute, "hours", "must be a number", type="code", title="x", hours="lots")
    await refused(contribute, "title", "title is required", type="code")
    await refused(contribute, "coauthors", "coauthors", type="code", title="x", coauthors="nope")
    await refused("/projects", "name", "name", name="")
    endorse = f"/records/{seed.bob.id.hex()}/endorse"
    await refused(endorse, "weight", "weight", weight="11")
    # Refused as having no effect: the owner is not a maintainer of the project.
    await refused(endorse, "force", "would have no effect: you are not a maintainer")
    forced = await http.post(endorse, data={"csrf": csrf, "force": "1"}, headers=ORIGIN)
    assert forced.status_code == 303
    shown = (await http.get(forced.headers["location"])).text
    assert "Recorded and published" in shown
    assert "does not count</span>: its author is not a maintainer of the project" in shown
    before += 1
    # The values typed are kept.
    kept = await http.post(
        contribute,
        data={"csrf": csrf, "type": "docs", "title": "Kept <b>", "hours": "0.01"},
        headers=ORIGIN,
    )
    assert 'value="Kept &lt;b&gt;"' in kept.text
    assert node.store.count() == before


def test_form_fields_map_to_the_api_fields() -> None:
    fields, errors = fields_of(
        "contribution",
        {"type": "code", "title": " T ", "minutes": "15", "coauthors": "a\n\n b \n", "x": "1"},
    )
    assert fields == {"type": "code", "title": "T", "minutes": 15, "coauthors": ["a", "b"]}
    assert errors == {}
    _, errors = fields_of("endorsement", {"weight": "-1"})
    assert errors == {"weight": "weight must be a whole number"}
    assert fields_of("retraction", {"force": "1"})[0] == {"force": True}
    assert field_of("hours 0.01 is less than a minute", "contribution") == "hours"
    assert field_of("too-long: body.title is 300 characters", "contribution") == "title"
    assert field_of("something else went wrong", "contribution") == ""


# --------------------------------------------------------------------------------------------
# The event stream


class Chunks:
    """The body chunks of one streamed answer, as they arrive."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self._changed = trio.Event()

    def add(self, chunk: bytes) -> None:
        self.items.append(chunk)
        self._changed.set()
        self._changed = trio.Event()

    async def at_least(self, n: int) -> None:
        with trio.fail_after(5):
            while len(self.items) < n:
                await self._changed.wait()


async def _stream(app: Any, path: str, chunks: Chunks) -> None:
    """Call the ASGI app for ``path`` and collect the status and body chunks it sends."""
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1:4711")],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 4711),
    }
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            chunks.add(b"status %d" % message["status"])
        elif message.get("body"):
            chunks.add(message["body"])

    await app(scope, receive, send)


def _data(chunk: bytes) -> dict[str, Any]:
    return dict(json.loads(chunk.decode().split("data: ", 1)[1]))


async def test_events_stream_new_records(node: FakeNode, seed: Seed) -> None:
    app = build_app(node)  # type: ignore[arg-type]
    everything, theirs = Chunks(), Chunks()
    other = seed.f.project("dave", name="Other")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stream, app, "/api/v1/events", everything)
        nursery.start_soon(_stream, app, f"/api/v1/events?project={other.id.hex()}", theirs)
        await everything.at_least(2)
        await theirs.at_least(2)
        fresh = seed.f.contribution("bob", seed.project, title="Live <one>")
        node.add(fresh, other, source="gossip")
        await everything.at_least(4)
        await theirs.at_least(3)
        nursery.cancel_scope.cancel()
    assert everything.items[0] == b"status 200"
    assert everything.items[2].startswith(f"event: record\nid: {fresh.id.hex()}\ndata: ".encode())
    assert _data(everything.items[2]) == {
        "id": fresh.id.hex(),
        "kind": "contribution",
        "author": seed.f.key("bob").peer_id,
        "project": seed.pid,
        "ts": fresh.ts,
        "title": "Live <one>",
        "source": "gossip",
    }
    assert _data(everything.items[3])["id"] == other.id.hex()
    # The stream of one project got that project's genesis, and not the other contribution.
    assert [_data(c)["id"] for c in theirs.items[2:]] == [other.id.hex()]


async def test_event_streams_are_bounded(node: FakeNode, seed: Seed) -> None:
    hub = EventHub(max_clients=1, queue=2)
    stream = hub.stream()
    assert await stream.__anext__() == b"retry: 2000\n: connected\n\n"
    assert hub.full()
    records: list[Record] = [seed.f.contribution("bob", seed.project) for _ in range(3)]
    hub.publish(records, "sync")  # the third finds the queue full: the client is dropped
    assert hub.clients == 0
    got = [await stream.__anext__(), await stream.__anext__()]
    assert [g.split(b"\n")[1] for g in got] == [f"id: {r.id.hex()}".encode() for r in records[:2]]
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    transport = httpx.ASGITransport(app=build_app(node))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        bad = await client.get("/api/v1/events", params={"project": "xyz"})
        assert bad.status_code == 400


def test_dashboard_command_needs_a_running_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    assert main(["init", "--home", home]) == 0
    capsys.readouterr()
    assert main(["dashboard", "--home", home]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["error: no node is running for this home: start one with `commons node run`"]


def test_csrf_helper_finds_the_token() -> None:
    assert csrf_of('<input type="hidden" name="csrf" value="abc">') == "abc"


@given(st.lists(st.integers(min_value=0, max_value=4_000_000_000_000), max_size=200))
def test_months_count_every_contribution_once(times: list[int]) -> None:
    columns = month_columns(month_counts(SortedTimes(times), month_start, MAX_MONTHS))
    naive = Counter(datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%Y-%m") for t in times)
    expected = sorted(naive.items())[-MAX_MONTHS:]
    assert [(c.month, c.count) for c in columns] == expected
    assert all(0 < c.height <= 160 for c in columns)


def test_contribution_months_agree_between_tallies_and_fold(node: FakeNode, seed: Seed) -> None:
    def months(views: ViewCache) -> list[tuple[str, int]]:
        return views.contribution_months(seed.pid, month_start, MAX_MONTHS)

    tallied = months(node.views)
    ledger = node.views.ledger(seed.pid)
    assert tallied == month_counts(SortedTimes([e["ts"] for e in ledger]), month_start, 36)
    assert sum(n for _, n in tallied) == len(ledger)
    assert months(ViewCache(node.store, tallies=False)) == tallied  # the full fold


async def test_a_project_with_attested_history_renders_and_a_handle_has_a_page(
    http: httpx.AsyncClient, node: FakeNode, seed: Seed
) -> None:
    handle = "forge:github.com/dave"
    node.add(seed.f.attested("alice", seed.project, (handle,), title="Imported commit"))
    page = await http.get(f"/projects/{seed.pid}")
    assert page.status_code == 200
    assert f'<span class="for">for</span> <a class="person" href="/people/{handle}">' in page.text
    # A handle is a contributor but no person: it has a page of its own (tests/node/
    # test_claims.py follows it through claims), and a malformed one is refused.
    own = await http.get(f"/people/{handle}")
    assert own.status_code == 200
    assert "Unclaimed here: 1 contribution," in own.text
    assert f'href="/projects/{seed.pid}"' in own.text
    # It links to the project's ledger filtered by it: the work recorded on its behalf.
    filtered = f"/projects/{seed.pid}?author=forge%3Agithub.com/dave"
    assert f'<p data-recorded="1"><a href="{filtered}">1 live contribution recorded' in own.text
    ledger = await http.get(filtered)
    assert ledger.status_code == 200
    assert "1 live contribution matching the filters" in ledger.text
    assert "Imported commit" in ledger.text
    answer = await http.get("/people/forge:github")
    assert answer.status_code == 404
    assert "is not a handle" in answer.text


async def test_a_device_page_shows_its_person_counted_once(
    http: httpx.AsyncClient, node: FakeNode, seed: Seed
) -> None:
    """docs/IDENTITY.md: bob's laptop and phone act for one person, whose paper key is
    bob-paper; the project's bars and bob's pages count that person once."""
    f = seed.f
    phone_work = f.contribution("bob-phone", seed.project, title="Wheels", minutes=60)
    node.add(
        f.link("bob-paper", "bob-paper", "ticket-1"),
        f.join("bob", "bob-paper", "ticket-1"),
        f.link("bob", "bob-paper", "ticket-2"),
        f.join("bob-phone", "bob-paper", "ticket-2"),
        phone_work,
        f.endorsement("alice", phone_work, weight=2),
    )
    person = f.key("bob-paper").peer_id
    shares = (await http.get(f"/api/v1/projects/{seed.pid}/shares")).json()
    assert [s["contributor"] for s in shares].count(person) == 1
    line = next(s for s in shares if s["contributor"] == person)
    assert (line["contributions"], line["endorsed_value"]) == (2, 120 * 3 + 60 * 2)
    page = (await http.get(f"/people/{f.key('bob-phone').peer_id}")).text
    assert "Person and devices" in page
    assert f'href="/people/{person}"' in page
    for device in ("bob", "bob-phone"):
        assert f'href="/people/{f.key(device).peer_id}"' in page
    assert f'data-contributor="{f.key("bob-phone").peer_id}" data-share="' in page
