"""The HTTP API as clients use it: tokens, sessions, JSON errors, the fleet registry."""

from __future__ import annotations

import json
import os
import signal
import time

import psutil

from tests.e2e.conftest import Slum


def api(s: Slum, method: str, path: str, token: str | None = None, body: object = None,
        headers: dict[str, str] | None = None) -> tuple[int, object, dict[str, str]]:
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    status, resp_headers, raw = s.http(method, path, headers=h, body=data)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw
    return status, parsed, resp_headers


def test_tokens_and_sessions(slum: Slum) -> None:
    slum.start()
    assert api(slum, "GET", "/api/health")[0] == 200
    status, body, _ = api(slum, "GET", "/_/api/instances")
    assert status == 503 and "slum token-gen" in body["error"]  # type: ignore[index]

    token = slum.cli("token-gen", "--database", str(slum.database), check=True).stdout.strip()
    assert token.startswith("slum_")
    stored = slum.database.read_bytes()
    assert token.encode() not in stored  # only the hash

    assert api(slum, "GET", "/_/api/instances")[0] == 401
    assert api(slum, "GET", "/_/api/instances", token="slum_wrong")[0] == 401
    status, body, _ = api(slum, "GET", "/_/api/instances", token=token)
    assert status == 200 and body[0]["id"] == "web:one"  # type: ignore[index]
    assert api(slum, "GET", "/api/servers", token=token)[0] == 200

    # A second token made while serving works from the next request on; the first still does.
    second = slum.cli("token-gen", "--database", str(slum.database), check=True).stdout.strip()
    assert api(slum, "GET", "/_/api/overview", token=second)[0] == 200
    assert api(slum, "GET", "/_/api/overview", token=token)[0] == 200

    # Dashboard login: the token once, then an HttpOnly SameSite=Strict cookie.
    assert api(slum, "POST", "/_/api/login", body={"token": "slum_nope"})[0] == 401
    status, _, headers = api(slum, "POST", "/_/api/login", body={"token": token})
    assert status == 200
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and token not in cookie
    session = cookie.split(";")[0]
    assert api(slum, "GET", "/_/api/session", headers={"Cookie": session})[0] == 200
    assert api(slum, "POST", "/_/api/logout", headers={"Cookie": session})[0] == 200
    assert api(slum, "GET", "/_/api/session", headers={"Cookie": session})[0] == 401

    # The Python API, over HTTP with the token.
    import slum as slum_pkg

    client = slum_pkg.Client(server=f"http://127.0.0.1:{slum.port}", token=token)
    assert [i["id"] for i in client.instances()] == ["web:one"]
    bad = slum_pkg.Client(server=f"http://127.0.0.1:{slum.port}", token="slum_bad")
    try:
        bad.instances()
    except slum_pkg.Unauthorized as e:
        assert "invalid token" in str(e)
    else:
        raise AssertionError("a wrong token must be refused")


def test_json_errors_for_bad_input(slum: Slum) -> None:
    slum.start()
    token = slum.cli("token-gen", "--database", str(slum.database), check=True).stdout.strip()
    cases = [
        ("POST", "/_/api/instances", {"service": "web", "id": "../x"}, 400),
        ("POST", "/_/api/instances", {"service": "web", "id": "Alice"}, 400),
        ("POST", "/_/api/instances", {"service": "nope", "id": "a"}, 404),
        ("POST", "/_/api/instances", {"service": "web", "id": "one"}, 201),  # idempotent
        ("POST", "/_/api/instances", b"{not json", 400),
        ("POST", "/_/api/instances/web:ghost/stop", None, 404),
        ("POST", "/_/api/instances/nocolon/stop", None, 400),
        ("GET", "/_/api/logs?search=foo%20AND%20(", None, 200),
        ("GET", "/_/api/logs?level=loud", None, 400),
        ("GET", "/_/api/logs?limit=abc", None, 400),
        ("GET", "/_/api/logs?since=yesterday", None, 400),
        ("GET", "/_/api/nothing-here", None, 404),
        ("POST", "/api/tenants", {"id": "../x"}, 400),
        ("POST", "/api/servers", {"address": "ftp://x"}, 400),
        ("DELETE", "/api/servers/local", None, 400),
        ("DELETE", "/api/tenants/ghost", None, 404),
    ]
    for method, path, body, expected in cases:
        status, data, headers = api(slum, method, path, token=token, body=body)
        assert status == expected, (method, path, status, data)
        if status >= 400:
            assert headers["content-type"].startswith("application/json"), path
            assert isinstance(data, dict) and set(data) == {"error"}, data


