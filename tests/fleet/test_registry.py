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
