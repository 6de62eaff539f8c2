"""The dashboard people keep open all day: crash loops obvious, light on the wire, readable in
both themes. A real chromium against a real `slum serve`; screenshots of each page in both themes
land in test-artifacts/screenshots/."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Slum
from tests.e2e.dashboard_helpers import (
    CONFIG,
    DESKTOP,
    PHONE,
    Browser,
    Node,
    launch,
    login,
    row,
    screenshot,
    skip_reason,
    start_node,
    wait_until,
)

REASON = skip_reason()
if REASON is None:
    from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

AXE = Path(__file__).resolve().parents[2] / "spa" / "node_modules" / "axe-core" / "axe.min.js"
# The targets: the overview's first load, and what an open tab costs per minute.
FIRST_LOAD_MAX = 100_000
PER_MINUTE_MAX = 50_000
# A crash loop reaches the page within this once slum knows it (stream + one summary fetch).
SHOWN_WITHIN_MS = 2000
PAGES = ["/", "/instances", "/instances/web:one", "/logs", "/servers", "/tenants", "/tenants/acme"]
# More instances than the default two, so the bytes measured are those of a real fleet.
EXTRA_WEB = ["three", "four", "five", "six"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch()


@pytest.fixture
def node(slum: Slum) -> Node:
    return start_node(slum)


@pytest.fixture
def looping(slum: Slum) -> Node:
    """A node whose `crash` service keeps crashing without being given up on soon."""
    return start_node(slum, CONFIG.replace("max_restarts = 2", "max_restarts = 1000"))


def new_page(
    browser: Browser,
    *,
    scheme: str = "dark",
    viewport: dict[str, int] | None = None,
    context: Any = None,
    bypass_csp: bool = False,
) -> Any:
    if context is None:
        context = browser.browser.new_context(
            viewport=viewport or DESKTOP, device_scale_factor=1, color_scheme=scheme, bypass_csp=bypass_csp
        )
        context.set_default_timeout(20_000)
    page = context.new_page()
    page.on("pageerror", lambda e: browser.errors.append(f"{page.url}: {e}"))
    return page


class ByteCounter:
    """Bytes that crossed the wire for one page (headers included, compressed as sent), from
    Chromium's own Network events: the per-chunk counts of open streams (SSE), replaced by the
    request's total when it finishes."""

    def __init__(self, page: Any) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Network.enable")
        self.cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        self.by_request: dict[str, int] = {}
        self.urls: dict[str, str] = {}
        self.cdp.on("Network.requestWillBeSent", self._sent)
        self.cdp.on("Network.dataReceived", self._data)
        self.cdp.on("Network.loadingFinished", self._finished)

    def _sent(self, e: dict[str, Any]) -> None:
        self.urls[e["requestId"]] = e["request"]["url"]

    def _data(self, e: dict[str, Any]) -> None:
        rid = e["requestId"]
        self.by_request[rid] = self.by_request.get(rid, 0) + int(e.get("encodedDataLength", 0))

    def _finished(self, e: dict[str, Any]) -> None:
        self.by_request[e["requestId"]] = max(
            int(e["encodedDataLength"]), self.by_request.get(e["requestId"], 0)
        )

    def total(self) -> int:
        return sum(self.by_request.values())

    def reset(self) -> None:
        self.by_request.clear()

    def biggest(self, n: int = 5) -> list[tuple[int, str]]:
        return sorted(((b, self.urls.get(r, r)) for r, b in self.by_request.items()), reverse=True)[:n]


def traffic(node: Node, stop: threading.Event) -> None:
    """A request a second to the applications, so charts, counters and logs move."""
    hosts = ["one.web.localhost", "two.web.localhost"]
    i = 0
    while not stop.is_set():
        req = urllib.request.Request(f"{node.base}/", headers={"Host": hosts[i % 2]})
        try:
            urllib.request.urlopen(req, timeout=5).read()
        except OSError:
            pass
        i += 1
        stop.wait(1.0)


