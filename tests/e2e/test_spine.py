"""The README's walk-through, as a user runs it: serve, spawn, ps, curl, health, restart, stop."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil

from tests.e2e.conftest import Slum


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def test_walkthrough(slum: Slum) -> None:
    slum.start()
    wait_for(lambda: slum.cli_json("ps")[0]["status"] == "healthy")

    out = slum.cli("spawn", "web", "--id", "alice", check=True).stdout
    assert out.startswith("web:alice healthy on port")
    out = slum.cli("spawn", "web:bob", check=True).stdout
    assert "web:bob healthy" in out

    table = slum.cli("ps", check=True).stdout.splitlines()
    assert table[0].split()[:7] == ["INSTANCE", "STATUS", "HEALTH", "PORT", "PID", "UPTIME", "RESTARTS"]
    assert [line.split()[0] for line in table[1:]] == ["web:alice", "web:bob", "web:one"]
    instances = {i["id"]: i for i in slum.cli_json("ps")}
    alice = instances["web:alice"]
    assert alice["service"] == "web" and alice["status"] == "healthy"
    assert isinstance(alice["port"], int) and isinstance(alice["pid"], int)
    assert [i["id"] for i in slum.cli_json("ls")] == [i["id"] for i in slum.cli_json("ps")]

    status, _, body = slum.http("GET", "/hello", host="alice.web.localhost")
    assert (status, body) == (200, b"web:alice /hello")
    status, _, body = slum.http(
        "GET",
        "/echo",
        host="alice.web.localhost",
        headers={"Authorization": "Bearer app-own", "Cookie": "a=b"},
    )
    echoed = json.loads(body)
    assert echoed["host"] == "alice.web.localhost"
    assert echoed["authorization"] == "Bearer app-own" and echoed["cookie"] == "a=b"
    assert echoed["x-tenant-id"] == "alice"
    assert echoed["x-forwarded-for"] == "127.0.0.1"
    assert echoed["x-forwarded-host"] == "alice.web.localhost"
    assert echoed["x-forwarded-proto"] == "http"

    assert slum.cli("health", "web:alice", check=True).stdout.strip() == "healthy"

    old_pid = alice["pid"]
    out = slum.cli("restart", "web:alice", check=True).stdout
    assert "web:alice healthy" in out
    new = {i["id"]: i for i in slum.cli_json("ps")}["web:alice"]
    assert new["pid"] != old_pid and new["restarts"] == 1
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"

    out = slum.cli("stop", "web:alice", check=True).stdout
    assert out.strip() == "web:alice stopped"
    assert {i["id"]: i for i in slum.cli_json("ps")}["web:alice"]["status"] == "stopped"

    config = slum.cli_json("config")
    assert config["service"]["web"]["health"] == "/health"
    assert config["instances"] == {"web": ["one"]}
    status_text = slum.cli("status", check=True).stdout
    assert "instances: 3" in status_text and "1 stopped" in status_text

    pids = [i["pid"] for i in slum.cli_json("ps") if i["pid"]]
    assert len(pids) == 2
    assert slum.stop(signal.SIGTERM) == 0
    for pid in pids:
        assert not psutil.pid_exists(pid), f"child {pid} outlived slum"


def test_unknown_hosts_and_instances(slum: Slum) -> None:
    slum.start()
    status, _, body = slum.http("GET", "/", host="nobody.web.localhost")
    assert status == 404 and b"no instance web:nobody" in body
    status, _, _ = slum.http("GET", "/", host="example.org")
    assert status == 404
    status, headers, _ = slum.http("GET", "/", host="localhost")
    assert status == 302 and headers["location"] == "/_/"
    # a request for an instance that was never spawned starts nothing
    assert [i["id"] for i in slum.cli_json("ps")] == ["web:one"]


def test_bad_input_gets_one_line_and_exit_2(slum: Slum) -> None:
    slum.start()
    for args in (["spawn", "web", "--id", "../x"], ["spawn", "web", "--id", "Alice"], ["stop", "nocolon"]):
        r = slum.cli(*args)
        assert r.returncode == 2, args
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = slum.cli("spawn", "web", "--id", "one")  # already healthy: a no-op, as in tenement
    assert r.returncode == 0 and "web:one healthy" in r.stdout
    r = slum.cli("stop", "web:ghost")
    assert r.returncode == 1 and "no instance web:ghost" in r.stderr
    r = slum.cli("spawn", "nosuch", "--id", "x")
    assert r.returncode == 1 and "unknown service" in r.stderr


def test_cli_without_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    s = Slum(tmp_path, 1)
    r = s.cli("ps", "--server", "http://127.0.0.1:1")
    assert r.returncode == 1
    assert r.stderr.startswith("slum: error: no slum server is running") and "Traceback" not in r.stderr


def test_env_of_child(slum: Slum) -> None:
    slum.start()
    inst = slum.cli_json("ps")[0]
    environ = psutil.Process(inst["pid"]).environ()
    assert environ["PORT"] == str(inst["port"])
    assert environ["DATA_DIR"] == str(slum.dir / "data" / "web" / "one")
    assert environ["SLUM_DATA_DIR"] == environ["DATA_DIR"]
    assert (slum.dir / "data" / "web" / "one").is_dir()
    assert os.getpgid(inst["pid"]) == inst["pid"]  # its own process group
