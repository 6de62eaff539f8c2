"""The dashboard of a router whose shared registry (etcd) goes out of reach: every page says
so, and says it no more once etcd is back. Real etcd, real slum, real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Slum
from tests.e2e.dashboard_helpers import CONFIG, Browser, launch, login, screenshot, skip_reason
from tests.e2e.dashboard_helpers import wait_until as wait_for
from tests.fleet.etcd_cluster import EtcdCluster, needs_etcd

REASON = skip_reason()
if REASON is None:
    from playwright.sync_api import expect

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_etcd,
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    yield from launch()


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdCluster]:
    (tmp_path / "etcd").mkdir()
    cluster = EtcdCluster(tmp_path / "etcd", size=1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _open_registry_alerts(node: object) -> list[str]:
    _, answer = node.api("GET", "/_/api/alerts")  # type: ignore[attr-defined]
    return [a["message"] for a in answer["open"] if a["event"] == "registry_down"]


def test_every_page_says_when_the_registry_is_out_of_reach(
    slum: Slum, etcd: EtcdCluster, browser: Browser
) -> None:
    from tests.e2e.dashboard_helpers import start_node

    config = CONFIG.replace("[settings]\n", f'[settings]\nregistry = "{etcd.registry_url}"\n', 1)
    node = start_node(slum, config)
    page = browser.page()
    login(page, node, "/")
    expect(page.get_by_test_id("registry-banner")).to_have_count(0)

    etcd.members[0].kill()
    wait_for(lambda: _open_registry_alerts(node), "the registry_down alert", timeout=30)
    for path in ("/", "/tenants"):
        page.goto(node.url(path))
        banner = page.get_by_test_id("registry-banner")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("cannot be reached")
        expect(banner).to_contain_text("last known table")
    screenshot(page, "registry-degraded")

    etcd.members[0].start()
    wait_for(lambda: not _open_registry_alerts(node), "the registry back", timeout=60)
    page.goto(node.url("/"))
    expect(page.get_by_test_id("registry-banner")).to_have_count(0)
    page.context.close()
    assert browser.errors == []