@pytest.mark.browser
def test_a_crash_loop_is_shown_as_crash_looping_with_its_reason_first(
    looping: Node, browser: Browser
) -> None:
    node = looping
    page = new_page(browser)
    login(page, node, "/instances")
    expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")
    overview = new_page(browser, context=page.context)
    overview.goto(node.url("/"))
    expect(overview.get_by_test_id("attention-clear")).to_be_visible()

    status, _ = node.api("POST", "/_/api/instances", {"service": "crash", "id": "loop"})
    assert status in (200, 201), status
    # the loop has started once slum says so (the second crash within the window)
    wait_until(
        lambda: node.api("GET", "/_/api/instances/crash:loop")[1]["status"] == "crash-looping",
        "crash:loop crash-looping in the API",
        timeout=30,
    )
    looped_at = time.monotonic()
    expect(row(page, "crash:loop")).to_have_attribute("data-state", "crash-looping", timeout=SHOWN_WITHIN_MS)
    item = overview.locator('[data-testid="attention-item"][data-id="crash:loop"]')
    expect(item).to_contain_text("Crash-looping", timeout=SHOWN_WITHIN_MS)
    shown_s = time.monotonic() - looped_at
    print(f"crash loop shown on both pages {shown_s:.2f}s after the API said so")

    # it stays crash-looping between crashes, not Healthy or Starting
    seen = set()
    for _ in range(10):
        seen.add(node.api("GET", "/_/api/instances/crash:loop")[1]["status"])
        time.sleep(0.1)
    assert seen == {"crash-looping"}, seen

    # `slum ps` says it too
    ps = node.slum.cli("ps", check=True).stdout
    assert any("crash:loop" in line and "crash-looping" in line for line in ps.splitlines()), ps

    # the instance page: the reason, the last exit code and the last lines above the charts
    page.goto(node.url("/instances/crash:loop"))
    why = page.get_by_test_id("down-reason")
    expect(why).to_have_attribute("data-state", "crash-looping")
    expect(page.get_by_test_id("last-exit-code")).to_contain_text("3")
    expect(page.get_by_test_id("down-reason-text")).to_contain_text("exited with code 3")
    expect(page.get_by_test_id("down-last-lines")).to_contain_text("crashing on purpose")
    charts_top = page.get_by_test_id("instance-summary").bounding_box()["y"]
    assert why.bounding_box()["y"] < charts_top
    screenshot(page, "instance-crash-looping")

    # the alert engine opened a crash_loop alert: a count on the bell and in the tab title
    wait_until(lambda: node.api("GET", "/_/api/alerts")[1]["open"], "an open alert", timeout=60)
    page.reload()
    expect(page.get_by_test_id("alerts-count")).to_have_text(re.compile(r"[1-9]"))
    expect(page).to_have_title(re.compile(r"^\([1-9]\d*\) crash:loop"))
    page.get_by_test_id("alerts-bell").click()
    expect(page.get_by_test_id("alerts-panel")).to_contain_text("crash:loop")
    page.context.close()
    assert browser.errors == []


@pytest.mark.browser
def test_sleeping_and_stopped_read_differently(node: Node, browser: Browser) -> None:
    page = new_page(browser)
    node.api("POST", "/_/api/instances/web:two/stop")
    login(page, node, "/instances/web:two")
    why = page.get_by_test_id("down-reason")
    expect(why).to_have_attribute("data-state", "stopped")
    expect(why).to_contain_text("Stopped")
    expect(why).not_to_contain_text("Sleeping")
    page.context.close()


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


