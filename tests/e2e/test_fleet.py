"""A fleet on one machine: three real nodes and a router, each its own `slum serve`."""

from __future__ import annotations

import json
import signal
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
            tokens.append(node.cli("token-gen", "--database", str(node.database),
                                   check=True).stdout.strip())
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
    for i, (node, token) in enumerate(zip(nodes, tokens, strict=True)):
        router.cli("server-add", f"127.0.0.1:{node.port}", "-n", f"n{i}", "--token", token, *db,
                   check=True)
    placed = {}
    for t in ("t1", "t2", "t3", "t4", "t5", "t6"):
        out = router.cli("tenant-add", t, "--service", "web", *db, check=True).stdout
        placed[t] = out.split()[-1]
    # even placement across the three nodes; the router itself runs no processes
    assert sorted(placed.values()) == ["n0", "n0", "n1", "n1", "n2", "n2"]
    servers = json.loads(router.cli("server-list", "--json", *db, check=True).stdout)
    assert {s["name"]: s["status"] for s in servers}["n0"] == "online"

    for tenant, server in placed.items():
        status, _, body = wait_until(lambda t=tenant: (
            r := router.http("GET", "/where", host=f"{t}.localhost"))[0] == 200 and r)
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
    status, _, body = victim.http("GET", "/", headers={"X-Tenant-ID": "t1",
                                                        "X-Slum-Router": "slum_forged"})
    assert b"web:t1" not in body

    # an alias routes to its tenant
    router.cli("alias-add", "shop.example.com", "t2", *db, check=True)
    status, _, body = wait_until(lambda: (r := router.http("GET", "/", host="shop.example.com"))[0]
                                 == 200 and r)
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
    wait_until(lambda: dead_name + " " in router.cli("status", check=True).stdout
               and "offline" in router.cli("status", check=True).stdout, timeout=10)
    started = time.monotonic()
    status, _, body = router.http("GET", "/", host="t1.localhost")
    assert status == 502 and dead_name.encode() in body
    assert time.monotonic() - started < 1
    other = next(t for t, s in placed.items() if s != dead_name)
    assert router.http("GET", "/", host=f"{other}.localhost")[0] == 200
    status_json = router.cli_json("status")
    assert {s["name"]: s["status"] for s in status_json["server_list"]}[dead_name] == "offline"

    # back: online again and served again
    dead.start()
    wait_until(lambda: router.http("GET", "/", host="t1.localhost")[0] == 200, timeout=20)

    # moving a tenant: stopped there, served here
    target = next(s for s in ("n0", "n1", "n2") if s != placed["t4"])
    r = router.cli("tenant-move", "t4", "--to", target, *db, check=True)
    assert "not copied" in r.stderr
    status, _, body = wait_until(lambda: (rr := router.http("GET", "/", host="t4.localhost"))[0]
                                 == 200 and rr)
    assert body == b"web:t4 /"
    assert "web:t4" in [i["id"] for i in nodes[int(target[1])].cli_json("ps")]

    # removing a tenant stops it on its node
    holder = nodes[int(placed["t5"][1])]
    router.cli("tenant-remove", "t5", *db, check=True)
    assert {i["id"]: i["status"] for i in holder.cli_json("ps")}.get("web:t5") in (None, "stopped")
    assert wait_until(lambda: router.http("GET", "/", host="t5.localhost")[0] == 404)
