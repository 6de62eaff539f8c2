"""Two routers sharing one fleet registry in a real 3-member etcd cluster, in front of three
nodes: every part is its own real process (`slum serve`, `etcd`), on loopback."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from slum.client import Client
from slum.errors import Conflict, SlumError
from tests.conftest import free_port
from tests.e2e.conftest import Slum, write_config
from tests.fleet.etcd_cluster import EtcdCluster, needs_etcd

pytestmark = [needs_etcd, pytest.mark.slow]

NODE_CONFIG = """
[settings]
data_dir = "./data"

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"
"""

ROUTER_CONFIG = """
[settings]
node_check_interval = 0.5
public_metrics = true
"""


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


class Fleet:
    def __init__(self, cluster: EtcdCluster, routers: list[Slum], nodes: list[Slum]) -> None:
        self.etcd = cluster
        self.routers = routers
        self.nodes = nodes

    @staticmethod
    def api(slum: Slum) -> Client:
        return Client(f"unix:{slum.dir / 'slum.sock'}", timeout=30)

    def serves(self, router: Slum, tenant: str) -> bool:
        try:
            status, _, body = router.http("GET", "/", host=f"{tenant}.localhost", timeout=10)
        except OSError:
            return False
        return status == 200 and body == f"web:{tenant} /".encode()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    (tmp_path / "etcd").mkdir()
    cluster = EtcdCluster(tmp_path / "etcd")
    everyone: list[Slum] = []
    try:
        cluster.start()
        nodes = []
        tokens = []
        for i in range(3):
            node = Slum(tmp_path / f"node{i}", free_port())
            node.dir.mkdir()
            write_config(node.dir, NODE_CONFIG)
            tokens.append(node.cli("token-gen", "--database", str(node.database), check=True).stdout.strip())
            everyone.append(node)
            node.start()
            nodes.append(node)
        routers = []
        for name in ("a", "b"):
            router = Slum(tmp_path / f"router-{name}", free_port())
            router.dir.mkdir()
            everyone.append(router)
            if name == "a":  # the registry in the config
                write_config(router.dir, ROUTER_CONFIG + f'registry = "{cluster.registry_url}"\n')
                router.start("tenement.toml")
            else:  # on the command line
                write_config(router.dir, ROUTER_CONFIG)
                router.start("tenement.toml", "--registry", cluster.registry_url)
            routers.append(router)
        api = Fleet.api(routers[0])
        for i, (node, token) in enumerate(zip(nodes, tokens, strict=True)):
            api.add_server(f"127.0.0.1:{node.port}", f"n{i}", token)
        yield Fleet(cluster, routers, nodes)
    finally:
        for s in everyone:
            if s.proc is not None and s.proc.poll() is None:
                try:
                    s.stop(signal.SIGTERM, timeout=15)
                except Exception:
                    s.stop(signal.SIGKILL)
        cluster.stop()


def test_two_routers_on_etcd_lose_no_tenant(fleet: Fleet) -> None:
    a, b = fleet.routers
    api_a, api_b = Fleet.api(a), Fleet.api(b)

    # A tenant added on router A is routed by router B within a second.
    api_a.add_tenant("first", service="web")
    sent = time.monotonic()

    def routed_by_b() -> bool:
        return b.http("GET", "/", host="first.localhost", timeout=10)[0] != 404

    wait_until(routed_by_b, timeout=1.0, step=0.01)
    assert time.monotonic() - sent < 1.0
    assert wait_until(lambda: fleet.serves(b, "first"))

    # Concurrent adds on both routers: every tenant placed exactly once, none lost.
    only_a = [f"a{i}" for i in range(3)]
    only_b = [f"b{i}" for i in range(3)]
    both = [f"s{i}" for i in range(3)]
    outcomes: dict[str, list[str]] = {t: [] for t in [*only_a, *only_b, *both]}

    def add(api: Client, tenant: str) -> None:
        try:
            api.add_tenant(tenant, service="web")
            outcomes[tenant].append("added")
        except Conflict:
            outcomes[tenant].append("conflict")

    with ThreadPoolExecutor(12) as pool:
        jobs = [pool.submit(add, api_a, t) for t in [*only_a, *both]]
        jobs += [pool.submit(add, api_b, t) for t in [*only_b, *both]]
        for job in jobs:
            job.result()
    for t in [*only_a, *only_b]:
        assert outcomes[t] == ["added"], (t, outcomes[t])
    for t in both:
        assert sorted(outcomes[t]) == ["added", "conflict"], (t, outcomes[t])
    everyone = ["first", *only_a, *only_b, *both]
    for api in (api_a, api_b):
        listed = [t["id"] for t in api.tenants()]
        assert sorted(listed) == sorted(everyone)
    # ...and each is registered on exactly one node
    on_nodes = [t["id"] for n in fleet.nodes for t in Fleet.api(n).tenants()]
    assert sorted(on_nodes) == sorted(everyone)
    for t in everyone:
        wait_until(lambda t=t: fleet.serves(a, t) and fleet.serves(b, t), timeout=20)

    # A node dies: both routers see it, the fleet's status (what most live routers see) says
    # offline, and both answer its tenants with a fast 502 naming it. Back: online again.
    placed = {t["id"]: t["server"] for t in api_a.tenants()}
    dead_name = placed["first"]
    dead = fleet.nodes[int(dead_name[1])]
    dead.stop(signal.SIGKILL)
    for api in (api_a, api_b):
        wait_until(
            lambda api=api: {s["name"]: s["status"] for s in api.servers()}[dead_name] == "offline",
            timeout=20,
        )
    for router in (a, b):
        status, _, body = router.http("GET", "/", host="first.localhost")
        assert status == 502 and dead_name.encode() in body
    alive = next(t for t, s in placed.items() if s != dead_name)
    assert fleet.serves(a, alive) and fleet.serves(b, alive)
    dead.start()
    for api in (api_a, api_b):
        wait_until(
            lambda api=api: {s["name"]: s["status"] for s in api.servers()}[dead_name] == "online", timeout=20
        )
    wait_until(lambda: fleet.serves(a, "first") and fleet.serves(b, "first"), timeout=20)

    # One etcd member down: the registry stays readable and writable, through either router.
    m0, m1, m2 = fleet.etcd.members
    m0.kill()
    api_b.add_tenant("one-down", service="web")
    wait_until(lambda: fleet.serves(a, "one-down"), timeout=20)
    assert "one-down" in [t["id"] for t in api_a.tenants()]

    # Two down: no quorum. Both routers keep routing, writes get 503, status says degraded.
    m1.kill()
    for router in (a, b):
        health = wait_until(
            lambda r=router: (h := json.loads(r.http("GET", "/api/health")[2]))["status"] == "degraded" and h,
            timeout=20,
        )
        assert health["registry"]["up"] is False and health["registry"]["reason"]
        assert router.http("GET", "/api/health")[0] == 200
    for router in (a, b):
        for t in [*everyone, "one-down"]:
            assert fleet.serves(router, t), (router.dir.name, t)
    with pytest.raises(SlumError) as caught:
        api_a.add_tenant("during-outage", service="web")
    assert caught.value.status == 503 and "etcd" in caught.value.message
    r = b.cli("tenant-add", "during-outage", "--service", "web", "--database", str(b.database))
    assert r.returncode != 0 and "etcd unavailable" in r.stderr and "Traceback" not in r.stderr
    out = b.cli("status", check=True).stdout
    assert "DEGRADED" in out
    metrics = b.http("GET", "/metrics")[2].decode()
    assert 'slum_registry_up{backend="etcd"} 0.0' in metrics

    # Members back: both routers catch up, and writes work again.
    m0.start()
    m1.start()
    fleet.etcd.wait_healthy()
    for router in (a, b):
        wait_until(lambda r=router: json.loads(r.http("GET", "/api/health")[2])["status"] == "ok", timeout=30)
    wait_until(lambda: _try_add(api_b, "after"), timeout=20)
    wait_until(lambda: fleet.serves(a, "after"), timeout=20)
    assert 'slum_registry_up{backend="etcd"} 1.0' in b.http("GET", "/metrics")[2].decode()

    # Router A dies: router B serves every tenant, with no change.
    a.stop(signal.SIGKILL)
    for t in [*everyone, "one-down", "after"]:
        assert fleet.serves(b, t), t
    # ...and B can still change the registry on its own.
    api_b.add_tenant("alone", service="web")
    wait_until(lambda: fleet.serves(b, "alone"), timeout=20)
    # With router A down, the CLI on its machine works on the registry its config names.
    listed = json.loads(a.cli("tenant-list", "--json", "--database", str(a.database), check=True).stdout)
    assert "alone" in [t["id"] for t in listed]
    assert m2.running


def _try_add(api: Client, tenant: str) -> bool:
    try:
        api.add_tenant(tenant, service="web")
        return True
    except Conflict:
        return True  # an earlier try got through after all
    except SlumError:
        return False