@pytest.mark.browser
def test_static_files_and_json_are_compressed(node: Node) -> None:
    status, head, body = _get(node.url("/"), **{"Accept-Encoding": "br, gzip"})
    assert status == 200 and head.get("content-encoding") == "br", head
    assert "Accept-Encoding" in head.get("vary", "")
    status, head, body = _get(node.url("/"), **{"Accept-Encoding": "gzip"})
    assert head.get("content-encoding") == "gzip"
    import gzip as gz

    assert b"<html" in gz.decompress(body)
    status, head, body = _get(node.url("/"))
    assert "content-encoding" not in head and b"<html" in body
    auth = {"Authorization": f"Bearer {node.token}"}
    status, head, body = _get(f"{node.base}/_/api/overview/summary", **{"Accept-Encoding": "gzip", **auth})
    assert head.get("content-encoding") == "gzip", head
    summary = json.loads(gz.decompress(body))
    assert summary["instances"] == 2 and len(summary["traffic"]["requests"]) == 120
    status, head, body = _get(f"{node.base}/_/api/overview/summary", **auth)
    assert "content-encoding" not in head and json.loads(body)["instances"] == 2

    # slum's own traffic (its API just now, the edge's 404 for an unknown host) is not an
    # application: the p99 card names only applications, and links only to instances
    for _ in range(3):
        node.slum.http("GET", "/", host="nobody.localhost")
    node.slum.http("GET", "/", host="one.web.localhost")
    summary = json.loads(_get(f"{node.base}/_/api/overview/summary", **auth)[2])
    assert summary["latency"]["target"] == "web:one", summary["latency"]
    assert summary["latency"]["instance"] == "web:one"


@pytest.mark.browser
def test_the_dashboard_is_light_on_the_wire(node: Node, browser: Browser) -> None:
    for name in EXTRA_WEB:
        node.api("POST", "/_/api/instances", {"service": "web", "id": name})
    stop = threading.Event()
    worker = threading.Thread(target=traffic, args=(node, stop), daemon=True)
    worker.start()
    try:
        first = new_page(browser)
        login(first, node, "/instances")
        # the first load of the overview in a new tab, nothing cached
        page = new_page(browser, context=first.context)
        counter = ByteCounter(page)
        page.goto(node.url("/"))
        expect(page.get_by_test_id("attention-clear")).to_be_visible()
        expect(page.get_by_test_id("top-cpu")).to_contain_text("web:")
        page.wait_for_timeout(1500)
        first_load = counter.total()
        print(f"overview first load: {first_load} bytes; biggest: {counter.biggest()}")
        assert first_load < FIRST_LOAD_MAX, counter.biggest()

        # a minute with the overview, the instances and an instance page open
        tabs = {"overview": (page, counter)}
        for name, path in (("instances", "/instances"), ("instance", "/instances/web:one")):
            tab = new_page(browser, context=first.context)
            tabs[name] = (tab, ByteCounter(tab))
            tab.goto(node.url(path))
        tabs["instances"][0].get_by_test_id("instance-row").first.wait_for()
        tabs["instance"][0].get_by_test_id("instance-summary").wait_for()
        page.wait_for_timeout(3000)
        for _, c in tabs.values():
            c.reset()
        started = time.monotonic()
        page.wait_for_timeout(60_000)
        minutes = (time.monotonic() - started) / 60
        per_minute = {name: round(c.total() / minutes) for name, (_, c) in tabs.items()}
        print(f"bytes per minute by open tab: {per_minute}")
        for name, (_, c) in tabs.items():
            print(f"  {name}: {c.biggest(4)}")
        for name, (_, c) in tabs.items():
            assert per_minute[name] < PER_MINUTE_MAX, (name, c.biggest())
        first.context.close()
    finally:
        stop.set()
        worker.join(5)
    assert browser.errors == []


