"""FleetService's multi-step operations against real nodes' sockets: what a move does when a
step fails, and that concurrent adds never place a tenant twice."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from slum.errors import Conflict, Unavailable
from slum.fleet import nodes, placement
from slum.fleet.service import FleetService
from slum.store.db import Store
from slum.store.registry import RouteSnapshot, SqliteRegistry, Tenant
from tests.conftest import free_port


@dataclass
class Node:
    """A real HTTP listener standing in for another slum node's API: it records what it is
    asked and answers 200 with `{}` (or runs `on_add` first)."""

    port: int = 0
    calls: list[tuple[str, str]] = field(default_factory=list)
    on_add: Callable[[], Awaitable[None]] | None = None
    refuse: int = 0  # answer POSTs with this status and an error, as a node that says no

    async def handle(self, stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        method, path, _ = lines[0].split(" ")
        length = next(
            (int(v) for k, _, v in (h.partition(": ") for h in lines[1:]) if k.lower() == "content-length"), 0
        )
        while len(body) < length:
            body += await stream.receive_some(65536)
        self.calls.append((method, path))
        if method == "POST" and self.on_add is not None:
            await self.on_add()
        status = b"200 OK"
        payload = json.dumps({}).encode()
        if method == "POST" and self.refuse:
            status = b"%d No" % self.refuse
            payload = json.dumps({"error": "tenant 'alice' exists already"}).encode()
        await stream.send_all(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(payload), payload)
        )
        await stream.aclose()


@pytest.fixture
async def node(nursery: trio.Nursery) -> AsyncIterator[Node]:
    n = Node()
    listeners = await nursery.start(trio.serve_tcp, n.handle, 0)
    n.port = listeners[0].socket.getsockname()[1]
    yield n


@pytest.fixture
def stopped() -> list[str]:
    return []


@pytest.fixture
async def service(store: Store, stopped: list[str]) -> FleetService:
    async def stop_here(tenant: Tenant) -> None:
        stopped.append(tenant.id)

    f = FleetService(SqliteRegistry(store), stop_here=stop_here)
    await f.registry.ensure_local()
    return f


async def test_moving_a_tenant_where_it_already_is_is_a_conflict(service: FleetService) -> None:
    await service.add_tenant("alice", "local")
    with pytest.raises(Conflict) as caught:
        await service.move_tenant("alice", "local")
    assert caught.value.status == 409 and "already on server local" in caught.value.message


async def test_a_node_that_does_not_take_the_tenant_leaves_everything_as_it_was(
    service: FleetService, stopped: list[str]
) -> None:
    await service.add_tenant("alice", "local")
    await service.add_server(f"127.0.0.1:{free_port()}", "gone")
    with pytest.raises(nodes.NodeFailed) as caught:
        await service.move_tenant("alice", "gone")
    assert caught.value.status == 502 and "gone" in caught.value.message
    assert (await service.tenant("alice")).server == "local" and stopped == []


async def test_a_move_that_loses_a_race_is_undone_on_the_target(
    service: FleetService, store: Store, node: Node, stopped: list[str]
) -> None:
    await service.add_tenant("alice", "local")
    await service.add_server(f"127.0.0.1:{node.port}", "there")
    await service.add_server(f"127.0.0.1:{free_port()}", "elsewhere")
    other = FleetService(SqliteRegistry(store))  # another writer of the same registry

    async def moved_meanwhile() -> None:
        tenant = await other.tenant("alice")
        target = await other.server("elsewhere")
        await other.registry.move_tenant("alice", target.id, from_server_id=tenant.server_id)

    node.on_add = moved_meanwhile
    with pytest.raises(Conflict, match="moved meanwhile"):
        await service.move_tenant("alice", "there")
    # Defined state: where the other writer put it, and the target node dropped it again.
    assert (await service.tenant("alice")).server == "elsewhere"
    assert node.calls == [("POST", "/api/tenants"), ("DELETE", "/api/tenants/alice")]
    assert stopped == []  # it never left here through this move


async def test_a_source_that_cannot_stop_it_keeps_the_move_and_says_so(service: FleetService) -> None:
    await service.add_server(f"127.0.0.1:{free_port()}", "down")
    await service.registry.add_tenant("bob", placement.named("down"))
    moved = await service.move_tenant("bob", "local")
    assert moved.tenant.server == "local" and moved.moved_from == "down"
    assert len(moved.warnings) == 1 and "server down did not remove tenant bob" in moved.warnings[0]


async def test_a_node_that_refuses_a_new_tenant_leaves_it_out_of_the_registry(
    service: FleetService, node: Node
) -> None:
    await service.add_server(f"127.0.0.1:{node.port}", "there")
    node.refuse = 409
    with pytest.raises(Unavailable) as caught:
        await service.add_tenant("alice", "there")
    assert caught.value.status == 503
    assert caught.value.message == ("server there did not take tenant alice: tenant 'alice' exists already")
    assert await service.tenants() == []
    assert node.calls == [("POST", "/api/tenants")]


async def test_removing_stops_the_instance_here_and_unregisters_on_a_node(
    service: FleetService, node: Node, stopped: list[str]
) -> None:
    await service.add_tenant("alice", "local")
    await service.add_server(f"127.0.0.1:{node.port}", "there")
    await service.add_tenant("bob", "there")
    await service.remove_tenant("alice")
    await service.remove_tenant("bob")
    assert stopped == ["alice"]
    assert node.calls == [("POST", "/api/tenants"), ("DELETE", "/api/tenants/bob")]
    assert await service.tenants() == []


async def test_concurrent_adds_never_place_a_tenant_twice_nor_overfill(tmp_path: Path) -> None:
    # Two stores on one file: two processes' worth of connections and write locks.
    stores = [Store(tmp_path / "slum.db") for _ in range(2)]
    try:
        services = [FleetService(SqliteRegistry(s)) for s in stores]
        await services[0].registry.ensure_local(0, set_capacity=True)  # no room here
        await services[0].add_server("127.0.0.1:9", "tiny", capacity=1)  # one slot there
        outcomes: list[str] = []

        async def add(service: FleetService, tenant_id: str, place: placement.Place) -> None:
            try:
                await service.registry.add_tenant(tenant_id, place)
                outcomes.append(f"{tenant_id}:ok")
            except Conflict:
                outcomes.append(f"{tenant_id}:conflict")

        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(add, services[i % 2], "same", placement.least_loaded)
                nursery.start_soon(add, services[i % 2], f"t{i}", placement.least_loaded)
        # One tenant id, one placement; one free slot, one taker (16 adds for 1 slot).
        assert sum(o.endswith(":ok") for o in outcomes) == 1, outcomes
        assert len(outcomes) == 16
        tenants = await services[1].tenants()
        assert len(tenants) == 1 and tenants[0].server == "tiny"
        # With room for all: still one "dup", whichever writer wins.
        await services[0].registry.ensure_local(None, set_capacity=True)
        outcomes.clear()
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(add, services[i % 2], "dup", placement.least_loaded)
        assert sorted(outcomes) == ["dup:conflict"] * 7 + ["dup:ok"]
        assert [t.id for t in await services[0].tenants()].count("dup") == 1
    finally:
        for s in stores:
            s.close()


async def test_the_checker_skips_an_invalid_row_and_checks_the_others(
    store: Store, service: FleetService
) -> None:
    from slum.fleet import registry

    await service.add_server(f"127.0.0.1:{free_port()}", "down")
    await store.write(
        lambda c: c.execute(
            "INSERT INTO servers (id, name, address, created_at, status) "
            "VALUES ('x', 'bad', '[::1', '2026-01-01', 'online')"
        )
    )
    checker = nodes.NodeChecker(0.1)
    reports: list[tuple[str, str]] = []
    for _ in range(nodes.OFFLINE_AFTER):
        await checker.check(service.registry, lambda name, status: reports.append((name, status)))
    assert [name for name, _ in reports] == ["down"]
    assert "bad" not in checker.nodes
    statuses = {s.name: registry.status_of(s)[0] for s in await service.servers()}
    assert statuses == {"local": "online", "down": "offline", "bad": "invalid"}


async def test_a_write_by_another_process_reaches_the_edge(store: Store, tmp_path: Path) -> None:
    seen = trio.Event()

    def publish(snap: RouteSnapshot) -> None:
        if [t.id for t in snap.tenants] == ["alice"]:
            seen.set()

    service = FleetService(SqliteRegistry(store, check_s=0.05), publish=publish)
    await service.registry.ensure_local()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(service.follow_changes)
        other = Store(tmp_path / "slum.db")
        try:
            await FleetService(SqliteRegistry(other)).add_tenant("alice", "local")
        finally:
            other.close()
        with trio.fail_after(5):
            await seen.wait()
        nursery.cancel_scope.cancel()


class OutvotedRegistry(SqliteRegistry):
    """The SQLite registry, but the fleet's status of a node stays as the other routers voted
    (online): what a router in the minority meets on a shared registry."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.own_views: list[tuple[str, str]] = []

    async def set_server_status(self, server_id: str, status: str) -> None:
        self.own_views.append((server_id, status))


async def test_a_router_outvoted_on_a_node_says_so_once(store: Store) -> None:
    registry = OutvotedRegistry(store)
    await registry.ensure_local()
    service = FleetService(registry)
    await service.add_server(f"127.0.0.1:{free_port()}", "down")
    checker = nodes.NodeChecker(0.1)
    reports: list[tuple[str, str]] = []
    for _ in range(nodes.OFFLINE_AFTER + 3):
        await checker.check(registry, lambda name, status: reports.append((name, status)))
    assert [(name, status.split(":")[0]) for name, status in reports] == [("down", "offline")]
    # its own view is still written each round, for the majority to count
    assert len(registry.own_views) == 4 and {s for _, s in registry.own_views} == {"offline"}
