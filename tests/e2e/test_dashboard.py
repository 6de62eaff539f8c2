"""The dashboard as a sysadmin meets it: a real chromium against a real `slum serve` with real
instances. Screenshots of each page land in test-artifacts/screenshots/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Slum
from tests.e2e.dashboard_helpers import (
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch()


@pytest.fixture
def node(slum: Slum) -> Node:
    return start_node(slum)


@pytest.fixture
def page(browser: Browser) -> Iterator[Any]:
    browser.errors.clear()
    p = browser.page()
    yield p
    p.context.close()
    assert browser.errors == [], "uncaught errors in the page"


def confirm(page: Any) -> None:
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_test_id("confirm-button").click()
    expect(dialog).to_be_hidden()


@pytest.mark.browser
def test_login_refuses_a_wrong_token_and_accepts_the_right_one(node: Node, page: Any) -> None:
    page.goto(node.url("/instances"))
    # not logged in: the login page, remembering where we were going
    page.wait_for_url(re.compile(r"/_/login\?next="))
    expect(page.get_by_test_id("login-token")).to_be_focused()
    screenshot(page, "login")

    page.get_by_test_id("login-token").fill("slum_" + "x" * 43)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("not accepted")
    assert "/login" in page.url

    page.get_by_test_id("login-token").fill(node.token)
    page.get_by_test_id("login-submit").click()
    page.wait_for_url(node.url("/instances"))
    expect(row(page, "web:one")).to_be_visible()


@pytest.mark.browser
def test_the_instance_list_shows_the_configured_instances(node: Node, page: Any) -> None:
    login(page, node, "/instances")
    rows = page.get_by_test_id("instance-row")
    expect(rows).to_have_count(2)
    for ref in ("web:one", "web:two"):
        expect(row(page, ref)).to_have_attribute("data-state", "healthy")
        expect(row(page, ref).get_by_test_id("instance-status")).to_contain_text("Healthy")
    expect(page.get_by_test_id("instance-count")).to_contain_text("2 instances")
    # the state filter narrows the table, and the URL keeps it
    page.get_by_test_id("state-filter").select_option("stopped")
    expect(rows).to_have_count(0)
    expect(page.get_by_test_id("instances-empty")).to_contain_text("No instance matches")
    assert "state=stopped" in page.url


@pytest.mark.browser
def test_stop_with_confirmation_then_restart_and_see_it_live(node: Node, page: Any) -> None:
    login(page, node, "/instances")
    expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")
    one = row(page, "web:one")
    expect(one).to_have_attribute("data-state", "healthy")

    # cancelling changes nothing
    one.get_by_test_id("stop-button").click()
    page.get_by_test_id("confirm-cancel").click()
    expect(page.get_by_test_id("confirm-dialog")).to_be_hidden()
    assert node.api("GET", "/_/api/instances/web:one")[1]["status"] == "healthy"

    one.get_by_test_id("stop-button").click()
    expect(page.get_by_test_id("confirm-dialog")).to_contain_text("Stop web:one?")
    confirm(page)
    expect(one).to_have_attribute("data-state", "stopped")
    expect(one.get_by_test_id("stop-button")).to_be_disabled()

    one.get_by_test_id("restart-button").click()
    confirm(page)
    expect(one).to_have_attribute("data-state", "healthy")
    expect(one.get_by_test_id("instance-status")).to_contain_text("Healthy")

    # a change made elsewhere (the API, the CLI) shows up without a reload, from the stream
    started = time.monotonic()
    status, _ = node.api("POST", "/_/api/instances/web:two/stop")
    assert status == 200
    expect(row(page, "web:two")).to_have_attribute("data-state", "stopped", timeout=4000)
    assert time.monotonic() - started < 4


@pytest.mark.browser
def test_spawn_from_the_form_refuses_a_bad_id(node: Node, page: Any) -> None:
    login(page, node, "/instances")
    page.get_by_test_id("spawn-open").click()
    form = page.get_by_test_id("spawn-form")
    form.get_by_test_id("spawn-service").fill("web")
    form.get_by_test_id("spawn-id").fill("Bad_ID")
    expect(form.get_by_test_id("spawn-id-help")).to_contain_text("lowercase")
    form.get_by_test_id("spawn-submit").click()
    expect(form.get_by_test_id("spawn-id")).to_have_attribute("aria-invalid", "true")
    time.sleep(0.5)
    assert len(node.api("GET", "/_/api/instances")[1]) == 2, "a refused id must not be sent"

    form.get_by_test_id("spawn-id").fill("three")
    expect(form.get_by_test_id("spawn-id")).not_to_have_attribute("aria-invalid", "true")
    form.get_by_test_id("spawn-submit").click()
    expect(row(page, "web:three")).to_have_attribute("data-state", "healthy")
    expect(page.get_by_test_id("instance-row")).to_have_count(3)


@pytest.mark.browser
def test_a_crashing_instance_shows_as_failed_in_attention(node: Node, page: Any) -> None:
    login(page, node, "/instances")
    page.get_by_test_id("spawn-open").click()
    page.get_by_test_id("spawn-service").fill("crash")
    page.get_by_test_id("spawn-id").fill("boom")
    page.get_by_test_id("spawn-submit").click()
    expect(row(page, "crash:boom")).to_be_visible()
    wait_until(
        lambda: node.api("GET", "/_/api/instances/crash:boom")[1]["status"] == "failed", "crash:boom failed"
    )

    page.get_by_test_id("nav-overview").click()
    item = page.locator('[data-testid="attention-item"][data-id="crash:boom"]')
    expect(item).to_contain_text("Failed")
    expect(page.get_by_test_id("stat-unhealthy")).to_contain_text("1")
    # from there to its page, where the state history tells the story
    item.get_by_role("link", name="crash:boom").click()
    page.wait_for_url(re.compile(r"/_/instances/crash(%3A|:)boom$"))
    expect(page.get_by_test_id("instance-status")).to_have_attribute("data-state", "failed")
    expect(page.get_by_test_id("state-history")).to_contain_text("Backoff")
    expect(page.get_by_test_id("log-lines")).to_contain_text("crashing on purpose")


@pytest.mark.browser
def test_search_logs_and_filter_by_level(node: Node, page: Any) -> None:
    login(page, node, "/logs")
    search = page.get_by_test_id("log-search")
    search.fill("listening")
    search.press("Enter")
    expect(page).to_have_url(re.compile(r"search=listening"))
    lines = page.get_by_test_id("log-line")
    expect(lines.filter(has_text="listening on").first).to_be_visible()
    expect(page.locator("mark").first).to_have_text(re.compile("listening", re.I))
    expect(lines.filter(has_not_text="listening")).to_have_count(0)

    search.fill("")
    search.press("Enter")
    page.get_by_test_id("log-level").select_option("warn")
    expect(page).to_have_url(re.compile(r"level=warn"))
    expect(lines.filter(has_text="a warning on stderr").first).to_be_visible()
    below = page.locator('[data-testid="log-line"]:not([data-level="warn"]):not([data-level="error"])')
    expect(below).to_have_count(0)


@pytest.mark.browser
def test_a_deep_link_follows_new_lines_live(node: Node, page: Any) -> None:
    login(page, node, "/logs?instance=web:one")
    expect(page.get_by_test_id("log-instance")).to_have_value("web:one")
    expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")
    status, _, body = node.slum.http("GET", "/hello-from-the-browser-test", host="one.web.localhost")
    assert status == 200, body
    line = page.get_by_test_id("log-line").filter(has_text="GET /hello-from-the-browser-test")
    expect(line).to_have_count(1)
    # only web:one's lines
    sources = {
        t.strip()
        for t in page.get_by_test_id("log-lines").locator("button[title^='Show only']").all_inner_texts()
    }
    assert sources <= {"web:one"}

    # paused: new lines wait; resumed: they arrive, once each
    page.get_by_test_id("live-toggle").click()
    expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "off")
    node.slum.http("GET", "/while-paused", host="one.web.localhost")
    time.sleep(0.6)
    expect(page.get_by_test_id("log-line").filter(has_text="GET /while-paused")).to_have_count(0)
    page.get_by_test_id("live-toggle").click()
    expect(page.get_by_test_id("log-line").filter(has_text="GET /while-paused")).to_have_count(1)


@pytest.mark.browser
def test_load_older_lines_and_hold_the_view_while_scrolled_up(node: Node, page: Any) -> None:
    assert node.api("POST", "/_/api/instances", {"service": "tick", "id": "a"})[0] == 201
    wait_until(
        lambda: len(node.api("GET", "/_/api/logs?instance_id=tick:a&limit=300")[1]) >= 250,
        "250 lines from tick:a",
        timeout=40,
    )
    login(page, node, "/logs?instance=tick:a")
    expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")
    lines = page.get_by_test_id("log-line")
    expect(lines.first).to_be_visible()
    first_id = int(lines.first.get_attribute("data-log-id"))
    # scrolled up, the view holds still and counts what came in meanwhile
    page.get_by_test_id("log-lines").evaluate("el => el.scrollTo(0, 0)")
    expect(page.get_by_test_id("new-lines")).to_contain_text("new line")
    held = lines.count()
    page.wait_for_timeout(600)
    assert lines.count() == held
    # older history on demand, above what is shown
    page.get_by_test_id("load-older").click()
    expect(lines.filter(has_text=re.compile(r"tick 0\s*$"))).to_have_count(1)
    assert int(lines.first.get_attribute("data-log-id")) < first_id
    assert lines.count() > held
    # and back to the newest lines
    page.get_by_test_id("new-lines").click()
    expect(page.get_by_test_id("new-lines")).to_be_hidden()


@pytest.mark.browser
def test_logout_and_an_expired_session_return_to_login(node: Node, page: Any) -> None:
    login(page, node, "/")
    page.get_by_test_id("logout").click()
    page.wait_for_url(re.compile(r"/_/login"))
    expect(page.get_by_test_id("login-message")).to_contain_text("logged out")
    page.goto(node.url("/instances"))
    page.wait_for_url(re.compile(r"/_/login"))

    login(page, node, "/instances")
    expect(row(page, "web:one")).to_be_visible()
    node.restart_server()  # sessions are stored (hashed) in the database: this one survives
    page.reload()
    expect(row(page, "web:one")).to_be_visible()
    assert "/login" not in page.url
    # Revoking the token ends its sessions at once.
    db = str(node.slum.database)
    fresh = node.slum.cli("token-gen", "--database", db, check=True).stdout.strip()
    node.slum.cli("token-revoke", node.token.split("_")[1], "--database", db, check=True)
    page.wait_for_url(re.compile(r"/_/login\?.*expired=1"), timeout=30_000)
    expect(page.get_by_test_id("login-message")).to_contain_text("expired")
    # logging in again goes back to where the user was
    page.get_by_test_id("login-token").fill(fresh)
    page.get_by_test_id("login-submit").click()
    page.wait_for_url(node.url("/instances"))


@pytest.mark.browser
def test_a_phone_sized_screen_has_no_horizontal_scroll(node: Node, browser: Browser) -> None:
    page = browser.page(PHONE)
    try:
        login(page, node, "/instances")
        expect(row(page, "web:one")).to_have_attribute("data-state", "healthy")
        for path in ("/instances", "/", "/logs", "/instances/web:one"):
            page.goto(node.url(path))
            page.wait_for_timeout(800)
            width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"{path} scrolls sideways: {width}"
        page.goto(node.url("/instances"))
        expect(row(page, "web:one")).to_be_visible()
        screenshot(page, "instances-phone")
        # the menu opens and navigates
        page.get_by_test_id("nav-toggle").click()
        page.get_by_test_id("nav-logs").click()
        page.wait_for_url(node.url("/logs"))
    finally:
        page.context.close()
    assert browser.errors == []


@pytest.mark.browser
def test_screenshots_of_each_page(node: Node, page: Any) -> None:
    """A lived-in node: traffic, a tenant, a second server, a crashed instance."""
    assert node.api("POST", "/api/tenants", {"id": "acme", "service": "web"})[0] == 201
    assert node.api("POST", "/api/servers", {"address": "10.0.0.2:8080", "name": "eu-2"})[0] == 201
    for i in range(30):
        node.slum.http("GET", f"/page/{i % 5}", host="one.web.localhost")
        node.slum.http("GET", "/", host="acme.localhost")
    node.api("POST", "/_/api/instances", {"service": "crash", "id": "boom"})
    wait_until(
        lambda: node.api("GET", "/_/api/instances/crash:boom")[1]["status"] == "failed", "crash:boom failed"
    )
    time.sleep(1.5)  # a second of the sampler's CPU and memory readings

    login(page, node, "/")
    expect(page.locator('[data-testid="attention-item"][data-id="crash:boom"]')).to_be_visible()
    expect(page.get_by_test_id("traffic-requests")).not_to_contain_text("No requests yet")
    screenshot(page, "overview")

    page.get_by_test_id("nav-instances").click()
    expect(page.get_by_test_id("instance-row")).to_have_count(4)
    expect(row(page, "web:one").get_by_test_id("instance-rps")).not_to_have_text("—")
    screenshot(page, "instances")

    row(page, "web:one").get_by_test_id("instance-link").click()
    expect(page.get_by_test_id("instance-config")).to_contain_text("web.py")
    expect(page.get_by_test_id("instance-url")).to_contain_text("http://one.web.localhost")
    expect(page.get_by_test_id("chart-memory").locator("canvas")).to_be_visible()
    expect(page.get_by_test_id("chart-requests").locator("canvas")).to_be_visible()
    expect(page.get_by_test_id("log-line").first).to_be_visible()
    screenshot(page, "instance-detail")
    page.get_by_test_id("range-24h").click()
    expect(page.get_by_test_id("range-24h")).to_have_attribute("aria-pressed", "true")

    page.get_by_test_id("nav-logs").click()
    page.wait_for_url(node.url("/logs"))
    expect(page.get_by_test_id("log-instance")).to_be_visible()
    expect(page.get_by_test_id("stream-state")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("log-line").first).to_be_visible()
    screenshot(page, "logs")

    page.get_by_test_id("nav-servers").click()
    expect(page.get_by_test_id("server-row")).to_have_count(2)
    screenshot(page, "servers")

    page.get_by_test_id("nav-tenants").click()
    tenant = page.locator('[data-testid="tenant-row"][data-tenant-id="acme"]')
    expect(tenant).to_contain_text("local")
    expect(tenant.get_by_test_id("tenant-instance")).to_contain_text("Healthy")
    screenshot(page, "tenants")


@pytest.mark.browser
def test_set_an_instances_traffic_weight_on_its_page(node: Node, page: Any) -> None:
    login(page, node, "/instances/web:one")
    form = page.get_by_test_id("weight-form")
    field = page.get_by_test_id("weight-input")
    expect(field).to_have_value("100")
    field.fill("30")
    form.get_by_role("button", name="Set").click()
    wait_until(
        lambda: node.api("GET", "/_/api/instances/web:one")[1]["weight"] == 30, "the weight to be saved"
    )
    expect(field).to_have_value("30")
    field.fill("250")
    form.get_by_role("button", name="Set").click()
    assert node.api("GET", "/_/api/instances/web:one")[1]["weight"] == 30  # refused