def axe_serious(page: Any) -> list[dict[str, Any]]:
    assert AXE.is_file(), "axe-core is missing: cd spa && npm ci"
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
            .map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length,
                        sample: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ': '
                                + (n.failureSummary || '').slice(0, 160))}));
    }""")
    return list(result)


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_every_page_passes_axe_and_is_captured_in_both_themes(
    node: Node, browser: Browser, scheme: str
) -> None:
    node.api("POST", "/api/tenants", {"id": "acme", "service": "web"})
    # The dashboard's CSP admits no injected script: let the test's axe-core in (the policy
    # itself is tested in test_auth_browser.py).
    page = new_page(browser, scheme=scheme, bypass_csp=True)
    login(page, node, "/")
    found: dict[str, list[dict[str, Any]]] = {}
    for path in PAGES:
        page.goto(node.url(path))
        page.wait_for_load_state("networkidle") if path != "/logs" else None
        page.wait_for_timeout(1200)
        name = path.strip("/").replace("/", "-").replace(":", "-") or "overview"
        screenshot(page, f"{name}-{scheme}")
        violations = axe_serious(page)
        if violations:
            found[path] = violations
    counts = {p: sum(v["nodes"] for v in vs) for p, vs in found.items()}
    print(f"axe serious/critical ({scheme}): {counts or 0}")
    assert found == {}, json.dumps(found, indent=1)
    page.context.close()
    assert browser.errors == []


@pytest.mark.browser
def test_a_phone_sees_the_overview_and_the_instances(node: Node, browser: Browser) -> None:
    page = new_page(browser, viewport=PHONE)
    login(page, node, "/")
    expect(page.get_by_test_id("stat-instances")).to_contain_text("2")
    # nothing wider than the screen
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    screenshot(page, "overview-phone")
    page.get_by_test_id("nav-toggle").click()
    page.get_by_test_id("nav-instances").click()
    expect(row(page, "web:one")).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    screenshot(page, "instances-phone")
    page.context.close()
    assert browser.errors == []


@pytest.mark.browser
def test_tabs_show_slum_unreachable_and_recover_by_themselves(node: Node, browser: Browser) -> None:
    first = new_page(browser)
    login(first, node, "/")
    tabs = {"/": first}
    for path in ("/instances", "/logs"):
        tab = new_page(browser, context=first.context)
        tab.goto(node.url(path))
        tabs[path] = tab
    expect(first.get_by_test_id("stat-instances")).to_contain_text("2")

    node.slum.stop()
    for tab in tabs.values():
        expect(tab.get_by_test_id("unreachable-banner")).to_be_visible(timeout=30_000)
        # one banner, not the page's own error on top of it
        expect(tab.get_by_test_id("error-banner")).to_have_count(0)
    screenshot(first, "overview-unreachable")

    node.slum.start()
    # Sessions are stored: every tab comes back by itself, without a new login.
    for path, tab in tabs.items():
        tab.wait_for_url(node.url(path), timeout=30_000)
        expect(tab.get_by_test_id("unreachable-banner")).to_have_count(0)
    expect(first.get_by_test_id("stat-instances")).to_contain_text("2")
    first.context.close()
    assert browser.errors == []


DASH = "\u2013"  # what the dashboard shows for an unknown value
REMOTE_CONFIG = """
[settings]
data_dir = "./data"

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"
"""


@pytest.mark.browser
def test_the_whole_fleet_servers_instances_and_a_tenant_on_a_down_node(
    tmp_path: Path, browser: Browser
) -> None:
    from tests.conftest import free_port
    from tests.e2e.conftest import write_config

    remote = Slum(tmp_path / "remote", free_port())
    remote.dir.mkdir()
    write_config(remote.dir, REMOTE_CONFIG)
    remote_token = remote.cli("token-gen", "--database", str(remote.database), check=True).stdout.strip()
    remote.start()
    here = Slum(tmp_path / "here", free_port())
    here.dir.mkdir()
    try:
        node = start_node(here, CONFIG.replace("[settings]", "[settings]\nnode_check_interval = 0.3"))
        db = ["--database", str(here.database)]
        here.cli(
            "server-add", f"127.0.0.1:{remote.port}", "-n", "far", "--token", remote_token, *db, check=True
        )
        here.cli("tenant-add", "bob", "-s", "far", "--service", "web", *db, check=True)
        # the first request to the tenant starts its instance on the remote node
        wait_until(
            lambda: here.http("GET", "/", host="bob.localhost")[0] == 200,
            "bob answering through this node",
            timeout=30,
        )

        page = new_page(browser)
        login(page, node, "/servers")
        far = page.locator('[data-testid="server-row"]', has_text="far")
        expect(far.get_by_test_id("server-version")).not_to_have_text(DASH)
        expect(far.get_by_test_id("server-instances")).to_have_text("1")
        expect(far.get_by_test_id("server-load")).not_to_have_text(DASH)
        expect(far.get_by_test_id("server-last-seen")).to_contain_text("now")
        screenshot(page, "servers-fleet")

        page.goto(node.url("/instances"))
        expect(page.locator('[data-testid="instance-row"][data-server="far"]')).to_have_count(0)
        page.get_by_test_id("every-node").check()
        bob = page.locator('[data-testid="instance-row"][data-server="far"][data-instance-id="web:bob"]')
        expect(bob).to_be_visible()
        expect(row(page, "web:one")).to_be_visible()
        screenshot(page, "instances-every-node")

        page.goto(node.url("/logs"))
        page.get_by_test_id("logs-every-node").check()
        expect(page.locator('[data-testid="fleet-log-line"][data-server="far"]').first).to_contain_text(
            "web:bob"
        )
        expect(page.locator('[data-testid="fleet-log-line"][data-server="local"]').first).to_be_visible()
        screenshot(page, "logs-every-node")

        # a tenant on the remote node shows its instance as that node says it, on the list and
        # on its page, where its lines are read from that node and new ones follow
        page.goto(node.url("/tenants"))
        bob_row = page.locator('[data-testid="tenant-row"][data-tenant-id="bob"]')
        expect(bob_row.get_by_test_id("tenant-instance")).to_contain_text("Healthy")
        page.goto(node.url("/tenants/bob"))
        expect(page.get_by_test_id("tenant-instance")).to_contain_text("Healthy")
        expect(page.get_by_test_id("tenant-instance-server")).to_have_text("on far")
        expect(page.get_by_test_id("tenant-server")).to_contain_text("Online")
        expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")
        here.http("GET", "/from-the-dashboard-test", host="bob.localhost")
        expect(page.get_by_test_id("log-lines")).to_contain_text("GET /from-the-dashboard-test")
        screenshot(page, "tenant-on-a-remote-node")

        # the node's process dies for real (its instances with it)
        remote.stop(signal.SIGKILL)
        wait_until(
            lambda: (
                {s["name"]: s["status"] for s in node.api("GET", "/_/api/servers")[1]}.get("far") == "offline"
            ),
            "far offline",
            timeout=30,
        )
        # the open page follows: the server's status, and the log viewer says it cannot reach it
        expect(page.get_by_test_id("tenant-server-down")).to_contain_text("far", timeout=15_000)
        expect(page.get_by_test_id("tenant-status")).to_contain_text("server offline")
        expect(page.get_by_test_id("tenant-server")).to_contain_text("Offline")
        expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "unreachable")
        expect(page.get_by_test_id("log-unreachable")).to_contain_text("Cannot reach server far")
        expect(page.get_by_test_id("tenant-instance-error")).to_contain_text("far is offline")
        page.goto(node.url("/tenants/bob"))
        expect(page.get_by_test_id("tenant-server-down")).to_contain_text("far")
        expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "unreachable")
        expect(page.get_by_test_id("stream-state")).to_contain_text("Cannot reach the server")
        screenshot(page, "tenant-on-a-down-node")
        page.goto(node.url("/tenants"))
        expect(bob_row.get_by_test_id("tenant-status")).to_contain_text("Offline")
        expect(bob_row.get_by_test_id("tenant-instance")).to_contain_text("server offline")
        page.goto(node.url("/tenants/bob"))

        # rescue bob from the down node: moved here, after a confirmation
        page.get_by_test_id("tenant-move-to").select_option("local")
        page.get_by_test_id("tenant-move-submit").click()
        dialog = page.get_by_test_id("confirm-dialog")
        expect(dialog).to_contain_text("Move tenant bob to local?")
        page.get_by_test_id("confirm-button").click()
        expect(dialog).to_be_hidden()
        expect(page.get_by_test_id("tenant-server-down")).to_have_count(0)
        expect(page.get_by_test_id("tenant-status")).to_contain_text("Active")
        assert node.api("GET", "/_/api/tenants/bob")[1]["server"] == "local"
        wait_until(
            lambda: here.http("GET", "/", host="bob.localhost")[0] == 200,
            "bob answering from this node",
            timeout=30,
        )
        # moving back to the offline node is refused, and the dialog says why
        page.get_by_test_id("tenant-move-to").select_option("far")
        page.get_by_test_id("tenant-move-submit").click()
        page.get_by_test_id("confirm-button").click()
        expect(dialog).to_contain_text("server 'far' is offline")
        page.get_by_test_id("confirm-cancel").click()
        assert node.api("GET", "/_/api/tenants/bob")[1]["server"] == "local"
        page.goto(node.url("/servers"))
        expect(far.get_by_test_id("server-last-seen")).to_contain_text("no answer")
        page.context.close()
    finally:
        for s in (here, remote):
            if s.proc is not None and s.proc.poll() is None:
                s.stop()
    assert browser.errors == []


@pytest.mark.browser
def test_keyboard_palette_search_and_the_theme_toggle(node: Node, browser: Browser) -> None:
    page = new_page(browser)
    login(page, node, "/instances")
    expect(row(page, "web:one")).to_be_visible()
    # `/` focuses the page's search field
    page.locator("body").press("/")
    expect(page.get_by_test_id("instance-filter")).to_be_focused()
    page.keyboard.type("two")
    expect(page.get_by_test_id("instance-row")).to_have_count(1)
    # Ctrl-K jumps anywhere: an instance by part of its name
    page.keyboard.press("Escape")
    page.locator("body").click()
    page.keyboard.press("Control+k")
    expect(page.get_by_test_id("palette-input")).to_be_focused()
    page.keyboard.type("one")
    expect(page.get_by_test_id("palette-item").first).to_contain_text("web:one")
    page.keyboard.press("Enter")
    page.wait_for_url(node.url("/instances/web%3Aone"))
    expect(page.get_by_test_id("palette")).to_have_count(0)
    # a page without a search field: `/` opens the palette, which also lists pages
    page.goto(node.url("/servers"))
    # The layout is mounted (no server rendering: visible means its key handler is attached).
    expect(page.get_by_test_id("theme-toggle")).to_be_visible()
    page.locator("body").press("/")
    expect(page.get_by_test_id("palette-input")).to_be_focused()
    page.keyboard.type("tenants")
    page.keyboard.press("Enter")
    page.wait_for_url(node.url("/tenants"))

    # the system says dark; the toggle switches to light, and the choice survives a reload
    html = page.locator("html")
    expect(html).to_have_class(re.compile(r"\bdark\b"))
    page.get_by_test_id("theme-toggle").click()
    expect(html).to_have_class(re.compile(r"\blight\b"))
    page.reload()
    expect(html).to_have_class(re.compile(r"\blight\b"))
    bg = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert bg not in ("rgb(2, 6, 23)",), bg  # not slate-950
    page.context.close()
    assert browser.errors == []


@pytest.mark.browser
def test_a_fresh_server_says_what_is_configured_and_how_to_spawn_it(slum: Slum, browser: Browser) -> None:
    node = start_node(slum, CONFIG.split("[instances]")[0])
    page = new_page(browser)
    login(page, node, "/")
    card = page.get_by_test_id("first-run")
    expect(card).to_contain_text("3 services")
    for service in ("crash", "tick", "web"):
        expect(card).to_contain_text(service)
    expect(card).to_contain_text("slum spawn")
    screenshot(page, "overview-first-run")
    page.context.close()
    assert browser.errors == []


TRACES_CONFIG = CONFIG.replace(
    "[instances]",
    """[service.traces]
