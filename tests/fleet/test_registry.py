from __future__ import annotations

from pathlib import Path

import pytest

from slum.errors import BadRequest, Conflict, NotFound
from slum.fleet import registry
from slum.store import connect


@pytest.fixture
def conn(tmp_path: Path):  # type: ignore[no-untyped-def]
    c = connect(tmp_path / "slum.db")
    yield c
    c.close()


def test_local_server_always_exists(conn) -> None:  # type: ignore[no-untyped-def]
    assert [s["name"] for s in registry.list_servers(conn)] == ["local"]
    with pytest.raises(BadRequest):
        registry.remove_server(conn, "local")


def test_placement_balances_and_respects_capacity(conn) -> None:  # type: ignore[no-untyped-def]
    registry.add_server(conn, "127.0.0.1:9001", "a")
    registry.add_server(conn, "http://127.0.0.1:9002", "b", capacity=1)
    placed = [registry.add_tenant(conn, f"t{i}")["server"] for i in range(5)]
    counts = {s["name"]: s["tenant_count"] for s in registry.list_servers(conn)}
    assert counts["b"] == 1  # full after one
    assert abs(counts["a"] - counts["local"]) <= 1 and sum(counts.values()) == 5
    assert placed[0] in ("local", "a", "b")


def test_offline_and_unknown_servers_are_refused(conn) -> None:  # type: ignore[no-untyped-def]
    s = registry.add_server(conn, "127.0.0.1:9001", "a")
    registry.set_server_status(conn, s["id"], "offline")
    with pytest.raises(Conflict, match="offline"):
        registry.add_tenant(conn, "x", "a")
    with pytest.raises(NotFound):
        registry.add_tenant(conn, "x", "nope")
    assert registry.add_tenant(conn, "x")["server"] == "local"


def test_bad_input(conn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadRequest):
        registry.add_tenant(conn, "../x")
    with pytest.raises(BadRequest):
        registry.add_server(conn, "ftp://x")
    registry.add_tenant(conn, "alice", service="notes")
    with pytest.raises(Conflict):
        registry.add_tenant(conn, "alice")
    registry.add_server(conn, "127.0.0.1:9001", "a")
    with pytest.raises(Conflict):
        registry.add_server(conn, "127.0.0.1:9001", "a")
    registry.add_tenant(conn, "bob", "a")
    with pytest.raises(Conflict, match="has 1 tenants"):
        registry.remove_server(conn, "a")


def test_changes_bump_the_version(conn) -> None:  # type: ignore[no-untyped-def]
    before = registry.registry_version(conn)
    registry.add_tenant(conn, "alice")
    after = registry.registry_version(conn)
    registry.remove_tenant(conn, "alice")
    assert len({before, after, registry.registry_version(conn)}) == 3


@pytest.mark.parametrize("address", [
    "[::1", "x:y", "http://a:b:c", "[zz]:80", "http://\x00", "http://host:0", "http://host:65536",
    "ftp://host:1", "http://", ":80", "host:80/path", "http://user@host:80", "http://ho st:1",
    "http://-bad-.example:80", "[::1]x", "::1:80", "http://h:\uff18\uff10",
])
def test_addresses_are_parsed_fully(conn, address: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadRequest, match=r"invalid server address|empty"):
        registry.add_server(conn, address, "n")
    assert [s["name"] for s in registry.list_servers(conn)] == ["local"]


@pytest.mark.parametrize(("address", "stored"), [
    ("127.0.0.1:9001", "http://127.0.0.1:9001"),
    ("http://Node-1.Example.com:8080/", "http://node-1.example.com:8080"),
    ("[::1]:8080", "http://[::1]:8080"),
    ("http://[0:0::1]", "http://[::1]:80"),
    ("node7", "http://node7:80"),
])
def test_good_addresses_are_stored_normalized(conn, address: str, stored: str) -> None:  # type: ignore[no-untyped-def]
    assert registry.add_server(conn, address)["address"] == stored


def test_https_nodes_are_refused_with_the_reason(conn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadRequest, match="in clear"):
        registry.add_server(conn, "https://node.example.com:8443", "n")


def test_a_stored_address_that_does_not_parse_is_invalid_and_never_routed(conn) -> None:  # type: ignore[no-untyped-def]
    good = registry.add_server(conn, "127.0.0.1:9001", "good")
    registry.add_tenant(conn, "t1", "good")
    conn.execute("INSERT INTO servers (id, name, address, created_at, status) "
                 "VALUES ('bad-id', 'bad', 'http://a:b:c', '2026-01-01', 'online')")
    conn.execute("INSERT INTO tenants (id, server_id, status, created_at) "
                 "VALUES ('t2', 'bad-id', 'active', '2026-01-01')")
    servers = {s["name"]: s for s in registry.list_servers(conn)}
    assert servers["bad"]["status"] == "invalid" and "brackets" in servers["bad"]["reason"]
    assert servers["good"]["status"] == "online" and "reason" not in servers["good"]
    rows, _ = registry.route_rows(conn)
    status = {r[0]: r[5] for r in rows}
    assert status == {"t1": "online", "t2": "invalid"}
    # placement skips it; naming it says why
    assert registry.add_tenant(conn, "t3")["server"] in ("local", "good")
    with pytest.raises(Conflict, match="invalid"):
        registry.add_tenant(conn, "t4", "bad")
    assert good["status"] == "online"
