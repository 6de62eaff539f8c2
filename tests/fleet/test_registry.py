"""The registry through FleetService on a real SQLite file: placement, validation, what is
refused, and what routing reads."""

from __future__ import annotations

import pytest

from slum.errors import BadRequest, Conflict, NotFound
from slum.fleet import placement, registry
from slum.fleet.service import FleetService
from slum.proxy.routing import RouteTable
from slum.store.db import Store
from tests.fleet.conftest import Published


async def names(fleet: FleetService) -> list[str]:
    return [s.name for s in await fleet.servers()]


async def test_local_server_always_exists(fleet: FleetService) -> None:
    assert await names(fleet) == ["local"]
    with pytest.raises(BadRequest):
        await fleet.remove_server("local")


async def test_placement_balances_and_respects_capacity(fleet: FleetService) -> None:
    await fleet.add_server("127.0.0.1:9001", "a")
    await fleet.add_server("http://127.0.0.1:9002", "b", capacity=1)
    # Placed in the registry only: these nodes are not running, so place on the registry.
    from slum.fleet import placement

    for i in range(5):
        await fleet.registry.add_tenant(f"t{i}", placement.least_loaded)
    counts = {s.name: s.tenant_count for s in await fleet.servers()}
    assert counts["b"] == 1  # full after one
    assert abs(counts["a"] - counts["local"]) <= 1 and sum(counts.values()) == 5


async def test_offline_and_unknown_servers_are_refused(fleet: FleetService) -> None:
    s = await fleet.add_server("127.0.0.1:9001", "a")
    await fleet.registry.set_server_status(s.id, "offline")
    with pytest.raises(Conflict, match="offline"):
        await fleet.add_tenant("x", "a")
    with pytest.raises(NotFound):
        await fleet.add_tenant("x", "nope")
    assert (await fleet.add_tenant("x")).server == "local"


async def test_bad_input(fleet: FleetService) -> None:
    with pytest.raises(BadRequest):
        await fleet.add_tenant("../x")
    with pytest.raises(BadRequest):
        await fleet.add_server("ftp://x")
    with pytest.raises(BadRequest, match="capacity"):
        await fleet.add_server("127.0.0.1:9009", "c", capacity=0)
    await fleet.add_tenant("alice", service="notes")
    with pytest.raises(Conflict):
        await fleet.add_tenant("alice")
    await fleet.add_server("127.0.0.1:9001", "a")
    with pytest.raises(Conflict):
        await fleet.add_server("127.0.0.1:9001", "a")
    from slum.fleet import placement

    await fleet.registry.add_tenant("bob", placement.named("a"))
    with pytest.raises(Conflict, match="has 1 tenants"):
        await fleet.remove_server("a")


async def test_every_change_reaches_the_edge_with_a_newer_version(
    fleet: FleetService, published: Published
) -> None:
    await fleet.add_tenant("alice")
    await fleet.add_alias("alice", "Shop.Example.com.")
    await fleet.remove_tenant("alice")
    versions = [p.version for p in published]
    assert versions == sorted(set(versions)) and len(versions) == 3
    assert [a.domain for a in published[1].aliases] == ["shop.example.com"]
    assert published[-1].tenants == () and published[-1].aliases == ()


async def test_aliases(fleet: FleetService) -> None:
    await fleet.add_tenant("alice")
    await fleet.add_tenant("bob")
    assert (await fleet.add_alias("alice", "shop.example.com")).aliases == ("shop.example.com",)
    assert (await fleet.add_alias("alice", "shop.example.com")).aliases == ("shop.example.com",)
    with pytest.raises(Conflict, match="alias of tenant alice"):
        await fleet.add_alias("bob", "shop.example.com")
    for bad in ("", "no-dot", "a..b", "x/y.com", "-a.com", 7):
        with pytest.raises(BadRequest):
            await fleet.add_alias("alice", bad)  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        await fleet.add_alias("nobody", "x.example.com")
    with pytest.raises(NotFound):
        await fleet.remove_alias("shop.example.com", "bob")
    assert (await fleet.remove_alias("shop.example.com", "alice")).aliases == ()
    with pytest.raises(NotFound):
        await fleet.remove_alias("shop.example.com")


