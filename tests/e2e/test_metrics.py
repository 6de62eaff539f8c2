"""Metrics as an operator reads them: counters, Prometheus scrape, per-instance CPU/memory."""

from __future__ import annotations

import json
import time

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import free_port
from tests.e2e.conftest import Slum, write_config

CONFIG = """
[settings]
data_dir = "./data"

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"

[service.workers]
command = ["{python}", "{children}/workers.py"]

[instances]
web = ["one"]
"""


def test_counters_prometheus_and_process_groups(tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_config(tmp_path, CONFIG)
    s = Slum(tmp_path, free_port())
    s.start()
    try:
        token = s.cli("token-gen", "--database", str(s.database), check=True).stdout.strip()
        auth = {"Authorization": f"Bearer {token}"}
        for i in range(37):
            assert s.http("GET", f"/items/{i}", host="one.web.localhost")[0] == 200
        assert s.http("GET", "/", host="ghost.web.localhost")[0] == 404

        status, headers, body = s.http("GET", "/_/metrics")
        assert status in (401, 503)
        status, headers, body = s.http("GET", "/_/metrics", headers=auth)
        assert status == 200 and headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        requests = [
            x
            for x in families["http_requests"].samples
            if x.name == "http_requests_total" and x.labels["target"] == "web:one"
        ]
        assert requests == [requests[0]] and requests[0].value == 37
        assert requests[0].labels["route"] == "/items/:id" and requests[0].labels["status"] == "2xx"
        buckets = [
            x
            for x in families["http_request_duration_ms"].samples
            if x.name.endswith("_count") and x.labels["target"] == "web:one"
        ]
        assert buckets[0].value == 37

        s.cli("spawn", "workers", "--id", "w", check=True)
        deadline = time.monotonic() + 15
        inst = {}
        while time.monotonic() < deadline:
            inst = {i["id"]: i for i in s.cli_json("ps")}["workers:w"]
            if inst["rss_bytes"] and inst["rss_bytes"] > 70 * 1024 * 1024:
                break
            time.sleep(0.3)
        # two workers with 40 MiB each: counted with the leader as one instance
        assert inst["rss_bytes"] > 70 * 1024 * 1024, inst
        assert inst["cpu_percent"] is not None

        status, _, body = s.http("GET", "/_/api/metrics", headers=auth)
        snapshot = json.loads(body)
        names = {m["name"] for m in snapshot}
        assert {"http_requests_total", "instance_rss_bytes", "host_load1", "requests_per_s"} <= names
        status, _, body = s.http("GET", "/_/api/metrics/history?name=cpu_percent&since=1h", headers=auth)
        assert status == 200 and json.loads(body)["step"] == 60
        assert s.http("GET", "/_/api/metrics/history?name=x&labels=nope", headers=auth)[0] == 400

        top = s.cli("top", "--once", check=True).stdout
        assert top.splitlines()[0].split() == [
            "INSTANCE",
            "STATUS",
            "CPU%",
            "MEM",
            "REQ/S",
            "P99MS",
            "RESTARTS",
        ]
        assert "workers:w" in top and "MiB" in top
    finally:
        s.stop()
