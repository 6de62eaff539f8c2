"""A token made with --tenant sees and acts on that tenant only, whatever filter it sends."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from tests.e2e.conftest import Slum, write_config
from tests.e2e.test_api import api
from tests.e2e.test_auth import SCOPED_CONFIG, token_gen


def wait_logs(slum: Slum, token: str, instance: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = api(slum, "GET", f"/_/api/logs?instance_id={instance}&search=listening", token=token)[1]
        if rows:
            return
        time.sleep(0.2)
    raise AssertionError(f"no logs from {instance}")


def sse(
    slum: Slum, path: str, token: str, last_event_id: str | None = None, seconds: float = 2.0
) -> list[tuple[str, Any]]:
    """Read an SSE stream for a while; (event, data) pairs."""
    head = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        + (f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else "")
        + "\r\n"
    )
    raw = b""
    with socket.create_connection(("127.0.0.1", slum.port), timeout=seconds) as s:
        s.sendall(head.encode())
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    events = []
    for block in raw.decode("utf-8", "replace").split("\n\n"):
        name = data = None
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data = json.loads(line[5:].strip())
        if name:
            events.append((name, data))
    return events


def test_tenant_scoped_token(slum: Slum) -> None:
    write_config(slum.dir, SCOPED_CONFIG)
    slum.start()
    admin = token_gen(slum)
    alice = token_gen(slum, "--tenant", "alice")
    wait_logs(slum, admin, "web:alice")
    wait_logs(slum, admin, "web:bob")
    # Instances: only alice's, and only alice's can be acted on.
    listed = api(slum, "GET", "/_/api/instances", token=alice)[1]
    assert [i["id"] for i in listed] == ["web:alice"]  # type: ignore[union-attr,index]
    assert [i["id"] for i in api(slum, "GET", "/_/api/instances?all=1", token=alice)[1]] == ["web:alice"]  # type: ignore[union-attr,index]
    for method, path in [
        ("POST", "/_/api/instances/web:bob/stop"),
        ("POST", "/_/api/instances/web:bob/restart"),
        ("GET", "/_/api/instances/web:bob"),
        ("GET", "/_/api/instances/web:bob/health"),
    ]:
        assert api(slum, method, path, token=alice)[0] == 403, path
    assert (
        api(slum, "POST", "/_/api/instances", token=alice, body={"service": "web", "id": "carol"})[0] == 403
    )
    assert api(slum, "GET", "/_/api/instances/web:alice", token=alice)[0] == 200
    # Everything fleet- or server-wide: 403.
    for method, path in [
        ("GET", "/api/servers"),
        ("GET", "/api/tenants"),
        ("POST", "/api/servers"),
        ("GET", "/_/api/overview"),
        ("GET", "/_/api/status"),
        ("GET", "/_/api/config"),
        ("GET", "/_/api/tokens"),
        ("GET", "/_/metrics"),
        ("GET", "/_/api/tenants/bob"),
    ]:
        status = api(
            slum,
            method,
            path,
            token=alice,
            body={"address": "http://10.0.0.1:1"} if method == "POST" else None,
        )[0]
        assert status == 403, (path, status)
    # Logs: no filter widens the scope.
    rows = api(slum, "GET", "/_/api/logs?search=listening&limit=500", token=alice)[1]
    assert rows and {r["instance_id"] for r in rows} == {"web:alice"}  # type: ignore
    for query in ("tenant_id=bob", "instance_id=web:bob", "tenant_id=bob&search=listening"):
        assert api(slum, "GET", f"/_/api/logs?{query}", token=alice)[0] == 403, query
    everything = api(slum, "GET", "/_/api/logs?limit=1000", token=alice)[1]
    assert everything and all(r["tenant_id"] == "alice" for r in everything)  # type: ignore
    # SSE resume from the start of time: alice's lines only; bob's filter refused.
    events = sse(slum, "/_/api/logs/stream?states=1", alice, last_event_id="1")
    logs = [d for n, d in events if n == "log"]
    assert logs and all(d["tenant_id"] == "alice" for d in logs)
    status = api(slum, "GET", "/_/api/logs/stream?tenant_id=bob", token=alice)[0]
    assert status == 403
    # Live state changes of bob are not streamed to alice's token.
    with_states: list[tuple[str, Any]] = []

    def restart_bob() -> None:
        time.sleep(0.5)
        api(slum, "POST", "/_/api/instances/web:bob/restart", token=admin)

    import threading

    t = threading.Thread(target=restart_bob)
    t.start()
    with_states = sse(slum, "/_/api/logs/stream?states=1", alice, seconds=4)
    t.join()
    assert all(d["id"] == "web:alice" for n, d in with_states if n == "state")
    assert all(d["tenant_id"] == "alice" for n, d in with_states if n == "log")
    # Metrics: alice's series only; asking for bob's is refused.
    for _ in range(3):
        slum.http("GET", "/", host="alice.web.localhost")
        slum.http("GET", "/", host="bob.web.localhost")
    metrics = api(slum, "GET", "/_/api/metrics", token=alice)[1]
    targets = {
        v
        for m in metrics
        for k, v in m.get("labels", {}).items()  # type: ignore
        if k in ("target", "instance")
    }
    assert targets and targets <= {"web:alice"}, targets
    assert all(m.get("labels") for m in metrics)  # type: ignore[union-attr]
    live = api(slum, "GET", "/_/api/metrics/live?seconds=60", token=alice)[1]
    assert set(live["series"]) <= {"web:alice"}  # type: ignore[index]
    history = "/_/api/metrics/history?name=requests_per_s&labels=target="
    assert api(slum, "GET", history + "web:bob", token=alice)[0] == 403
    assert api(slum, "GET", "/_/api/metrics/history?name=cpu_percent", token=alice)[0] == 403
    status, hist, _ = api(slum, "GET", history + "web:alice", token=alice)
    assert status == 200 and all(
        s["labels"].get("target") == "web:alice"  # type: ignore
        for s in hist["series"]
    )  # type: ignore[index]
    # The full token still sees everything.
    assert len(api(slum, "GET", "/_/api/instances", token=admin)[1]) == 2  # type: ignore
    assert api(slum, "POST", "/_/api/instances/web:alice/stop", token=alice)[0] == 200


def test_tenant_scoped_token_on_tenement_paths_and_deploys(slum: Slum) -> None:
    """The same scope on the /api aliases of the route table, tenement's own paths and the
    deploy, weight and storage views: alice's token reaches alice's instance, never bob's."""
    write_config(slum.dir, SCOPED_CONFIG)
    slum.start()
    admin = token_gen(slum)
    alice = token_gen(slum, "--tenant", "alice")
    wait_logs(slum, admin, "web:alice")
    wait_logs(slum, admin, "web:bob")
    assert api(slum, "GET", "/_/api/session", token=alice)[1] == {"authenticated": True, "tenant": "alice"}
    assert api(slum, "GET", "/_/api/session", token=admin)[1] == {"authenticated": True, "tenant": None}
    # tenement's instance paths (the same views under /api)
    listed = api(slum, "GET", "/api/instances", token=alice)[1]
    assert [i["id"] for i in listed] == ["web:alice"]  # type: ignore[union-attr,index]
    refused = [
        ("POST", "/api/instances/web:bob/stop", None),
        ("POST", "/api/instances/web:bob/restart", None),
        ("GET", "/api/instances/web:bob/health", None),
        ("POST", "/api/instances/spawn", {"process": "web", "id": "carol"}),
        # deploys, traffic and storage
        ("POST", "/api/deploys", {"service": "web", "version": "carol"}),
        ("POST", "/api/deploy", {"process": "web", "version": "bob"}),
        ("POST", "/_/api/instances/web:bob/weight", {"weight": 0}),
        ("POST", "/api/instances/web:bob/weight", {"weight": 0}),
        ("POST", "/api/route", {"process": "web", "from": "bob", "to": "alice"}),
        ("POST", "/_/api/services/web/route", {"from": "alice", "to": "bob"}),
        ("GET", "/api/instances/web:bob/storage", None),
        ("GET", "/_/api/instances/web:bob/storage", None),
        # fleet and Prometheus under their other paths
        ("POST", "/api/tenants", {"id": "carol"}),
        ("DELETE", "/api/tenants/bob", None),
        ("POST", "/api/tenants/bob/move", {"to": "local"}),
        ("GET", "/metrics", None),
    ]
    for method, path, body in refused:
        status = api(slum, method, path, token=alice, body=body)[0]
        assert status == 403, (method, path, status)
    assert api(slum, "GET", "/api/instances/web:bob/health", token=admin)[0] == 200
    # alice's own: readable, and her traffic is hers to weigh
    status, health, _ = api(slum, "GET", "/api/instances/web:alice/health", token=alice)
    assert status == 200 and health["id"] == "web:alice"  # type: ignore[index]
    status, storage, _ = api(slum, "GET", "/api/instances/web:alice/storage", token=alice)
    assert status == 200 and storage["id"] == "web:alice"  # type: ignore[index]
    status, weighed, _ = api(
        slum, "POST", "/api/instances/web:alice/weight", token=alice, body={"weight": 40}
    )
    assert status == 200 and weighed["weight"] == 40  # type: ignore[index]
    # a tenant detail: her own passes the scope (not in the registry here: 404), bob's is 403
    assert api(slum, "GET", "/_/api/tenants/alice", token=alice)[0] == 404
    assert api(slum, "GET", "/_/api/tenants/bob", token=alice)[0] == 403
    # tenement's log filters cannot widen the scope either
    for query in ("process=web&id=bob", "process=web&tenant_id=bob"):
        assert api(slum, "GET", f"/api/logs?{query}", token=alice)[0] == 403, query
    assert api(slum, "GET", "/api/logs?id=bob", token=alice)[1] == []  # narrowed to alice's
    rows = api(slum, "GET", "/api/logs?process=web&limit=1000", token=alice)[1]
    assert rows and {r["instance_id"] for r in rows} == {"web:alice"}  # type: ignore
    rows = api(slum, "GET", "/api/logs?stream=stdout&limit=1000", token=alice)[1]
    assert all(
        r["tenant_id"] == "alice" and r["stream"] == "stdout"  # type: ignore
        for r in rows
    )
    assert api(slum, "GET", "/api/logs?stream=nope", token=alice)[0] == 400
