"""Fleet operations with real node clients: what a move answers when it cannot happen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slum.errors import Conflict
from slum.fleet import nodes, registry
from slum.store import connect
from tests.conftest import free_port


@pytest.fixture
def transact(tmp_path: Path) -> Iterator[Any]:
    conn = connect(tmp_path / "slum.db")

    def run(step: Any) -> Any:
        with conn:
            return step(conn)

    yield run
    conn.close()


def test_moving_a_tenant_where_it_already_is_is_a_conflict(transact: Any) -> None:
    transact(lambda c: registry.add_tenant(c, "alice", registry.LOCAL))
    with pytest.raises(Conflict) as caught:
        nodes.move_tenant(transact, "alice", registry.LOCAL)
    assert caught.value.status == 409 and "already on server local" in caught.value.message


def test_moving_a_tenant_to_a_node_that_does_not_answer_is_a_bad_gateway(transact: Any) -> None:
    transact(lambda c: registry.add_tenant(c, "alice", registry.LOCAL))
    transact(lambda c: registry.add_server(c, f"127.0.0.1:{free_port()}", "gone"))
    with pytest.raises(nodes.NodeFailed) as caught:
        nodes.move_tenant(transact, "alice", "gone")
    assert caught.value.status == 502 and "gone" in caught.value.message
    # nothing moved
    assert transact(lambda c: registry.get_tenant(c, "alice"))["server"] == registry.LOCAL


async def test_the_checker_skips_an_invalid_row_and_checks_the_others(tmp_path: Path) -> None:
    from slum.store.db import Store

    store = Store(tmp_path / "slum.db")
    try:
        await store.write(lambda c: registry.add_server(c, f"127.0.0.1:{free_port()}", "down"))
        await store.write(lambda c: c.execute(
            "INSERT INTO servers (id, name, address, created_at, status) "
            "VALUES ('x', 'bad', '[::1', '2026-01-01', 'online')"))
        checker = nodes.NodeChecker(0.1)
        reports: list[tuple[str, str]] = []

        async def changed() -> None:
            pass

        for _ in range(nodes.OFFLINE_AFTER):
            await checker.check(store.read, store.write, changed,
                                lambda name, status: reports.append((name, status)))
        assert [name for name, _ in reports] == ["down"]
        assert "bad" not in checker.nodes
        statuses = {s["name"]: s["status"]
                    for s in await store.read(registry.list_servers)}
        assert statuses == {"local": "online", "down": "offline", "bad": "invalid"}
    finally:
        store.close()