command = ["{python}", "{children}/traces.py"]
startup_timeout = 10

[instances]""",
)


@pytest.mark.browser
def test_a_python_traceback_is_one_error_entry_in_the_log_viewer(slum: Slum, browser: Browser) -> None:
    node = start_node(slum, TRACES_CONFIG)
    status, _ = node.api("POST", "/_/api/instances", {"service": "traces", "id": "py"})
    assert status in (200, 201), status
    # the line after the trace is written last: once it is stored, the trace is too
    wait_until(
        lambda: node.api("GET", "/_/api/logs?instance_id=traces:py&search=after")[1],
        "the line after the trace stored",
        timeout=30,
    )

    page = new_page(browser)
    login(page, node, "/logs?instance=traces:py")
    lines = page.get_by_test_id("log-line")
    expect(lines.filter(has_text="after the trace")).to_have_count(1)
    trace = lines.filter(has_text="Traceback (most recent call last)")
    # one entry holds the whole trace, from its header to the exception, at level error
    expect(trace).to_have_count(1)
    expect(trace).to_have_attribute("data-level", "error")
    expect(trace).to_contain_text("in place_order")
    expect(trace).to_contain_text("return items[3]")
    expect(trace).to_contain_text("IndexError: list index out of range")
    # no frame or exception line shows as a row of its own
    expect(lines.filter(has_text="in place_order")).to_have_count(1)
    expect(lines.filter(has_text="IndexError")).to_have_count(1)
    # the lines around it stay their own entries, not glued to the trace
    expect(trace).not_to_contain_text("before the trace")
    expect(trace).not_to_contain_text("after the trace")
    expect(lines.filter(has_text="before the trace")).to_have_count(1)
    screenshot(page, "logs-traceback")
    page.context.close()
    assert browser.errors == []


def _spans(page: Any) -> list[tuple[int, int] | None]:
    """The time span each chart of the instance page draws (ms), read at one moment."""
    raw = page.evaluate("""() => ['cpu', 'memory', 'requests'].map((n) => {
        const f = document.querySelector(`[data-testid="chart-${n}"]`);
        const lo = f?.getAttribute('data-x-min'), hi = f?.getAttribute('data-x-max');
        return lo && hi ? [Number(lo), Number(hi)] : null;
    })""")
    return [(int(s[0]), int(s[1])) if s else None for s in raw]


def _shared_span(page: Any) -> tuple[int, int] | None:
    """The one span every chart draws, or None while they differ (or are not drawn)."""
    spans = set(_spans(page))
    return spans.pop() if len(spans) == 1 else None


def _width(span: tuple[int, int] | None) -> int:
    return -1 if span is None else span[1] - span[0]


@pytest.mark.browser
def test_charts_share_one_time_axis_and_zoom_by_dragging(node: Node, browser: Browser) -> None:
    for _ in range(3):  # so that the requests chart has something to draw
        assert node.slum.http("GET", "/", host="one.web.localhost")[0] == 200
    page = new_page(browser)
    login(page, node, "/instances/web:one")
    wait_until(lambda: all(_spans(page)), "the charts drawn", timeout=30)
    wait_until(lambda: _shared_span(page), "one time span for every chart", timeout=10)
    lo, hi = _spans(page)[0] or (0, 0)
    assert hi - lo >= 60_000, (lo, hi)

    # drag across the middle of the CPU chart: every chart zooms to that span
    box = page.get_by_test_id("chart-cpu").locator(".u-over").bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    page.mouse.up()
    expect(page.get_by_test_id("chart-zoom-reset")).to_be_visible()
    wait_until(
        lambda: 0 < _width(_shared_span(page)) < (hi - lo) * 0.5,
        "every chart zoomed to the dragged span",
        timeout=10,
    )
    zlo, zhi = _spans(page)[0] or (0, 0)
    assert lo < zlo < zhi < hi + 10_000, (lo, hi, zlo, zhi)
    screenshot(page, "instance-charts-zoomed")
    # new samples keep arriving; the zoom holds
    time.sleep(6)
    assert _spans(page)[1] == (zlo, zhi)

    # a double-click on another chart zooms every chart back out
    page.get_by_test_id("chart-memory").locator(".u-over").dblclick()
    expect(page.get_by_test_id("chart-zoom-reset")).to_have_count(0)
    # each chart on its own: a new sample can land between two charts' redraws, so one shared
    # span at one instant is what the first wait checks, not this one
    wait_until(
        lambda: all(_width(s) >= (hi - lo) * 0.95 for s in _spans(page)),
        "every chart back to the whole span",
        timeout=15,
    )
    page.context.close()
    assert browser.errors == []


@pytest.mark.browser
def test_add_and_remove_a_domain_alias_on_the_tenant_page(node: Node, browser: Browser) -> None:
    node.api("POST", "/api/tenants", {"id": "shop", "service": "web"})
    node.api("POST", "/api/tenants", {"id": "rival", "service": "web"})
    alias = "shop.example.test"

    def status_of(host: str) -> int:
        return node.slum.http("GET", "/", host=host)[0]

    assert status_of(alias) != 200
    page = new_page(browser)
    login(page, node, "/tenants/shop")
    expect(page.get_by_test_id("aliases-empty")).to_be_visible()
    # a bad domain is refused before it is sent
    page.get_by_test_id("alias-domain").fill("https://shop.example.test/x")
    page.get_by_test_id("alias-add").click()
    expect(page.locator("#alias-domain-help")).to_contain_text("without http://")
    page.get_by_test_id("alias-domain").fill("Shop.Example.TEST")
    page.get_by_test_id("alias-add").click()
    expect(page.locator(f'[data-testid="alias"][data-domain="{alias}"]')).to_be_visible()
    assert node.api("GET", "/_/api/tenants/shop")[1]["aliases"] == [alias]
    wait_until(lambda: status_of(alias) == 200, f"{alias} routed to shop", timeout=15)
    screenshot(page, "tenant-aliases")

    # another tenant cannot take it: the server's 409 is what the user reads
    page.goto(node.url("/tenants/rival"))
    page.get_by_test_id("alias-domain").fill(alias)
    page.get_by_test_id("alias-add").click()
    expect(page.get_by_test_id("alias-error")).to_contain_text("is taken")
    assert node.api("GET", "/_/api/tenants/rival")[1]["aliases"] == []

    page.goto(node.url("/tenants/shop"))
    page.locator(f'[data-testid="alias"][data-domain="{alias}"]').get_by_test_id("alias-remove").click()
    expect(page.get_by_test_id("aliases-empty")).to_be_visible()
    assert node.api("GET", "/_/api/tenants/shop")[1]["aliases"] == []
    wait_until(lambda: status_of(alias) != 200, f"{alias} no longer routed", timeout=15)
    page.context.close()
    assert browser.errors == []


@pytest.mark.browser
def test_a_tenant_on_a_server_with_an_invalid_address_says_so(node: Node, browser: Browser) -> None:
    from slum.store import connect
    from slum.store.registry import bump_version

    # a row written by hand (or before addresses were parsed fully): shown, never called
    conn = connect(node.slum.database)
    with conn:
        conn.execute(
            "INSERT INTO servers (id, name, address, created_at, status) "
            "VALUES ('bad1', 'broken', 'http://a:b:c', '2026-01-01', 'online')"
        )
        conn.execute(
            "INSERT INTO tenants (id, server_id, status, created_at) "
            "VALUES ('stranded', 'bad1', 'active', '2026-01-01')"
        )
        bump_version(conn)
    conn.close()
    page = new_page(browser)
    login(page, node, "/tenants")
    stranded = page.locator('[data-testid="tenant-row"][data-tenant-id="stranded"]')
    expect(stranded.get_by_test_id("tenant-status")).to_contain_text("Invalid address")
    expect(stranded.get_by_test_id("tenant-instance")).to_contain_text("server invalid")
    page.goto(node.url("/tenants/stranded"))
    banner = page.get_by_test_id("tenant-server-down")
    expect(banner).to_contain_text("broken")
    expect(banner).to_contain_text("address that does not parse")
    expect(page.get_by_test_id("tenant-status")).to_contain_text("Down (server invalid address)")
    expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "unreachable")
    expect(page.get_by_test_id("log-unreachable")).to_contain_text("Cannot reach server broken")
    page.goto(node.url("/servers"))
    row_ = page.locator('[data-testid="server-row"]', has_text="broken")
    expect(row_.get_by_test_id("server-status")).to_contain_text("Invalid address")
    page.context.close()
    assert browser.errors == []
