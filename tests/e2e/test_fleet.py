"""A fleet on one machine: three real nodes and a router, each its own `slum serve`."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Slum, write_config

NODE_CONFIG = """
[settings]
data_dir = "./data"

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"
"""

ROUTER_CONFIG = """
[settings]
node_check_interval = 0.3
"""


def wait_until(predicate, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[tuple[Slum, list[Slum], list[str]]]:
    nodes: list[Slum] = []
    tokens: list[str] = []
    router = Slum(tmp_path / "router", free_port())
    router.dir.mkdir()
    write_config(router.dir, ROUTER_CONFIG)
    try:
        for i in range(3):
            node = Slum(tmp_path / f"node{i}", free_port())
            node.dir.mkdir()
            write_config(node.dir, NODE_CONFIG)
            tokens.append(node.cli("token-gen", "--database", str(node.database), check=True).stdout.strip())
            node.start()
            nodes.append(node)
        router.start()
        yield router, nodes, tokens
    finally:
        for s in [router, *nodes]:
            if s.proc is not None and s.proc.poll() is None:
                s.stop()


def test_fleet_routing_health_and_recovery(fleet: tuple[Slum, list[Slum], list[str]]) -> None:
    router, nodes, tokens = fleet
    db = ["--database", str(router.database)]
    router_token = router.cli("token-gen", *db, check=True).stdout.strip()
    for i, (node, token) in enumerate(zip(nodes, tokens, strict=True)):
        router.cli("server-add", f"127.0.0.1:{node.port}", "-n", f"n{i}", "--token", token, *db, check=True)
    placed = {}
    for t in ("t1", "t2", "t3", "t4", "t5", "t6"):
        out = router.cli("tenant-add", t, "--service", "web", *db, check=True).stdout
        placed[t] = out.split()[-1]
    # even placement across the three nodes; the router itself runs no processes
    assert sorted(placed.values()) == ["n0", "n0", "n1", "n1", "n2", "n2"]
    servers = json.loads(router.cli("server-list", "--json", *db, check=True).stdout)
    assert {s["name"]: s["status"] for s in servers}["n0"] == "online"

    for tenant, server in placed.items():
        status, _, body = wait_until(
            lambda t=tenant: (r := router.http("GET", "/where", host=f"{t}.localhost"))[0] == 200 and r
        )
        assert body == f"web:{tenant} /where".encode()
        node = nodes[int(server[1])]
        assert f"web:{tenant}" in [i["id"] for i in node.cli_json("ps")]

    # the app sees where the request came from
    _, _, body = router.http("GET", "/echo", host="t1.localhost")
    echoed = json.loads(body)
    assert echoed["x-forwarded-host"] == "t1.localhost" and echoed["x-tenant-id"] == "t1"
    assert "x-slum-router" not in echoed

    # a client cannot use the routing headers to reach a tenant on a node directly
    victim = nodes[int(placed["t1"][1])]
    status, _, body = victim.http("GET", "/", headers={"X-Tenant-ID": "t1", "X-Slum-Router": "slum_forged"})
    assert b"web:t1" not in body

    # an alias routes to its tenant
    router.cli("alias-add", "shop.example.com", "t2", *db, check=True)
    status, _, body = wait_until(
        lambda: (r := router.http("GET", "/", host="shop.example.com"))[0] == 200 and r
    )
    assert body == b"web:t2 /"

    # the fleet from one place
    everywhere = router.cli_json("ps", "--all")
    assert {i["id"] for i in everywhere if i["id"].startswith("web:")} >= {f"web:{t}" for t in placed}
    lines = router.cli("logs", "--tenant", "t3", "--json", check=True).stdout.splitlines()
    assert any(json.loads(x)["instance_id"] == "web:t3" for x in lines)

    # a node dies: offline within the check interval, its tenants get a fast 502 naming it
    dead_name = placed["t1"]
    dead = nodes[int(dead_name[1])]
    dead.stop(signal.SIGKILL)
    wait_until(
        lambda: (
            dead_name + " " in router.cli("status", check=True).stdout
            and "offline" in router.cli("status", check=True).stdout
        ),
        timeout=10,
    )
    started = time.monotonic()
    status, _, body = router.http("GET", "/", host="t1.localhost")
    assert status == 502 and dead_name.encode() in body
    assert time.monotonic() - started < 1
    other = next(t for t, s in placed.items() if s != dead_name)
    assert router.http("GET", "/", host=f"{other}.localhost")[0] == 200
    status_json = router.cli_json("status")
    assert {s["name"]: s["status"] for s in status_json["server_list"]}[dead_name] == "offline"
    # the views do not ask it: its status is the answer, at once
    auth = {"Authorization": f"Bearer {router_token}"}
    started = time.monotonic()
    status, _, body = router.http("GET", "/_/api/logs?tenant_id=t1", headers=auth)
    assert status == 502 and f"server {dead_name} is offline".encode() in body
    everywhere = json.loads(router.http("GET", "/_/api/instances?all=1", headers=auth)[2])
    assert {
        "id": f"{dead_name}:?",
        "server": dead_name,
        "status": "unknown",
        "reason": f"server {dead_name} is offline",
    } in everywhere
    assert time.monotonic() - started < 1

    # back: online again and served again
    dead.start()
    wait_until(lambda: router.http("GET", "/", host="t1.localhost")[0] == 200, timeout=20)

    # moving a tenant: stopped there, served here
    target = next(s for s in ("n0", "n1", "n2") if s != placed["t4"])
    r = router.cli("tenant-move", "t4", "--to", target, *db, check=True)
    assert "not copied" in r.stderr
    status, _, body = wait_until(
        lambda: (rr := router.http("GET", "/", host="t4.localhost"))[0] == 200 and rr
    )
    assert body == b"web:t4 /"
    assert "web:t4" in [i["id"] for i in nodes[int(target[1])].cli_json("ps")]

    # removing a tenant stops it on its node
    holder = nodes[int(placed["t5"][1])]
    router.cli("tenant-remove", "t5", *db, check=True)
    assert {i["id"]: i["status"] for i in holder.cli_json("ps")}.get("web:t5") in (None, "stopped")
    assert wait_until(lambda: router.http("GET", "/", host="t5.localhost")[0] == 404)


def test_cli_registry_commands_go_through_the_running_server(slum: Slum) -> None:
    """With a slum serving --database, the CLI's tenant-remove is the API's: the instance
    here stops, and the route is gone at once (no poll in between)."""
    slum.start()
    db = ["--database", str(slum.database)]
    slum.cli("tenant-add", "alice", "-s", "local", "--service", "web", *db, check=True)
    status, _, body = slum.http("GET", "/hi", host="alice.localhost")  # routed at once
    assert (status, body) == (200, b"web:alice /hi")
    assert {i["id"]: i["status"] for i in slum.cli_json("ps")}["web:alice"] == "healthy"
    out = slum.cli("tenant-remove", "alice", *db, check=True).stdout
    assert out.strip() == "removed tenant alice"
    assert {i["id"]: i["status"] for i in slum.cli_json("ps")}.get("web:alice") in (None, "stopped")
    assert slum.http("GET", "/", host="alice.localhost")[0] == 404
    assert slum.cli_json("tenant-list", *db) == []
    # Without a server: the same commands on the file itself.
    slum.stop()
    slum.cli("tenant-add", "bob", "-s", "local", *db, check=True)
    slum.cli("alias-add", "bob.example.com", "bob", *db, check=True)
    assert [t["aliases"] for t in slum.cli_json("tenant-list", *db)] == [["bob.example.com"]]
    r = slum.cli("alias-add", "bob.example.com", "nobody", *db)
    assert r.returncode == 1 and "no tenant 'nobody'" in r.stderr and "Traceback" not in r.stderr
    slum.cli("alias-remove", "bob.example.com", *db, check=True)
    slum.cli("tenant-remove", "bob", *db, check=True)
    assert slum.cli_json("tenant-list", *db) == []


def test_removing_a_tenant_of_the_only_service_stops_its_instance(slum: Slum) -> None:
    """A tenant added without a service on a node with one service routes to that service; its
    removal stops that instance too (both ask the config the same question)."""
    write_config(slum.dir, NODE_CONFIG)
    slum.start()
    db = ["--database", str(slum.database)]
    slum.cli("tenant-add", "carol", "-s", "local", *db, check=True)
    assert slum.http("GET", "/", host="carol.localhost")[:3:2] == (200, b"web:carol /")
    slum.cli("tenant-remove", "carol", *db, check=True)
    assert {i["id"]: i["status"] for i in slum.cli_json("ps")}.get("web:carol") in (None, "stopped")


def test_alias_endpoints(slum: Slum) -> None:
    from slum.client import Client
    from slum.errors import BadRequest, Conflict, NotFound

    slum.start()
    api = Client(f"unix:{slum.dir / 'slum.sock'}")
    api.add_tenant("alice", "local", "web")
    api.add_tenant("bob", "local", "web")
    tenant = api.add_alias("alice", "Shop.Example.com")
    assert tenant["id"] == "alice" and tenant["aliases"] == ["shop.example.com"]
    assert api.tenant("alice")["aliases"] == ["shop.example.com"]
    status, _, body = slum.http("GET", "/x", host="shop.example.com")  # routed before the answer
    assert (status, body) == (200, b"web:alice /x")
    with pytest.raises(Conflict, match="alias of tenant alice"):
        api.add_alias("bob", "shop.example.com")
    with pytest.raises(BadRequest, match="invalid domain"):
        api.add_alias("bob", "not a domain")
    with pytest.raises(NotFound):
        api.add_alias("nobody", "x.example.com")
    # The dashboard's prefix answers the same, and the status codes are the documented ones.
    added = api.request("POST", "/_/api/tenants/bob/aliases", {"domain": "b.example.com"})
    assert added["aliases"] == ["b.example.com"]
    with pytest.raises(BadRequest):
        api.request("POST", "/_/api/tenants/bob/aliases", {"domain": 7})
    with pytest.raises(NotFound):
        api.remove_alias("bob", "shop.example.com")  # alice's, not bob's
    assert api.remove_alias("alice", "shop.example.com")["aliases"] == []
    assert slum.http("GET", "/", host="shop.example.com")[0] == 404
    assert api.request("DELETE", "/_/api/tenants/bob/aliases/b.example.com")["aliases"] == []
    paths = api.request("GET", "/_/api/openapi.json")["paths"]
    for prefix in ("/api", "/_/api"):
        assert {"post"} <= set(paths[f"{prefix}/tenants/{{tenant_id}}/aliases"])
        assert {"delete"} <= set(paths[f"{prefix}/tenants/{{tenant_id}}/aliases/{{domain}}"])


def test_a_node_that_accepts_and_never_answers_holds_a_view_a_few_seconds_at_most(tmp_path: Path) -> None:
    """A dead host the checker has not marked offline yet: the views that ask it answer within
    nodes.READ_TIMEOUT_S (it used to be 10 s in a worker thread); once it is marked offline,
    they answer at once and do not ask it at all."""
    from slum.fleet.nodes import READ_TIMEOUT_S
    from slum.store import connect
    from slum.store.registry import bump_version

    accepted: list[socket.socket] = []
    hole = socket.create_server(("127.0.0.1", 0))
    hole.settimeout(0.2)
    done = threading.Event()

    def swallow() -> None:  # accepts every connection, reads nothing, answers nothing
        while not done.is_set():
            try:
                accepted.append(hole.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=swallow, daemon=True)
    thread.start()
    router = Slum(tmp_path, free_port())
    write_config(tmp_path, "[settings]\nnode_check_interval = 3600\n")
    db = ["--database", str(router.database)]
    token = router.cli("token-gen", *db, check=True).stdout.strip()
    auth = {"Authorization": f"Bearer {token}"}
    try:
        router.start()
        router.cli("server-add", f"127.0.0.1:{hole.getsockname()[1]}", "-n", "hole", *db, check=True)
        # placed by hand: a tenant-add would wait for the hole to take it
        conn = connect(router.database)
        with conn:
            conn.execute(
                "INSERT INTO tenants (id, server_id, status, created_at) SELECT "
                "'stuck', id, 'active', '2026-01-01' FROM servers WHERE name = 'hole'"
            )
            bump_version(conn)
        conn.close()

        def timed(path: str) -> tuple[float, int, bytes]:
            started = time.monotonic()
            status, _, body = router.http("GET", path, headers=auth)
            return time.monotonic() - started, status, body

        took, status, body = timed("/_/api/logs?tenant_id=stuck")
        assert status == 502 and b"did not answer within" in body
        assert READ_TIMEOUT_S - 0.5 < took < READ_TIMEOUT_S + 2
        took, status, body = timed("/_/api/instances?all=1")
        assert status == 200 and took < READ_TIMEOUT_S + 2
        hole_row = next(i for i in json.loads(body) if i["server"] == "hole")
        assert hole_row["id"] == "hole:?" and "did not answer" in hole_row["reason"]
        took, status, body = timed("/_/api/fleet/tenants?id=stuck")
        assert status == 200 and took < READ_TIMEOUT_S + 2
        assert "did not answer" in json.loads(body)[0]["error"]
        asked = len(accepted)
        assert asked >= 3

        # marked offline (as the checker writes it): nobody asks the hole any more
        conn = connect(router.database)
        with conn:
            conn.execute("UPDATE servers SET status = 'offline' WHERE name = 'hole'")
            bump_version(conn)
        conn.close()
        for path in (
            "/_/api/logs?tenant_id=stuck",
            "/_/api/instances?all=1",
            "/_/api/fleet/tenants?id=stuck",
            "/_/api/fleet/servers",
            "/_/api/fleet/logs",
        ):
            took, status, body = timed(path)
            assert took < 1, path
            assert b"server hole is offline" in body, (path, body)
        assert len(accepted) == asked
    finally:
        done.set()
        thread.join()
        for sock in [hole, *accepted]:
            sock.close()
        if router.proc is not None and router.proc.poll() is None:
            router.stop()