@pytest.mark.parametrize(
    "address",
    [
        "[::1",
        "x:y",
        "http://a:b:c",
        "[zz]:80",
        "http://\x00",
        "http://host:0",
        "http://host:65536",
        "ftp://host:1",
        "http://",
        ":80",
        "host:80/path",
        "http://user@host:80",
        "http://ho st:1",
        "http://-bad-.example:80",
        "[::1]x",
        "::1:80",
        "http://h:\uff18\uff10",
    ],
)
async def test_addresses_are_parsed_fully(fleet: FleetService, address: str) -> None:
    with pytest.raises(BadRequest, match=r"invalid server address|empty"):
        await fleet.add_server(address, "n")
    assert await names(fleet) == ["local"]


@pytest.mark.parametrize(
    ("address", "stored"),
    [
        ("127.0.0.1:9001", "http://127.0.0.1:9001"),
        ("http://Node-1.Example.com:8080/", "http://node-1.example.com:8080"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("http://[0:0::1]", "http://[::1]:80"),
        ("node7", "http://node7:80"),
    ],
)
async def test_good_addresses_are_stored_normalized(fleet: FleetService, address: str, stored: str) -> None:
    assert (await fleet.add_server(address)).address == stored


async def test_https_nodes_are_refused_with_the_reason(fleet: FleetService) -> None:
    with pytest.raises(BadRequest, match="in clear"):
        await fleet.add_server("https://node.example.com:8443", "n")


async def test_a_stored_address_that_does_not_parse_is_invalid_and_never_routed(
    fleet: FleetService, store: Store, published: Published
) -> None:
    from slum.fleet import placement

    good = await fleet.add_server("127.0.0.1:9001", "good")
    await fleet.registry.add_tenant("t1", placement.named("good"))
    await store.write(
        lambda c: c.execute(
            "INSERT INTO servers (id, name, address, created_at, status) "
            "VALUES ('bad-id', 'bad', 'http://a:b:c', '2026-01-01', 'online')"
        )
    )
    await store.write(
        lambda c: c.execute(
            "INSERT INTO tenants (id, server_id, status, created_at) "
            "VALUES ('t2', 'bad-id', 'active', '2026-01-01')"
        )
    )
    servers = {s.name: registry.server_dict(s) for s in await fleet.servers()}
    assert servers["bad"]["status"] == "invalid" and "brackets" in servers["bad"]["reason"]
    assert servers["good"]["status"] == "online" and "reason" not in servers["good"]
    rows, _ = registry.snapshot_rows(await fleet.registry.snapshot())
    assert {r.tenant: r.server_status for r in rows} == {"t1": "online", "t2": "invalid"}
    # placement skips it; naming it says why
    assert (await fleet.add_tenant("t3", "local")).server == "local"
    await fleet.registry.add_tenant("t5", placement.least_loaded)
    with pytest.raises(Conflict, match="invalid"):
        await fleet.add_tenant("t4", "bad")
    assert good.status == "online"


async def test_the_edge_routes_the_rows_the_fleet_publishes_as_they_are(
    fleet: FleetService, published: Published
) -> None:
    """RouteRow is what RouteTable holds (no 7-tuple to unpack): each field lands where the edge
    reads it, and a tenant without a service takes the default at publish time."""
    node = await fleet.add_server("127.0.0.1:9001", "far", token="slum_far")
    await fleet.registry.add_tenant("near", placement.named("local"), service="api")
    await fleet.registry.add_tenant("away", placement.named("far"))
    await fleet.registry.add_alias("shop.example.com", "away")
    rows, aliases = registry.snapshot_rows(await fleet.registry.snapshot())
    table = RouteTable("example.test", frozenset({"web"}))
    table.replace({r.tenant: r.serving("web") for r in rows}, aliases)
    near = table.resolve("near.example.test").tenant
    assert near == registry.RouteRow("near", "api", "local", None, "active", "online")
    away = table.resolve("shop.example.com").tenant
    assert away is not None and away.tenant == "away" and away.service == "web"
    assert (away.server, away.address, away.server_status) == ("far", node.address, "online")
    assert away.token == "slum_far" and "slum_far" not in repr(away)
    assert table.resolve("web.example.test").kind == "service"
    unset = next(r for r in rows if r.tenant == "away")
    assert unset.service is None and unset.serving(None) is unset
