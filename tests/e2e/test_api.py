"""The HTTP API as clients use it: tokens, sessions, JSON errors, the fleet registry."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import psutil

from tests.conftest import free_port
from tests.e2e.conftest import WEB_CONFIG, Slum, write_config


def api(
    s: Slum,
    method: str,
    path: str,
    token: str | None = None,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, object, dict[str, str]]:
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
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
    status, tenant, _ = api(slum, "POST", "/api/tenants", token=token, body={"id": "acme", "service": "web"})
    assert status == 201 and tenant["server"] == "local"  # type: ignore[index]
    status, _, body = slum.http("GET", "/hi", host="acme.localhost")
    assert (status, body) == (200, b"web:acme /hi")
    servers = api(slum, "GET", "/api/servers", token=token)[1]
    assert [s["name"] for s in servers] == ["local"]  # type: ignore[union-attr,index]
    assert servers[0]["tenant_count"] == 1  # type: ignore[index]
    # a tenant added by the CLI straight into the database routes without a restart
    slum.cli("tenant-add", "beta", "--service", "web", "--database", str(slum.database), check=True)
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
        "tenement.toml:3: service.web.restart: must be one of always, on-failure, never"
    )
    assert "Traceback" not in r.stderr


def test_port_in_use_is_one_clear_line(slum: Slum) -> None:
    slum.start()
    other = Slum(slum.dir / "second", slum.port)
    other.dir.mkdir()
    r = other.cli(
        "serve", "--host", "127.0.0.1", "--port", str(slum.port), "--database", str(other.dir / "slum.db")
    )
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
        psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids
    ):
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
    (slum.dir / "tenement.toml").write_text(
        (slum.dir / "tenement.toml")
        .read_text()
        .replace(
            'DATA_DIR = "{data_dir}/{name}/{id}"', 'DATA_DIR = "{data_dir}/{name}/{id}"\nGRANDCHILD = "1"'
        )
    )
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


def test_bad_input_is_a_4xx_never_a_500(slum: Slum) -> None:
    """Each of these answered 500 (or streamed where the query was refused) once."""
    slum.start()
    token = slum.cli("token-gen", "--database", str(slum.database), check=True).stdout.strip()
    deep = b"[" * 50_000
    bad_utf8 = b'\xff\xfe{"token": "x"}'
    big = 10**30
    queries = [
        f"/_/api/logs?offset={big}",
        f"/_/api/logs?before_id={big}",
        f"/_/api/logs?after_id={big}",
        f"/_/api/logs?since={big}",
        f"/_/api/logs?until={big}",
        "/_/api/logs?since=1e20",
        "/_/api/logs?since=-1e20",
        "/_/api/logs?since=nan",
        "/_/api/logs?since=inf",
        "/_/api/logs?since=99999999999999999999d",
        "/_/api/logs?offset=-1",
        f"/_/api/logs?limit={big}",
        "/_/api/logs?search=%22",
        "/_/api/logs/stream?search=%22",
        "/_/api/logs/stream?level=loud",
        f"/_/api/logs/stream?offset={big}",
        "/_/api/metrics/history?name=x&since=1e300",
        "/_/api/metrics/history?name=x&since=-1e300",
        "/_/api/metrics/history?name=x&until=1e300",
        f"/_/api/metrics/history?name=x&step={big}",
        "/_/api/metrics/history?name=x&step=99999999999999",
        "/_/api/metrics/history?name=x&labels=[",
        f"/_/api/metrics/live?seconds={big}",
        "/_/api/metrics/live?seconds=x",
        "/_/api/instances/%00/stop",
        "/_/api/instances/web:%00",
        "/_/api/tenants/%00",
    ]
    answered = 0
    for path in queries:
        method = "POST" if path.endswith("/stop") else "GET"
        status, data, _ = api(slum, method, path, token=token)
        assert 400 <= status < 500, (path, status, data)
        assert isinstance(data, dict) and set(data) == {"error"}, (path, data)
        answered += 1
    # bodies: not UTF-8, nested past the parser, not JSON at all (a form from another site)
    for path in ("/_/api/login", "/api/servers", "/api/tenants", "/_/api/instances", "/api/tenants/x/move"):
        for body, content_type, expected in (
            (deep, "application/json", 400),
            (bad_utf8, "application/json", 400),
            (b'{"token": "x"}', "text/plain", 415),
            (b"token=x", "application/x-www-form-urlencoded", 415),
        ):
            status, data, _ = api(
                slum, "POST", path, token=token, body=body, headers={"Content-Type": content_type}
            )
            assert status == expected, (path, content_type, status, data)
            answered += 1
    # a form post (what another site's page can send) does not act, even where no body is read
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, data, _ = api(
            slum,
            "POST",
            "/_/api/instances/web:one/stop",
            token=token,
            body=b"x=1",
            headers={"Content-Type": content_type},
        )
        assert status == 415, (content_type, status, data)
        answered += 1
    status, inst, _ = api(slum, "GET", "/_/api/instances/web:one", token=token)
    assert inst["status"] != "stopped"  # type: ignore[index]
    assert slum.http("GET", "/metrics")[0] == 401  # public only with public_metrics = true
    assert slum.http("GET", "/health")[0] == 200
    # slum's own pages: a NUL or an impossible name is no file (the SPA answers)
    for path in ("/_/%00", "/_/" + "a" * 5000):
        assert slum.http("GET", path)[0] == 200
        answered += 1
    # the CLI: one line, exit 2
    r = slum.cli("logs", "--since", "99999999999999")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    answered += 1
    print(f"{answered} bad inputs, each answered with a 4xx (the CLI: exit 2)")
    assert "internal error" not in slum.log.read_text(errors="replace")


def test_level_plus_survives_url_decoding(slum: Slum) -> None:
    """`level=warn+` decodes to `warn ` in a URL: both mean warn and above, as min_level=warn."""
    slum.start()
    token = slum.cli("token-gen", "--database", str(slum.database), check=True).stdout.strip()
    slum.cli("spawn", "crash:a", check=False)  # a failing start logs errors and warnings
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _, rows, _ = api(slum, "GET", "/_/api/logs?min_level=warn", token=token)
        if rows:
            break
        time.sleep(0.2)
    assert rows and all(r["level"] in ("warn", "error") for r in rows)  # type: ignore[union-attr,index]
    upto = rows[0]["id"] + 1  # type: ignore[index]  # lines logged from now on do not count
    for query in ("level=warn+", "level=warn%2B", "level=warn%20", "min_level=warn"):
        status, got, _ = api(slum, "GET", f"/_/api/logs?{query}&before_id={upto}", token=token)
        assert status == 200 and got == rows, query


def test_fleet_bad_requests_through_the_api(tmp_path: Path) -> None:
    """A tenant with a config lands on its remote node; moves to where it is, or to a node that
    is down, are a 409 and a 502, not a 500."""
    router = Slum(tmp_path / "router", free_port())
    node = Slum(tmp_path / "node", free_port())
    for s, config in ((router, "[settings]\nnode_check_interval = 0.3\n"), (node, WEB_CONFIG)):
        s.dir.mkdir()
        write_config(s.dir, config)
    node_token = node.cli("token-gen", "--database", str(node.database), check=True).stdout.strip()
    token = router.cli("token-gen", "--database", str(router.database), check=True).stdout.strip()
    try:
        node.start()
        router.start()
        assert (
            api(
                router,
                "POST",
                "/api/servers",
                token=token,
                body={"address": f"127.0.0.1:{node.port}", "name": "n1", "token": node_token},
            )[0]
            == 201
        )
        assert (
            api(
                router,
                "POST",
                "/api/servers",
                token=token,
                body={"address": f"127.0.0.1:{free_port()}", "name": "gone"},
            )[0]
            == 201
        )
        status, tenant, _ = api(
            router,
            "POST",
            "/api/tenants",
            token=token,
            body={"id": "acme", "server": "n1", "service": "web", "config": {"plan": "pro"}},
        )
        assert status == 201 and tenant["config"] == '{"plan": "pro"}', tenant  # type: ignore[index]
        # registered on the node, not only in the router's registry
        assert "acme" in [t["id"] for t in node.cli_json("tenant-list", "--database", str(node.database))]
        status, data, _ = api(router, "POST", "/api/tenants/acme/move", token=token, body={"to": "n1"})
        assert status == 409, data
        status, data, _ = api(router, "POST", "/api/tenants/acme/move", token=token, body={"to": "gone"})
        assert status in (409, 502), data  # 409 once the check saw it offline, 502 before
        assert "internal error" not in router.log.read_text(errors="replace")
    finally:
        for s in (router, node):
            if s.proc is not None and s.proc.poll() is None:
                s.stop()


def test_tenement_paths_and_shapes(slum: Slum) -> None:
    """tenement's scripts: /api/instances..., /api/logs with process= and id=, unnamed SSE
    events, a public /health, and /metrics public only with public_metrics = true."""
    config = slum.dir / "tenement.toml"
    config.write_text(config.read_text().replace("[settings]\n", "[settings]\npublic_metrics = true\n", 1))
    token = slum.cli("token-gen", "--database", str(slum.database), check=True).stdout.strip()
    slum.start()
    status, _, body = slum.http("GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, body = slum.http("GET", "/metrics")
    assert status == 200 and b"slum_instance_up" in body
    assert api(slum, "GET", "/api/instances")[0] == 401

    status, listed, _ = api(slum, "GET", "/api/instances", token=token)
    assert status == 200 and [i["id"] for i in listed] == ["web:one"]  # type: ignore[union-attr,index]
    status, spawned, _ = api(
        slum, "POST", "/api/instances/spawn", token=token, body={"process": "web", "id": "two"}
    )
    assert status == 201 and spawned["id"] == "web:two", spawned  # type: ignore[index]
    status, health, _ = api(slum, "GET", "/api/instances/web:two/health", token=token)
    assert status == 200 and health["status"] == "healthy"  # type: ignore[index]
    for action in ("restart", "stop"):
        status, inst, _ = api(slum, "POST", f"/api/instances/web:two/{action}", token=token)
        assert status == 200 and inst["id"] == "web:two"  # type: ignore[index]

    # process= and id= filter (they were ignored: every instance's lines came back)
    for query, want in (
        ("process=web&id=two", {"web:two"}),
        ("id=one", {"web:one"}),
        ("process=web", {"web:one", "web:two"}),
    ):
        status, rows, _ = api(slum, "GET", f"/api/logs?{query}&limit=1000", token=token)
        assert status == 200 and {r["instance_id"] for r in rows} == want, (query, rows)  # type: ignore[union-attr,index]
    assert api(slum, "GET", "/api/logs?process=Bad_Name", token=token)[0] == 400

    # the stream under /api: unnamed data events, resumed from the start
    req = urllib.request.Request(
        f"http://127.0.0.1:{slum.port}/api/logs/stream?process=web&id=two",
        headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "0"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        lines = []
        while not any(line.startswith("data: ") for line in lines):
            lines.append(resp.readline().decode().rstrip("\n"))
    assert not any(line.startswith("event:") for line in lines), lines
    entry = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
    assert entry["instance_id"] == "web:two"
