"""A hostile tenant page in real Chromium, on a sibling subdomain of a logged-in dashboard:
its forged requests carry the session cookie (same site) and are refused; it cannot frame the
dashboard."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import PYTHON
from tests.e2e.conftest import Slum
from tests.e2e.dashboard_helpers import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, skip_reason

REASON = skip_reason()
pytestmark = [pytest.mark.browser, pytest.mark.skipif(REASON is not None, reason=REASON or "")]

# The tenant's app: every page tries what a hostile tenant would against the dashboard.
HOSTILE = r"""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TARGET = os.environ["TARGET"]
PAGE = f'''<!doctype html><html><body>
<iframe name="f1"></iframe><iframe name="f2"></iframe>
<iframe id="framed" src="{TARGET}/_/"></iframe>
<form id="stop" method="POST" target="f1" action="{TARGET}/_/api/instances/web:b/stop">
<input type="hidden" name="x" value="1"></form>
<form id="add" method="POST" target="f2" enctype="text/plain" action="{TARGET}/api/servers">
<input type="hidden" name='{{"address": "http://10.66.66.66:8080", "x": "' value='"}}'></form>
<script>document.getElementById("stop").submit(); document.getElementById("add").submit();
</script></body></html>'''.encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok" if self.path == "/health" else PAGE
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path != "/health" else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

CONFIG = """
[settings]
data_dir = "./data"
health_check_interval = 0.5

[service.web]
command = ["{python}", "hostile.py"]
health = "/health"
idle_timeout = 0

[service.web.env]
TARGET = "http://example.test:{port}"

[instances]
web = ["a", "b"]
"""


@pytest.fixture
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        executable = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
        browser = p.chromium.launch(
            executable_path=executable,
            args=[
                *CHROMIUM_ARGS,
                "--host-resolver-rules=MAP example.test 127.0.0.1, MAP *.example.test 127.0.0.1",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


def test_tenant_page_cannot_act_with_the_dashboard_session(slum: Slum, chromium: Any) -> None:
    (slum.dir / "hostile.py").write_text(HOSTILE)
    (slum.dir / "tenement.toml").write_text(CONFIG.format(python=PYTHON, port=slum.port))
    token = slum.cli("token-gen", "--database", str(slum.database), check=True).stdout.strip()
    slum.start("tenement.toml", "--domain", "example.test")

    def api(method: str, path: str) -> Any:
        status, _, raw = slum.http(
            method, path, host=f"example.test:{slum.port}", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == 200, (path, status, raw)
        return json.loads(raw)

    deadline = time.monotonic() + 20
    while not all(i["status"] == "healthy" for i in api("GET", "/_/api/instances")):
        assert time.monotonic() < deadline, api("GET", "/_/api/instances")
        time.sleep(0.2)

    dashboard = f"http://example.test:{slum.port}"
    context = chromium.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{dashboard}/_/login?next=/_/")
    page.get_by_test_id("login-token").fill(token)
    page.get_by_test_id("login-submit").click()
    page.wait_for_url(re.compile(re.escape(f"{dashboard}/_/") + r"(\?.*)?$"))
    assert any(c["name"].endswith("slum_session") for c in context.cookies(dashboard))
    # The dashboard itself still acts: a restart through its own UI code path (same origin).
    status = page.evaluate("""async () => (await fetch('/_/api/instances/web:a/restart',
        {method: 'POST'})).status""")
    assert status == 200

    attack = context.new_page()
    responses: list[tuple[str, int]] = []
    attack.on("response", lambda r: responses.append((r.url, r.status)))
    attack.goto(f"http://a.web.example.test:{slum.port}/")
    deadline = time.monotonic() + 15
    while sum(1 for url, _ in responses if "/api/" in url) < 2:
        assert time.monotonic() < deadline, responses
        attack.wait_for_timeout(100)
    forged = {url.split(str(slum.port), 1)[1]: code for url, code in responses if "/api/" in url}
    # 403, not 401: the cookie did ride along (same site), and the origin check refused it.
    assert forged == {"/_/api/instances/web:b/stop": 403, "/api/servers": 403}, forged
    # Nothing happened.
    assert api("GET", "/_/api/instances/web:b")["status"] == "healthy"
    assert [s["name"] for s in api("GET", "/api/servers")] == ["local"]
    # And the dashboard refused to be framed by the tenant's page.
    framed = [f for f in attack.frames if f is not attack.main_frame and f.name not in ("f1", "f2")]
    assert len(framed) == 1
    try:
        content = framed[0].content()
    except Exception:  # a blocked frame may not be readable at all
        content = ""
    assert "login-token" not in content and "/_/_app/" not in content
    context.close()
