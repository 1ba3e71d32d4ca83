"""The dashboard in a real browser (issue 12): Debian's chromium through Playwright, against
real ``commons node run`` processes on loopback.

Every page renders for a seeded ledger with no console error; the shares chart's numbers
equal the API's; the whole write flow goes through the forms (log in with the URL of
``commons dashboard``, create a project, contribute, endorse from a second node's dashboard,
retract); a record authored on another node appears without a reload; hostile strings stay
inert and the CSP blocks inline script; without a login the pages are read-only; and the
keyboard alone reaches every action of a page.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_harness import Tab
from system_harness import NodeProcess, Nodes, wait_connected, wait_until

from protocol.bundle import encode_bundle
from protocol.record import Record
from protocol.testing import RecordFactory

pytestmark = pytest.mark.web

DAY_MS = 86_400_000
HOSTILE_NAME = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned = 2'>"
HOSTILE_LINK = "javascript:window.__pwned = 3"
LONG_WORD = "Z" * 200
#: What a keyboard user must be able to reach: every link, button, field and disclosure.
FOCUSABLE = "a[href], button, input:not([type=hidden]), select, textarea, summary"


def open_tab(tabs: list[Tab], browser: Any, node: NodeProcess) -> Tab:
    tab = Tab(browser, node.api)
    tabs.append(tab)
    return tab


def log_in(tab: Tab, node: NodeProcess) -> None:
    """Log in as ``commons dashboard`` tells the owner to: open its one-time URL."""
    url = node.cli("dashboard")["url"]
    tab.page.goto(url)
    assert tab.page.url == node.api + "/"
    assert tab.page.get_by_role("button", name="Log out").is_visible()


class Seeded:
    """A project with contributions by three people over three months, endorsed by its
    maintainer, imported into a running node as a bundle."""

    def __init__(self, node: NodeProcess, tmp: Path) -> None:
        now = int(time.time() * 1000)
        f = self.f = RecordFactory(now_ms=now - 80 * DAY_MS, step_ms=2 * DAY_MS)
        self.project = f.project(
            "alice",
            name=HOSTILE_NAME,
            description="Bodywork\nand welding",
            license="CERN-OHL-S-2.0",
            links=("https://example.org/car", HOSTILE_LINK),
        )
        records: list[Record] = [self.project, f.profile("bob", name="Bob the welder")]
        self.contributions = []
        for i in range(12):
            who = ("bob", "carol", "dave")[i % 3]
            title = LONG_WORD if i == 4 else f"Part {i}"
            c = f.contribution(who, self.project, title=title, minutes=30 * (i + 1))
            self.contributions.append(c)
            records.append(c)
            if i % 2 == 0:
                records.append(f.endorsement("alice", c, weight=1 + i % 4))
        path = tmp / "seed.bundle"
        path.write_bytes(encode_bundle(r.raw for r in records))
        assert node.cli("import", str(path))["accepted"] == len(records)
        self.pid = self.project.id.hex()


def test_every_page_renders_without_console_errors(
    nodes: Nodes, browser: Any, tabs: list[Tab], tmp_path: Path
) -> None:
    alice = nodes.start("alice", display_name="Alice")
    seed = Seeded(alice, tmp_path)
    tab = open_tab(tabs, browser, alice)
    bob = seed.f.key("bob").peer_id
    pages = {
        "/": "This node",
        "/projects": "Projects",
        f"/projects/{seed.pid[:10]}": "Shares",
        f"/records/{seed.contributions[0].id.hex()[:12]}": "Where it went",
        f"/people/{bob}": "Bob the welder",
        f"/people/{alice.peer_id}": "Alice",
        "/peers": "Peers",
    }
    for path, words in pages.items():
        answer = tab.page.goto(path)
        assert answer is not None
        assert answer.status == 200, path
        assert words in tab.page.content(), path
    missing = tab.page.goto("/records/" + "0" * 64)
    assert missing is not None
    assert missing.status == 404
    assert tab.page.get_by_role("heading", name="Not found").is_visible()
    # A 404 is logged by the browser as a failed load; nothing else may be.
    assert [e for e in tab.errors if "404" not in e] == []


def test_the_shares_chart_gives_the_apis_numbers(
    nodes: Nodes, browser: Any, tabs: list[Tab], tmp_path: Path
) -> None:
    alice = nodes.start("alice")
    seed = Seeded(alice, tmp_path)
    tab = open_tab(tabs, browser, alice)
    tab.page.goto(f"/projects/{seed.pid}")
    bars = tab.page.locator("svg.bars g.bar").evaluate_all(
        """gs => gs.map(g => [g.dataset.contributor, JSON.parse(g.dataset.share),
                JSON.parse(g.dataset.claimed), JSON.parse(g.dataset.endorsed)])"""
    )
    shares = alice.get(f"/api/v1/projects/{seed.pid}/shares")
    assert bars == [
        [s["contributor"], s["share"], s["claimed_minutes"], s["endorsed_value"]] for s in shares
    ]
    # The bars are drawn to scale: the widths are in the ratio of the shares.
    widths = tab.page.locator("svg.bars rect").evaluate_all("rs => rs.map(r => r.getBBox().width)")
    top = shares[0]["share"]
    for width, s in zip(widths, shares, strict=True):
        assert width == pytest.approx(600 * s["share"] / top, abs=0.01)
    months = tab.page.locator("svg.columns g.column").evaluate_all(
        "gs => gs.map(g => Number(g.dataset.count))"
    )
    assert sum(months) == alice.get(f"/api/v1/projects/{seed.pid}")["contributions"]
    assert len(months) >= 2
    assert tab.errors == []


def test_hostile_strings_are_inert_and_csp_blocks_inline_script(
    nodes: Nodes, browser: Any, tabs: list[Tab], tmp_path: Path
) -> None:
    alice = nodes.start("alice")
    seed = Seeded(alice, tmp_path)
    tab = open_tab(tabs, browser, alice)
    page = tab.page
    for path in ("/", "/projects", f"/projects/{seed.pid}"):
        page.goto(path)
        assert page.evaluate("window.__pwned") is None, path
    # The name is shown as the text it is.
    assert page.get_by_role("heading", level=1).inner_text() == HOSTILE_NAME
    assert page.locator("img").count() == 0
    # The javascript: link is text, not a link; the https one is a link.
    assert page.get_by_text(HOSTILE_LINK).evaluate("e => e.tagName") == "SPAN"
    assert page.get_by_role("link", name="https://example.org/car").count() == 1
    # The 200-character word wraps inside the page instead of widening it.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"]
    # An inline script injected into the page does not run: the CSP refuses it.
    violations = page.evaluate(
        """() => new Promise(done => {
            const seen = [];
            document.addEventListener(
                "securitypolicyviolation", e => seen.push(e.violatedDirective));
            const s = document.createElement("script");
            s.textContent = "window.__inline = 1";
            document.body.append(s);
            setTimeout(() => done(seen), 200);
        })"""
    )
    assert page.evaluate("window.__inline") is None
    assert any(v.startswith("script-src") for v in violations)
    assert page.evaluate("window.__pwned") is None


def test_read_only_without_login(
    nodes: Nodes, browser: Any, tabs: list[Tab], tmp_path: Path
) -> None:
    alice = nodes.start("alice")
    seed = Seeded(alice, tmp_path)
    tab = open_tab(tabs, browser, alice)
    for path in (
        "/",
        "/projects",
        f"/projects/{seed.pid}",
        f"/records/{seed.contributions[0].id.hex()}",
    ):
        tab.page.goto(path)
        assert tab.page.locator("form[method=post]").count() == 0, path
        assert tab.page.get_by_text("read-only").first.is_visible()
    before = alice.status()["records"]
    answer = tab.page.request.post(
        f"/projects/{seed.pid}/contribute",
        form={"type": "code", "title": "sneaky"},
        headers={"Origin": alice.api},
    )
    assert answer.status == 403
    assert alice.status()["records"] == before


def test_the_write_flow_through_two_dashboards(nodes: Nodes, browser: Any, tabs: list[Tab]) -> None:
    alice = nodes.start("alice", display_name="Alice")
    bob = nodes.start("bob", alice, display_name="Bob")
    wait_connected(alice, bob)
    a = open_tab(tabs, browser, alice)
    log_in(a, alice)
    # Create a project with Bob as a second maintainer.
    a.page.goto("/projects")
    a.page.get_by_label("Name").fill("Open tractor")
    a.page.get_by_label("Licence").fill("CERN-OHL-S-2.0")
    a.page.get_by_label("Other maintainers").fill(bob.peer_id)
    a.page.get_by_role("button", name="Create project").click()
    assert a.page.get_by_role("status").inner_text().startswith("Recorded and published")
    pid = a.page.url.split("/records/")[1].split("?")[0]
    # A refused contribution shows its reason beside the field, then a good one is recorded.
    a.page.goto(f"/projects/{pid}")
    form = a.page.locator("form[action$='/contribute']")
    form.get_by_label("Type").select_option("design")
    form.get_by_label("Title").fill("Hitch")
    form.get_by_label("Hours").fill("0.01")
    form.get_by_role("button", name="Record contribution").click()
    error = a.page.locator("#contribution-hours-error")
    assert "less than a minute" in error.inner_text()
    assert form.get_by_label("Title").input_value() == "Hitch"
    form.get_by_label("Hours").fill("2")
    digest = "sha256:" + "cd" * 32
    form.get_by_label("Artifacts").fill(f"https://example.org/hitch.step@{digest}")
    form.get_by_role("button", name="Record contribution").click()
    rid = a.page.url.split("/records/")[1].split("?")[0]
    assert a.page.get_by_text(digest).is_visible()

    # Bob endorses it from his own node's dashboard once gossip has brought it.
    wait_until(lambda: bob.has_record(rid), timeout=40, what="the contribution to reach bob")
    b = open_tab(tabs, browser, bob)
    log_in(b, bob)
    b.page.goto(f"/records/{rid[:16]}")
    b.page.get_by_label("Weight").fill("3")
    b.page.get_by_label("Comment").fill("fits the frame")
    b.page.get_by_role("button", name="Endorse").click()
    assert b.page.get_by_role("status").is_visible()
    wait_until(
        lambda: alice.get(f"/api/v1/records/{rid}")["endorsed_weight"] == 3,
        timeout=40,
        what="bob's endorsement to count on alice's node",
    )
    a.page.goto(f"/records/{rid}")
    assert a.page.locator('[data-figure="endorsed_weight"]').inner_text() == "3"
    # Alice retracts her contribution.
    a.page.get_by_label("Reason").fill("replaced by a better hitch")
    a.page.get_by_role("button", name="Retract").click()
    assert a.page.get_by_role("status").is_visible()
    assert alice.get(f"/api/v1/records/{rid}")["live"] is False
    a.page.goto(f"/records/{rid}")
    assert "Retracted" in a.page.locator("#went-h + p").inner_text()
    # The refused form's 422 is the one failed load the browser may report.
    assert [e for e in a.errors if "status of 422" not in e] == []
    assert b.errors == []


def test_a_record_from_another_node_appears_live(
    nodes: Nodes, browser: Any, tabs: list[Tab]
) -> None:
    alice = nodes.start("alice")
    bob = nodes.start("bob", alice)
    wait_connected(alice, bob)
    pid = alice.cli("project", "create", "Shared")["id"]
    wait_until(lambda: bob.has_record(pid), timeout=40, what="the project to reach bob")
    tab = open_tab(tabs, browser, alice)
    for path, selector in ((f"/projects/{pid}", "tbody[data-live]"), ("/", "ol[data-live]")):
        tab.page.goto(path)
        # live.js marks the page once its event stream is open.
        tab.page.wait_for_selector("html[data-live-stream=open]", timeout=10_000)
        made = bob.cli("contribute", pid, "--type", "docs", "--title", f"Manual from bob {path}")
        row = tab.page.locator(f'{selector} [data-record="{made["id"]}"]')
        row.wait_for(timeout=40_000)
        assert f"Manual from bob {path}" in row.inner_text()
    assert tab.errors == []


def test_first_paint_and_live_update_are_quick(
    nodes: Nodes, browser: Any, tabs: list[Tab], tmp_path: Path
) -> None:
    """The issue's budgets on loopback: first paint of a project page within 300 ms, a record
    on the page within 100 ms of being stored. Measured and printed; asserted at three times
    the budget, so that a loaded CI machine passes and a regression of kind does not."""
    alice = nodes.start("alice")
    seed = Seeded(alice, tmp_path)
    tab = open_tab(tabs, browser, alice)
    tab.page.goto(f"/projects/{seed.pid}")  # the templates compiled, the project folded
    paints = []
    for _ in range(3):
        tab.page.goto(f"/projects/{seed.pid}")
        paint = tab.page.wait_for_function(
            """() => performance.getEntriesByType("paint")
                .find(p => p.name === "first-contentful-paint")"""
        )
        paints.append(paint.evaluate("p => p.startTime"))
    lags = []
    for i in range(3):
        tab.page.wait_for_selector("html[data-live-stream=open]", timeout=10_000)
        # The page notes (in epoch ms) when each live row arrives.
        tab.page.evaluate(
            """() => { window.__arrived = {};
                new MutationObserver(ms => ms.forEach(m => m.addedNodes.forEach(n => {
                    if (n.dataset && n.dataset.record)
                        window.__arrived[n.dataset.record] =
                            performance.timeOrigin + performance.now();
                }))).observe(document.querySelector("[data-live]"), {childList: true}); }"""
        )
        made = alice.post(
            f"/api/v1/projects/{seed.pid}/contributions", {"type": "docs", "title": f"Live {i}"}
        )
        stored = time.time() * 1000  # the answer comes after the commit: an upper bound
        tab.page.wait_for_function(f"() => window.__arrived['{made['id']}'] !== undefined")
        lags.append(tab.page.evaluate(f"window.__arrived['{made['id']}']") - stored)
    print(f"first contentful paint {sorted(paints)} ms; live update after store {sorted(lags)} ms")
    assert sorted(paints)[1] <= 900
    assert sorted(lags)[1] <= 300


def test_keyboard_reaches_every_action(
    nodes: Nodes, browser: Any, tabs: list[Tab], tmp_path: Path
) -> None:
    alice = nodes.start("alice")
    seed = Seeded(alice, tmp_path)
    tab = open_tab(tabs, browser, alice)
    log_in(tab, alice)
    for path in ("/", f"/projects/{seed.pid}", f"/records/{seed.contributions[1].id.hex()}"):
        tab.page.goto(path)
        # The first Tab reaches the skip link, and Enter on it moves focus to the content.
        tab.page.keyboard.press("Tab")
        assert tab.page.evaluate("document.activeElement.textContent") == "Skip to content"
        # What hides behind a <details> is opened from the keyboard too.
        for summary in tab.page.locator("summary").all():
            summary.focus()
            tab.page.keyboard.press("Enter")
        tab.page.locator(".skip").focus()
        actions = tab.page.evaluate(
            f"() => [...document.querySelectorAll('{FOCUSABLE}')]"
            ".filter(e => e.checkVisibility()).length"
        )
        for _ in range(actions + 5):
            tab.page.keyboard.press("Tab")
            tab.page.evaluate("document.activeElement.dataset.reached = '1'")
        unreached = tab.page.evaluate(
            f"() => [...document.querySelectorAll('{FOCUSABLE}')]"
            ".filter(e => e.checkVisibility() && !e.dataset.reached && !e.matches('.skip'))"
            ".map(e => e.outerHTML.slice(0, 80))"
        )
        assert unreached == [], path
    # A form can be filled and sent from the keyboard alone.
    tab.page.goto(f"/projects/{seed.pid}")
    tab.page.locator("form[action$='/contribute']").get_by_label("Title").focus()
    tab.page.keyboard.type("Typed title")
    tab.page.keyboard.press("Enter")
    tab.page.wait_for_url("**/records/**")
    assert tab.page.get_by_role("status").is_visible()


def test_a_rebound_host_is_refused_by_the_real_server(nodes: Nodes) -> None:
    """The Host a browser sends after a DNS rebinding gets a 400 page, not the dashboard."""
    alice = nodes.start("alice")
    answer = httpx.get(alice.api + "/", headers={"Host": "rebind.example:4711"})
    assert answer.status_code == 400
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert httpx.get(alice.api + "/", headers={"Host": "localhost"}).status_code == 200


def test_screenshots_of_the_main_pages(
    nodes: Nodes, browser: Any, tabs: list[Tab], tmp_path: Path
) -> None:
    """Screenshots of the main pages of a small, plausible ledger: into the test's folder,
    and into docs/ when ``COMMONS_SCREENSHOTS`` names a folder (``scripts/screenshots``)."""
    alice = nodes.start("alice", display_name="Alice")
    now = int(time.time() * 1000)
    f = RecordFactory(now_ms=now - 70 * DAY_MS, step_ms=DAY_MS)
    project = f.project(
        "alice",
        name="Wikispeed",
        description="An open-hardware car, designed and built in the open.",
        license="CERN-OHL-S-2.0",
        links=("https://example.org/wikispeed",),
        maintainers=("carol",),
    )
    records: list[Record] = [project]
    records += [f.profile(n, name=n.capitalize()) for n in ("bob", "carol", "dave", "erin")]
    titles = ["Chassis CAD", "Crash structure", "Wiring harness", "Brake test rig", "Seat mounts"]
    for i, title in enumerate(titles * 3):
        who = ("bob", "dave", "erin", "bob")[i % 4]
        c = f.contribution(who, project, title=title, type="design", minutes=45 * (1 + i % 5))
        records.append(c)
        if i % 3 != 2:
            records.append(f.endorsement("carol", c, weight=1 + i % 3))
    path = tmp_path / "example.bundle"
    path.write_bytes(encode_bundle(r.raw for r in records))
    alice.cli("import", str(path))
    pid = project.id.hex()
    out = Path(os.environ.get("COMMONS_SCREENSHOTS") or tmp_path)
    tab = open_tab(tabs, browser, alice)
    shots = {
        "dashboard-home.png": "/",
        "dashboard-project.png": f"/projects/{pid}",
        "dashboard-record.png": f"/records/{records[5].id.hex()}",
        "dashboard-person.png": f"/people/{f.key('bob').peer_id}",
    }
    tab.page.set_viewport_size({"width": 1100, "height": 900})
    for name, page in shots.items():
        tab.page.goto(page)
        tab.page.screenshot(path=str(out / name), full_page=name == "dashboard-project.png")
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    dark = browser.new_context(base_url=alice.api, color_scheme="dark")
    try:
        page = dark.new_page()
        page.set_viewport_size({"width": 1100, "height": 900})
        page.goto(f"/projects/{pid}")
        background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        assert background == "rgb(13, 17, 23)"  # the dark scheme's, from the system setting
        page.screenshot(path=str(out / "dashboard-project-dark.png"))
    finally:
        dark.close()
    assert tab.errors == []
