from __future__ import annotations

import threading
import time
from pathlib import Path

import apsw
import pytest

from slum.errors import BadRequest
from slum.events import LogLine
from slum.fleet import registry
from slum.store import Store, connect
from slum.store import logs as logstore
from slum.store import registry as rows
from slum.store.ingest import insert_batch
from slum.store.migrations import MIGRATIONS

RUST_SCHEMA = """
CREATE TABLE IF NOT EXISTS servers (
    id TEXT PRIMARY KEY, name TEXT UNIQUE NOT NULL, address TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY, server_id TEXT NOT NULL REFERENCES servers(id), config TEXT,
    status TEXT NOT NULL DEFAULT 'active', created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS domain_aliases (
    domain TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id));
INSERT INTO servers VALUES ('7d1c', 'server-1', '10.0.0.1:9000', '2025-01-01T00:00:00+00:00');
INSERT INTO tenants VALUES ('romneys', '7d1c', '{"k":"v"}', 'active', '2025-01-02T00:00:00+00:00');
INSERT INTO domain_aliases VALUES ('romneys.example.com', 'romneys');
"""


def test_fresh_database_has_every_table(tmp_path: Path) -> None:
    conn = connect(tmp_path / "slum.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "servers",
        "tenants",
        "domain_aliases",
        "config",
        "tokens",
        "logs",
        "logs_fts",
        "metrics_history",
        "processes",
        "instances",
        "_migrations",
    } <= tables
    assert [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY name")] == [
        name for name, _ in MIGRATIONS
    ]
    assert next(conn.execute("PRAGMA journal_mode"))[0] == "wal"
    conn.close()
    # opening again applies nothing twice
    connect(tmp_path / "slum.db").close()


def test_database_of_the_rust_slum_is_migrated_and_served(tmp_path: Path) -> None:
    path = tmp_path / "slum.db"
    old = apsw.Connection(str(path))
    old.execute(RUST_SCHEMA)
    old.close()
    conn = connect(path)
    rows.ensure_local(conn)  # what a server does first on it
    servers = {s.name: registry.server_dict(s) for s in rows.list_servers(conn)}
    assert servers["server-1"]["address"] == "10.0.0.1:9000"
    assert servers["server-1"]["tenant_count"] == 1 and servers["server-1"]["status"] == "online"
    assert "local" in servers
    tenant = registry.tenant_dict(rows.get_tenant(conn, "romneys"))
    assert tenant["config"] == '{"k":"v"}' and tenant["server"] == "server-1"
    assert tenant["aliases"] == ["romneys.example.com"]
    routes, aliases = registry.snapshot_rows(rows.snapshot(conn))
    assert routes == [registry.RouteRow("romneys", None, "server-1", "10.0.0.1:9000", "active", "online")]
    assert aliases == {"romneys.example.com": "romneys"}


def test_token_hash_of_the_plan_moves_to_tokens(tmp_path: Path) -> None:
    path = tmp_path / "slum.db"
    old = apsw.Connection(str(path))
    old.execute(
        "CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
        "updated_at TEXT NOT NULL DEFAULT (datetime('now')));"
        "INSERT INTO config (key, value) VALUES ('auth_token_hash', '$argon2id$x');"
    )
    old.close()
    conn = connect(path)
    assert [r[1] for r in conn.execute("SELECT id, hash FROM tokens")] == ["$argon2id$x"]


def line(msg: str, instance: str = "web:a", level: str = "info", ts: float | None = None) -> LogLine:
    return LogLine(ts or time.time(), instance, instance.partition(":")[2], "stdout", level, msg)


def test_logs_insert_and_query(tmp_path: Path) -> None:
    conn = connect(tmp_path / "slum.db")
    with conn:
        first = insert_batch(
            conn,
            [
                line("payment failed for order 7"),
                line("user logged in", "web:b"),
                line("payment ok", level="warn"),
                line("disk almost full", level="error"),
            ],
        )
    assert first == 1

    def q(**kw):  # type: ignore[no-untyped-def]
        return [e["message"] for e in logstore.query(conn, logstore.LogQuery(**kw).validate())]

    assert q() == ["disk almost full", "payment ok", "user logged in", "payment failed for order 7"]
    assert q(search="payment") == ["payment ok", "payment failed for order 7"]
    assert q(search='"payment failed"') == ["payment failed for order 7"]
    assert q(search="pay*") == ["payment ok", "payment failed for order 7"]
    assert q(instance_id="web:b") == ["user logged in"]
    assert q(min_level="warn") == ["disk almost full", "payment ok"]
    assert q(level="error") == ["disk almost full"]
    assert q(limit=1, offset=1) == ["payment ok"]
    assert q(after_id=2) == ["payment ok", "disk almost full"]
    entry = logstore.query(conn, logstore.LogQuery(limit=1))[0]
    assert entry["timestamp"].endswith("Z") and entry["stream"] == "stdout"


@pytest.mark.parametrize(
    "hostile",
    [
        "foo AND (",
        "-foo",
        "foo:bar",
        "NEAR(",
        '"',
        "*",
        "a OR",
        "^x",
        "col:val AND",
        "'; DROP TABLE logs; --",
    ],
)
def test_fts_syntax_never_reaches_sqlite(tmp_path: Path, hostile: str) -> None:
    conn = connect(tmp_path / "slum.db")
    with conn:
        insert_batch(conn, [line("foo bar baz"), line("DROP TABLE logs")])
    try:
        logstore.query(conn, logstore.LogQuery(search=hostile))
    except BadRequest:
        pass  # a clear 400, never a SQL error
    assert next(conn.execute("SELECT count(*) FROM logs"))[0] == 2


def test_bad_filters() -> None:
    with pytest.raises(BadRequest):
        logstore.LogQuery(level="loud").validate()
    with pytest.raises(BadRequest):
        logstore.LogQuery(limit=0).validate()
    with pytest.raises(BadRequest):
        logstore.parse_since("yesterday")
    assert logstore.parse_since("10m", now=1000.0) == 400.0
    assert logstore.parse_since("2026-01-01T00:00:00Z") == 1767225600.0


async def test_store_runs_sqlite_off_the_loop(tmp_path: Path) -> None:
    store = Store(tmp_path / "slum.db")
    try:
        ids = await store.write(lambda c: insert_batch(c, [line("a"), line("b")]))
        assert ids == 1
        rows, thread = await store.read(
            lambda c: (list(c.execute("SELECT count(*) FROM logs")), threading.get_ident())
        )
        assert rows == [(2,)]
        assert thread != threading.get_ident()
    finally:
        store.close()
