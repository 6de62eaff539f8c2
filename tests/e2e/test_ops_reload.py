"""`slum reload` and SIGHUP against a real `slum serve`: new services start, changed ones roll,
unchanged ones are not touched (not one request lost under load), removed ones stop, and a broken
config is refused whole with the message `slum serve` would print."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Slum, slum_argv, write_config
from tests.e2e.test_spine import wait_for

BASE = """
[settings]
data_dir = "./data"
health_check_interval = 0.5
backoff_base_ms = 100
backoff_max_ms = 400
stop_grace_s = 2

[service.steady]
command = ["{python}", "{children}/web.py"]
health = "/health"

[service.changed]
command = ["{python}", "{children}/web.py"]
health = "/health"

[service.changed.env]
VERSION = "{version}"
"""

INSTANCES = """
[instances]
steady = ["one"]
changed = ["a", "b"]
"""

FRESH = """
[service.fresh]
command = ["{python}", "{children}/web.py"]
health = "/health"
"""


def config(version: str, fresh: bool = False, extra_instances: str = "") -> str:
    text = BASE.replace("{version}", version) + (FRESH if fresh else "") + INSTANCES
    return text + extra_instances


def pids(slum: Slum) -> dict[str, int | None]:
    return {i["id"]: i["pid"] for i in slum.cli_json("ps")}


def json_lines(slum: Slum, *args: str) -> list[dict[str, Any]]:
    out = slum.cli(*args, "--json", check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line]


class Load:
    """A bounded keep-alive client loop through the real edge, on a few connections: every
    failure is a lost request."""

    def __init__(self, port: int, host: str, connections: int = 4, max_requests: int = 20000) -> None:
        self.port, self.host, self.max = port, host, max_requests
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(connections)]

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            while not self.stop.is_set() and self.ok + len(self.failures) < self.max:
                try:
                    conn.request("GET", "/", headers={"Host": self.host})
                    response = conn.getresponse()
                    body = response.read()
                    if response.status == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"{response.status} {body[:100]!r}")
                except (OSError, http.client.HTTPException) as e:
                    self.failures.append(repr(e))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                time.sleep(0.002)  # a steady client, not a benchmark: leave the cores to slum
        finally:
            conn.close()

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        wait_for(lambda: self.ok > 20 or self.failures, timeout=20)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


@pytest.mark.slow
def test_reload_under_load_loses_nothing_for_unchanged_services(slum: Slum) -> None:
    write_config(slum.dir, config("1"))
    slum.start()
    wait_for(lambda: all(i["status"] == "healthy" for i in slum.cli_json("ps")), timeout=20)
    before = pids(slum)

    with Load(slum.port, "one.steady.localhost") as load:
        write_config(slum.dir, config("2", fresh=True, extra_instances='fresh = ["x"]\n'))
        result = slum.cli("reload", "--json", timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        served_during = load.ok
        time.sleep(0.5)  # keep the load on a moment after the rollout ended
    print(
        f"reload under load: {served_during} requests served while it ran, {load.ok} in all, "
        f"{len(load.failures)} failed"
    )
    assert load.failures == [], load.failures[:5]
    assert served_during > 20 and load.ok > served_during

    summary = json.loads(result.stdout)
    assert summary["added"] == ["fresh"]
    assert summary["changed"] == ["changed"]
    assert summary["unchanged"] == ["steady"]
    assert summary["removed"] == []
    assert sorted(summary["restarted"]) == ["changed:a", "changed:b"]
    assert summary["started"] == ["fresh:x"]
    assert summary["errors"] == []

    after = pids(slum)
    assert after["steady:one"] == before["steady:one"]  # untouched
    assert after["changed:a"] not in (None, before["changed:a"])
    assert after["changed:b"] not in (None, before["changed:b"])
    assert after["fresh:x"] is not None
    instances = {i["id"]: i for i in slum.cli_json("ps")}
    assert all(i["status"] == "healthy" for i in instances.values())
    assert slum.cli_json("config")["service"]["changed"]["env"] == {"VERSION": "2"}
    status, _, body = slum.http("GET", "/", host="x.fresh.localhost")
    assert status == 200 and body.startswith(b"fresh:x")

    # The rollout went one instance at a time: b's new process started after a's was healthy.
    history = {ref: json_lines(slum, "logs", ref, "-n", "200") for ref in ("changed:a", "changed:b")}
    a_healthy = max(e["id"] for e in history["changed:a"] if e["message"] == "healthy")
    b_started = max(e["id"] for e in history["changed:b"] if e["message"].startswith("started pid"))
    assert b_started > a_healthy


def test_broken_config_is_refused_whole_with_the_start_message(slum: Slum, tmp_path: Path) -> None:
    write_config(slum.dir, config("1"))
    slum.start()
    wait_for(lambda: all(i["status"] == "healthy" for i in slum.cli_json("ps")), timeout=20)
    before = pids(slum)
    good = (slum.dir / "tenement.toml").read_text()
    broken = good.replace('VERSION = "1"', 'VERSION = "2"\n').replace(
        'health = "/health"', 'health = "health"', 1
    )
    (slum.dir / "tenement.toml").write_text(broken)

    result = slum.cli("reload")
    assert result.returncode == 2
    assert result.stdout == ""
    message = result.stderr.strip()
    assert message.startswith("slum: error: ") and "service.steady.health" in message
    assert len(message.splitlines()) == 1 and "Traceback" not in result.stderr

    # The same words `slum serve` says for this file.
    other = tmp_path / "other"
    other.mkdir()
    serve = subprocess.run(
        [
            *slum_argv(),
            "serve",
            "--port",
            "0",
            "--database",
            str(other / "x.db"),
            "--config",
            str(slum.dir / "tenement.toml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert serve.returncode == 2
    assert message in serve.stderr

    assert pids(slum) == before
    assert slum.cli_json("config")["service"]["changed"]["env"] == {"VERSION": "1"}


def test_sighup_reloads_and_removed_services_stop(slum: Slum) -> None:
    write_config(slum.dir, config("1"))
    slum.start()
    wait_for(lambda: all(i["status"] == "healthy" for i in slum.cli_json("ps")), timeout=20)
    before = pids(slum)
    text = BASE.split("[service.changed]")[0] + '\n[instances]\nsteady = ["one"]\n'
    write_config(slum.dir, text)
    assert slum.proc is not None
    slum.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: set(pids(slum)) == {"steady:one"}, timeout=30)
    assert slum.proc.poll() is None
    assert pids(slum)["steady:one"] == before["steady:one"]
    for ref in ("changed:a", "changed:b"):
        pid = before[ref]
        assert pid is not None
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists(), timeout=10)
    status, _, _ = slum.http("GET", "/", host="a.changed.localhost")
    assert status == 404
    logs = json_lines(slum, "logs", "-n", "50")
    assert any(e["message"].startswith("reloaded: 0 added, 0 changed, 1 removed") for e in logs)


def test_a_fleet_router_started_without_services_refuses_to_grow_some(slum: Slum) -> None:
    (slum.dir / "tenement.toml").unlink()
    slum.start(None)
    write_config(slum.dir, config("1"))
    result = slum.cli("reload")
    assert result.returncode == 2 and "started without services" in result.stderr
    assert slum.cli_json("ps") == []


def test_a_replacement_that_does_not_come_up_stops_the_rollout(slum: Slum) -> None:
    write_config(slum.dir, config("1"))
    slum.start()
    wait_for(lambda: all(i["status"] == "healthy" for i in slum.cli_json("ps")), timeout=20)
    before = pids(slum)
    broken = config("1").replace(
        '[service.changed]\ncommand = ["{python}", "{children}/web.py"]',
        '[service.changed]\ncommand = ["{python}", "{children}/crash.py"]',
    )
    assert broken != config("1")
    write_config(slum.dir, broken)
    result = slum.cli("reload")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "restarted: changed:a" in result.stdout
    assert "changed:a: not serving after its restart" in result.stderr
    assert "the other instances of changed were left as they were" in result.stderr
    after = {i["id"]: i for i in slum.cli_json("ps")}
    assert after["changed:b"]["pid"] == before["changed:b"]
    assert after["changed:b"]["status"] == "healthy"
    assert after["steady:one"]["pid"] == before["steady:one"]
    assert after["changed:a"]["status"] in ("backoff", "starting", "failed")
