"""Alerts through a real `slum serve`: a crash loop posts one alert and, once the instance has
stayed healthy, one recovery to a real local receiver; both show in /_/api/alerts and
`slum status`."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Slum, write_config
from tests.e2e.test_spine import wait_for
from tests.test_alerts import Receiver

CONFIG = """
[settings]
data_dir = "./data"
health_check_interval = 0.5
max_restarts = 10
restart_window = 20
backoff_base_ms = 100
backoff_max_ms = 200
stop_grace_s = 2

[service.flaky]
command = ["{python}", "{children}/crash_then_serve.py"]
health = "/health"

[service.flaky.env]
CRASHES = "4"
DATA_DIR = "{{data_dir}}/{{name}}/{{id}}"

[instances]
flaky = ["one"]

[[alerts]]
url = "URL"
format = "json"
min_interval = 60
"""


@pytest.mark.slow
def test_a_crash_loop_posts_one_alert_and_one_recovery(slum: Slum) -> None:
    receiver = Receiver()
    try:
        write_config(slum.dir, CONFIG.replace("URL", receiver.url))
        slum.start()
        wait_for(lambda: len(receiver.posts) >= 1, timeout=30)
        # The state machine's own state: `status` reads crash-looping until the process has
        # stayed up a while.
        wait_for(lambda: slum.cli_json("ps")[0]["state"] == "healthy", timeout=30)
        # Healthy for a quarter of restart_window, then the next check says it recovered.
        wait_for(lambda: len(receiver.posts) >= 2, timeout=45)
        time.sleep(1.5)  # nothing more comes
        bodies = receiver.json()
        assert [(b["event"], b["subject"], b["status"]) for b in bodies] == [
            ("crash_loop", "flaky:one", "firing"),
            ("crash_loop", "flaky:one", "resolved"),
        ]
        # Fired when the instance reads crash-looping (its second failure within the window).
        assert re.search(r"restarted [23] times within 20s", bodies[0]["message"])
        assert bodies[0]["title"] == "instance crash-looping: flaky:one"

        listed = slum.cli_json("status")["alerts"]
        assert [(a["status"], a["event"]) for a in listed["alerts"]] == [
            ("resolved", "crash_loop"),
            ("firing", "crash_loop"),
        ]
        assert listed["open"] == [] and listed["webhooks"] == 1
        assert listed["statistics"]["sent"] == 2
        assert all(a["deliveries"] == {receiver.url.split("/")[2]: "sent"} for a in listed["alerts"])
        text = slum.cli("status", check=True).stdout
        assert "alerts:    0 open" in text
        assert "resolved crash_loop flaky:one" in text and "firing   crash_loop flaky:one" in text

        # Over the network the list needs a token, like the rest of /_/api.
        status, _, _ = slum.http("GET", "/_/api/alerts")
        assert status in (401, 503)
    finally:
        receiver.close()


NODE_CONFIG = """
[settings]
node_check_interval = 0.2

[[alerts]]
url = "URL"
format = "json"
events = ["node_offline"]
min_interval = 0
"""


@pytest.mark.slow
def test_a_node_going_offline_and_back_is_one_alert_and_one_recovery(slum: Slum, tmp_path: Path) -> None:
    receiver = Receiver()
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    node = Slum(node_dir, free_port())
    try:
        (slum.dir / "tenement.toml").write_text(NODE_CONFIG.replace("URL", receiver.url))
        slum.start()
        node.start(None)
        slum.cli(
            "server-add",
            f"http://127.0.0.1:{node.port}",
            "-n",
            "nodeb",
            "--database",
            str(slum.database),
            check=True,
        )
        time.sleep(1.0)  # a few checks see it online
        node.stop()
        wait_for(lambda: len(receiver.posts) >= 1, timeout=30)
        node.start(None)
        wait_for(lambda: len(receiver.posts) >= 2, timeout=30)
        time.sleep(1.0)
        bodies = receiver.json()
        assert [(b["event"], b["subject"], b["status"]) for b in bodies] == [
            ("node_offline", "nodeb", "firing"),
            ("node_offline", "nodeb", "resolved"),
        ]
        assert bodies[0]["message"].startswith("server nodeb is offline")
        assert bodies[1]["message"] == "server nodeb is online"
    finally:
        receiver.close()
        if node.proc is not None and node.proc.poll() is None:
            node.stop()