def test_fleet_api_and_local_tenant_routing(slum: Slum) -> None:
    slum.start()
    token = slum.cli("token-gen", "--database", str(slum.database), check=True).stdout.strip()
    status, tenant, _ = api(slum, "POST", "/api/tenants", token=token,
                            body={"id": "acme", "service": "web"})
    assert status == 201 and tenant["server"] == "local"  # type: ignore[index]
    status, _, body = slum.http("GET", "/hi", host="acme.localhost")
    assert (status, body) == (200, b"web:acme /hi")
    servers = api(slum, "GET", "/api/servers", token=token)[1]
    assert [s["name"] for s in servers] == ["local"]  # type: ignore[union-attr,index]
    assert servers[0]["tenant_count"] == 1  # type: ignore[index]
    # a tenant added by the CLI straight into the database routes without a restart
    slum.cli("tenant-add", "beta", "--service", "web", "--database", str(slum.database),
             check=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status, _, body = slum.http("GET", "/", host="beta.localhost")
        if status == 200:
            break
        time.sleep(0.1)
    assert body == b"web:beta /"
    assert api(slum, "DELETE", "/api/tenants/acme", token=token)[0] == 200
    assert slum.http("GET", "/", host="acme.localhost")[0] == 404


def test_config_error_exits_2_with_file_and_line(slum: Slum) -> None:
    (slum.dir / "tenement.toml").write_text("[service.web]\ncommand = 'x'\nrestart = 'sometimes'\n")
    r = slum.cli("serve", "--port", str(slum.port), "--config", "tenement.toml")
    assert r.returncode == 2
    assert r.stderr.strip().endswith(
        "tenement.toml:3: service.web.restart: must be one of always, on-failure, never")
    assert "Traceback" not in r.stderr


def test_port_in_use_is_one_clear_line(slum: Slum) -> None:
    slum.start()
    other = Slum(slum.dir / "second", slum.port)
    other.dir.mkdir()
    r = other.cli("serve", "--host", "127.0.0.1", "--port", str(slum.port), "--database",
                  str(other.dir / "slum.db"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "address already in use" in r.stderr.lower()


def test_children_do_not_survive_a_sigkilled_slum(slum: Slum) -> None:
    slum.start()
    for name in ("a", "b", "c", "d"):
        slum.cli("spawn", "web", "--id", name, check=True)
    pids = [i["pid"] for i in slum.cli_json("ps")]
    assert len(pids) == 5
    slum.stop(signal.SIGKILL)
    slum.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
            psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids):
        time.sleep(0.05)
    survivors = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert survivors == []
    # the spawned ones are known again (stopped until asked for); the config one runs
    states = {i["id"]: i["status"] for i in slum.cli_json("ps")}
    assert states["web:one"] in ("starting", "healthy") and states["web:a"] == "stopped"
    assert os.path.exists(slum.dir / "slum.sock")


def test_grandchildren_die_with_a_sigkilled_slum_without_a_restart(slum: Slum) -> None:
    """The watchdog kills every process group of a slum that was SIGKILLed, workers and
    `sh -c` leftovers included, without waiting for slum to be started again."""
    (slum.dir / "tenement.toml").write_text((slum.dir / "tenement.toml").read_text().replace(
        'DATA_DIR = "{data_dir}/{name}/{id}"', 'DATA_DIR = "{data_dir}/{name}/{id}"\nGRANDCHILD = "1"'))
    slum.start()
    inst = slum.cli_json("ps")[0]
    grandchild_file = slum.dir / "data" / "web" / "one" / "grandchild.pid"
    deadline = time.monotonic() + 10
    while not grandchild_file.exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pids = [inst["pid"], int(grandchild_file.read_text())]
    assert all(alive(p) for p in pids)
    slum.stop(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids), "a process outlived the SIGKILLed slum"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
