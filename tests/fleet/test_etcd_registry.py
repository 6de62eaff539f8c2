"""The Registry contract on both backends (SQLite, and etcd on a real 3-member cluster), two
"routers" racing on one registry, and what only etcd does: the watch, outages, catch-up and the
majority view of node health."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import trio

from slum.errors import BadRequest, Conflict, NotFound, Unavailable
from slum.fleet import placement
from slum.fleet.etcd import Etcd
from slum.fleet.etcd_registry import EtcdRegistry
from slum.fleet.registry import Registry
from slum.store.db import Store
from slum.store.registry import RouteSnapshot, SqliteRegistry
from tests.fleet.etcd_cluster import EtcdCluster, etcd_cluster_fixture, needs_etcd  # noqa: F401

pytestmark = needs_etcd

# Opens a registry backend: each call is another "router" on the same registry.
Open = Callable[[], Registry]


@pytest.fixture(params=["sqlite", "etcd"])
async def open_registry(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Open]:
    closers: list[Any] = []
    if request.param == "sqlite":

        def open_() -> Registry:
            store = Store(tmp_path / "slum.db")
            closers.append(store.close)
            return SqliteRegistry(store)

        yield open_
        for close in closers:
            close()
    else:
        cluster: EtcdCluster = request.getfixturevalue("etcd_cluster")

        def open_() -> Registry:
            reg = EtcdRegistry(Etcd(cluster.urls), "/slum-test/")
            closers.append(reg.aclose)
            return reg

        yield open_
        for close in closers:
            await close()


async def test_the_contract(open_registry: Open) -> None:
    reg = open_registry()
    local = await reg.ensure_local()
    assert local.local and [s.name for s in await reg.servers()] == ["local"]
    assert (await reg.ensure_local(0, set_capacity=True)).capacity == 0
    assert (await reg.ensure_local(None, set_capacity=True)).capacity is None

    a = await reg.add_server("a", "http://127.0.0.1:9001", "tok", 2)
    assert (a.name, a.address, a.token, a.capacity, a.status) == (
        "a",
        "http://127.0.0.1:9001",
        "tok",
        2,
        "online",
    )
    with pytest.raises(Conflict):
        await reg.add_server("a", "http://127.0.0.1:9002")
    assert (await reg.server(a.id)).name == "a" and (await reg.server("a")).id == a.id
    with pytest.raises(NotFound):
        await reg.server("nope")

    t1 = await reg.add_tenant("t1", placement.named("a"), "web", "cfg")
    assert (t1.server_id, t1.server, t1.service, t1.config, t1.status) == (a.id, "a", "web", "cfg", "active")
    with pytest.raises(Conflict):
        await reg.add_tenant("t1", placement.least_loaded)
    await reg.add_tenant("t2", placement.named("a"))
    with pytest.raises(Conflict, match="no online server has room"):
        await reg.add_tenant(
            "t3", lambda servers: placement.least_loaded([s for s in servers if s.name == "a"])
        )
    assert (await reg.server("a")).tenant_count == 2

    with pytest.raises(BadRequest):
        await reg.remove_server("local")
    with pytest.raises(Conflict, match="has 2 tenants"):
        await reg.remove_server("a")

    assert (await reg.add_alias("shop.example.com", "t1")).aliases == ("shop.example.com",)
    assert (await reg.add_alias("shop.example.com", "t1")).aliases == ("shop.example.com",)
    with pytest.raises(Conflict, match="alias of tenant t1"):
        await reg.add_alias("shop.example.com", "t2")
    with pytest.raises(NotFound):
        await reg.add_alias("x.example.com", "nobody")

    moved = await reg.move_tenant("t1", local.id, from_server_id=a.id)
    assert moved.server == "local" and moved.aliases == ("shop.example.com",)
    with pytest.raises(Conflict, match="moved meanwhile"):
        await reg.move_tenant("t1", a.id, from_server_id=a.id)

    await reg.set_server_status(a.id, "offline")
    await reg.set_server_status("no-such-id", "offline")  # ignored
    assert (await reg.server("a")).status == "offline"
    await reg.set_server_status(a.id, "online")
    assert (await reg.server("a")).status == "online"

    before = await reg.snapshot()
    removed = await reg.remove_tenant("t1")
    assert removed.aliases == ("shop.example.com",)
    with pytest.raises(NotFound):
        await reg.tenant("t1")
    with pytest.raises(NotFound):
        await reg.remove_alias("shop.example.com")
    after = await reg.snapshot()
    assert after.version > before.version and after.aliases == ()
    assert [t.id for t in await reg.tenants()] == ["t2"]
    await reg.remove_tenant("t2")
    assert (await reg.remove_server("a")).name == "a"
    assert [s.name for s in await reg.servers()] == ["local"]


async def test_two_routers_racing_never_place_a_tenant_twice_or_lose_one(open_registry: Open) -> None:
    a, b = open_registry(), open_registry()
    await a.ensure_local()
    small = await a.add_server("small", "http://127.0.0.1:9001", capacity=3)
    await a.add_server("big", "http://127.0.0.1:9002")
    ids = [f"t{i}" for i in range(12)]
    outcomes: dict[str, list[str]] = {t: [] for t in ids}

    async def add(reg: Registry, tenant_id: str) -> None:
        try:
            placed = await reg.add_tenant(tenant_id, placement.least_loaded)
            outcomes[tenant_id].append(placed.server or "?")
        except Conflict:
            outcomes[tenant_id].append("conflict")

    async with trio.open_nursery() as nursery:
        for t in ids:  # every tenant added by both routers at once
            nursery.start_soon(add, a, t)
            nursery.start_soon(add, b, t)
    for t, got in outcomes.items():
        assert got.count("conflict") == 1 and len(got) == 2, (t, got)
    tenants = await b.tenants()
    assert sorted(t.id for t in tenants) == sorted(ids)
    assert (await b.server(small.id)).tenant_count <= 3  # never over capacity


@pytest.mark.parametrize("open_registry", ["etcd"], indirect=True)
async def test_a_change_by_one_router_reaches_the_others_changes_within_a_second(open_registry: Open) -> None:
    a, b = open_registry(), open_registry()
    await a.ensure_local()
    seen: list[tuple[float, RouteSnapshot]] = []

    async def follow() -> None:
        # aclosing: the generator (and its watch) is closed when this task is cancelled, not
        # left to the garbage collector.
        async with aclosing(b.changes()) as snaps:  # type: ignore[type-var]
            async for snap in snaps:
                seen.append((time.monotonic(), snap))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        await _until(lambda: bool(seen), 5)
        for i in range(5):
            sent = time.monotonic()
            await a.add_tenant(f"t{i}", placement.least_loaded)
            await _until(lambda i=i: any(t.id == f"t{i}" for t in seen[-1][1].tenants), 1, 0.005)
            assert seen[-1][0] - sent < 1.0
        nursery.cancel_scope.cancel()
    versions = [s.version for _, s in seen]
    assert versions == sorted(versions)


async def _until(predicate: Callable[[], bool], limit_s: float = 15, step_s: float = 0.05) -> None:
    with trio.fail_after(limit_s):
        while True:
            if predicate():
                return
            await trio.sleep(step_s)


@needs_etcd
async def test_an_outage_keeps_the_last_table_refuses_writes_and_catches_up(
    etcd_cluster: EtcdCluster,
) -> None:
    m0, m1, m2 = etcd_cluster.members
    writer = EtcdRegistry(Etcd(etcd_cluster.urls, timeout=1.0))
    # This router reaches etcd only through m0: when m0 is down, it is cut off.
    router = EtcdRegistry(Etcd([m0.url], timeout=1.0))
    await writer.ensure_local()
    await writer.add_tenant("before", placement.least_loaded)
    latest: list[RouteSnapshot] = []

    async def follow() -> None:
        async with aclosing(router.changes()) as snaps:  # type: ignore[type-var]
            async for snap in snaps:
                latest.append(snap)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            await _until(lambda: router.health().up)
            assert [t.id for t in latest[-1].tenants] == ["before"]

            m0.kill()
            await _until(lambda: not router.health().up)
            reason = router.health().reason or ""
            assert m0.url in reason and "refused" in reason
            # reads go on from the last known state; writes say why they cannot
            assert [t.id for t in await router.tenants()] == ["before"]
            with pytest.raises(Unavailable) as caught:
                await router.add_tenant("x", placement.least_loaded)
            assert caught.value.status == 503 and m0.url in caught.value.message

            # the rest of the cluster has quorum: the others go on writing
            await writer.add_tenant("during", placement.least_loaded)
            await writer.remove_tenant("before")

            m0.start()
            await _until(lambda: router.health().up)
            # caught up from the last revision it saw: the delete too
            await _until(lambda: [t.id for t in latest[-1].tenants] == ["during"])

            # quorum lost: every member refuses, the reason says so
            m1.kill()
            m2.kill()
            await _until(lambda: not router.health().up)
            with pytest.raises(Unavailable):
                await writer.add_tenant("y", placement.least_loaded)
            m1.start()
            m2.start()
            await _until(lambda: router.health().up, 30)
            # members that just came back may refuse for a moment while they catch up
            with trio.fail_after(15):
                while True:
                    try:
                        await writer.add_tenant("after", placement.least_loaded)
                        break
                    except Unavailable:
                        await trio.sleep(0.2)
            await _until(lambda: {t.id for t in latest[-1].tenants} == {"during", "after"})
            nursery.cancel_scope.cancel()
    finally:
        await writer.aclose()
        await router.aclose()


@needs_etcd
async def test_node_status_is_what_the_majority_of_live_routers_see(etcd_cluster: EtcdCluster) -> None:
    routers = [EtcdRegistry(Etcd(etcd_cluster.urls), router=f"r{i}") for i in range(3)]
    try:
        async with trio.open_nursery() as nursery:
            for r in routers:
                await nursery.start(r.run)
            await _until(lambda: all(r._lease for r in routers))
            await routers[0].ensure_local()
            node = await routers[0].add_server("n", "http://127.0.0.1:9001")
            # one router alone sees it offline: not the fleet's truth
            await routers[0].set_server_status(node.id, "offline")
            assert (await routers[1].server("n")).status == "online"
            # a second one agrees: 2 of 3 live routers
            await routers[1].set_server_status(node.id, "offline")
            assert (await routers[2].server("n")).status == "offline"
            await routers[0].set_server_status(node.id, "online")
            await routers[1].set_server_status(node.id, "online")
            assert (await routers[2].server("n")).status == "online"
            nursery.cancel_scope.cancel()
    finally:
        for r in routers:
            await r.aclose()
