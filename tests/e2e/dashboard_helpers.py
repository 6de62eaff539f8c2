"""The dashboard in a real browser: Debian's chromium driven by Playwright, against a real
`slum serve` with real instances. Shared by tests/e2e/test_dashboard.py."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slum.web.dashboard import STATIC
from tests.e2e.conftest import Slum, write_config

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 20_000

CONFIG = """
[settings]
data_dir = "./data"
health_check_interval = 0.5
max_restarts = 2
restart_window = 60
backoff_base_ms = 100
backoff_max_ms = 400
stop_grace_s = 2

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"
startup_timeout = 10
idle_timeout = 0

[service.web.env]
DATA_DIR = "{{data_dir}}/{{name}}/{{id}}"
GREETING = "hello"

[service.crash]
command = ["{python}", "{children}/crash.py"]
startup_timeout = 5

[service.tick]
command = ["{python}", "{children}/chatty.py"]
[service.tick.env]
MODE = "tick"

[instances]
web = ["one", "two"]
"""


def skip_reason() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not (STATIC / "index.html").is_file():
        return "dashboard not built: run `make spa` (cd spa && npm ci && npm run build)"
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        return "chromium is missing: apt-get install -y chromium"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed in this environment"
    return None


@dataclass
class Node:
    """A running slum with a dashboard token, and helpers to reach it."""

    slum: Slum
    token: str
    base: str = field(init=False)

    def __post_init__(self) -> None:
        self.base = f"http://127.0.0.1:{self.slum.port}"

    def url(self, path: str) -> str:
        return f"{self.base}/_{path}"

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        status, _, raw = self.slum.http(
            method,
            path,
            body=data,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        return status, json.loads(raw) if raw else None

    def restart_server(self) -> None:
        """Stop and start slum on the same port and database (sessions survive it)."""
        assert self.slum.stop() == 0
        self.slum.start()


def start_node(slum: Slum, config: str = CONFIG) -> Node:
    write_config(slum.dir, config)
    token = slum.cli("token-gen", "--database", str(slum.database), check=True).stdout.strip()
    assert token.startswith("slum_"), token
    slum.start()
    node = Node(slum, token)
    wait_until(
        lambda: all(i["status"] == "healthy" for i in node.api("GET", "/_/api/instances")[1]),
        "web:one and web:two healthy",
    )
    return node


def wait_until(check: Any, what: str, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, KeyError, TypeError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Browser:
    """One chromium for the module; a fresh context (cookies, viewport) per test."""

    playwright: Any
    browser: Any
    errors: list[str] = field(default_factory=list)

    def page(self, viewport: dict[str, int] | None = None) -> Any:
        context = self.browser.new_context(
            viewport=viewport or DESKTOP, device_scale_factor=1, color_scheme="dark"
        )
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        return page


def launch() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        executable = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield Browser(p, browser)
        finally:
            browser.close()


def login(page: Any, node: Node, path: str = "/") -> None:
    """Log in through the form, landing on `path`."""
    page.goto(node.url(f"/login?next=/_{path}"))
    page.get_by_test_id("login-token").fill(node.token)
    page.get_by_test_id("login-submit").click()
    page.wait_for_url(re.compile(re.escape(node.url(path.split("?")[0])) + r"(\?.*)?$"))


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


def row(page: Any, instance_id: str) -> Any:
    return page.locator(f'[data-testid="instance-row"][data-instance-id="{instance_id}"]')
