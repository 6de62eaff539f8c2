"""Named, ordered migrations, recorded in `_migrations`.

The first ones create exactly the tables the original Rust slum wrote (servers, tenants,
domain_aliases) with IF NOT EXISTS, so opening one of its databases keeps every row; later ones
only add columns and tables.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable
from typing import Any

import apsw

Migration = tuple[str, Callable[[Any], None]]


def _columns(conn: apsw.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _add_column(conn: apsw.Connection, table: str, column: str, decl: str) -> None:
    if column not in _columns(conn, table):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def fleet(conn: apsw.Connection) -> None:
    conn.execute("""
        CREATE TABLE IF NOT EXISTS servers (
            id TEXT PRIMARY KEY,
            name TEXT UNIQUE NOT NULL,
            address TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS tenants (
            id TEXT PRIMARY KEY,
            server_id TEXT NOT NULL REFERENCES servers(id),
            config TEXT,
            status TEXT NOT NULL DEFAULT 'active',
            created_at TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS domain_aliases (
            domain TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id)
        );
    """)


def fleet_columns(conn: apsw.Connection) -> None:
    _add_column(conn, "servers", "token", "TEXT")
    _add_column(conn, "servers", "capacity", "INTEGER")
    _add_column(conn, "servers", "status", "TEXT NOT NULL DEFAULT 'online'")
    _add_column(conn, "tenants", "service", "TEXT")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_tenants_server ON tenants(server_id)")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_aliases_tenant ON domain_aliases(tenant_id)")


def config_and_tokens(conn: apsw.Connection) -> None:
    conn.execute("""
        CREATE TABLE IF NOT EXISTS config (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at TEXT NOT NULL DEFAULT (datetime('now'))
        );
        CREATE TABLE IF NOT EXISTS tokens (
            id INTEGER PRIMARY KEY,
            hash TEXT NOT NULL,
            created_at TEXT NOT NULL DEFAULT (datetime('now')),
            revoked_at TEXT
        );
    """)
    # The plan kept one token hash in config; carry it over so that token keeps working.
    for (value,) in conn.execute("SELECT value FROM config WHERE key = 'auth_token_hash'"):
        conn.execute("INSERT INTO tokens (hash) VALUES (?)", (value,))
    conn.execute("DELETE FROM config WHERE key = 'auth_token_hash'")


def logs(conn: apsw.Connection) -> None:
    # Written by the ingest task directly (no triggers: they halve the insert rate). The FTS index
    # is contentless with contentless_delete, so retention deletes by rowid without the text.
    conn.execute("""
        CREATE TABLE IF NOT EXISTS logs (
            id INTEGER PRIMARY KEY,
            ts_us INTEGER NOT NULL,
            level TEXT NOT NULL,
            stream TEXT NOT NULL,
            instance_id TEXT,
            tenant_id TEXT,
            message TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS idx_logs_ts ON logs(ts_us);
        CREATE INDEX IF NOT EXISTS idx_logs_instance ON logs(instance_id, id);
        CREATE INDEX IF NOT EXISTS idx_logs_tenant ON logs(tenant_id, id);
        CREATE VIRTUAL TABLE IF NOT EXISTS logs_fts USING fts5(
            message, content='', contentless_delete=1, tokenize='unicode61'
        );
    """)


def metrics_history(conn: apsw.Connection) -> None:
    conn.execute("""
        CREATE TABLE IF NOT EXISTS metrics_history (
            id INTEGER PRIMARY KEY,
            ts INTEGER NOT NULL,
            name TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            value REAL NOT NULL,
            min REAL,
            max REAL
        );
        CREATE INDEX IF NOT EXISTS idx_metrics_name ON metrics_history(name, labels, ts);
        CREATE INDEX IF NOT EXISTS idx_metrics_ts ON metrics_history(ts);
    """)


def processes(conn: apsw.Connection) -> None:
    # What slum has running, so a slum that was SIGKILLed can reap them on its next start;
    # and the instances ever spawned, so they are known (woken on request) after a restart.
    conn.execute("""
        CREATE TABLE IF NOT EXISTS processes (
            instance_id TEXT PRIMARY KEY,
            pid INTEGER NOT NULL,
            pgid INTEGER NOT NULL,
            started_at REAL NOT NULL
        );
        CREATE TABLE IF NOT EXISTS instances (
            id TEXT PRIMARY KEY,
            service TEXT NOT NULL,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL DEFAULT (datetime('now'))
        );
    """)


def token_ids_and_sessions(conn: apsw.Connection) -> None:
    # Tokens get a public id (named inside new tokens, so one hash is checked per attempt), a
    # description, a tenant scope and a last-used time; sessions move from memory to here,
    # stored as the SHA-256 of their id, so they survive a restart.
    for column, decl in (
        ("public_id", "TEXT"),
        ("description", "TEXT"),
        ("tenant", "TEXT"),
        ("last_used", "TEXT"),
        ("legacy", "INTEGER NOT NULL DEFAULT 0"),
    ):
        _add_column(conn, "tokens", column, decl)
    # Tokens made before ids existed get one now, so they can be listed and revoked by it.
    for (row_id,) in list(conn.execute("SELECT id FROM tokens WHERE public_id IS NULL")):
        public_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        conn.execute("UPDATE tokens SET public_id = ?, legacy = 1 WHERE id = ?", (public_id, row_id))
    conn.execute("""
        CREATE UNIQUE INDEX IF NOT EXISTS idx_tokens_public_id ON tokens(public_id);
        CREATE TABLE IF NOT EXISTS sessions (
            key TEXT PRIMARY KEY,
            token_id INTEGER NOT NULL REFERENCES tokens(id),
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL
        );
        CREATE INDEX IF NOT EXISTS idx_sessions_token ON sessions(token_id);
    """)


def process_owners(conn: apsw.Connection) -> None:
    # Which slum (pid + its start time) runs each recorded group: the reap at start spares the
    # groups of a slum that is still alive, such as one serving the database this is a copy of.
    _add_column(conn, "processes", "owner_pid", "INTEGER")
    _add_column(conn, "processes", "owner_started", "REAL")


def instance_weights(conn: apsw.Connection) -> None:
    """Traffic weights of `{service}.{domain}` (deploys) outlive a restart of slum."""
    _add_column(conn, "instances", "weight", "INTEGER NOT NULL DEFAULT 100")


MIGRATIONS: list[Migration] = [
    ("0001_fleet", fleet),
    ("0002_fleet_columns", fleet_columns),
    ("0003_config_and_tokens", config_and_tokens),
    ("0004_logs", logs),
    ("0005_metrics_history", metrics_history),
    ("0006_processes", processes),
    ("0007_token_ids_and_sessions", token_ids_and_sessions),
    ("0008_process_owners", process_owners),
    ("0009_instance_weights", instance_weights),
]


def migrate(conn: apsw.Connection) -> list[str]:
    """Apply what is missing, each in its own transaction; return the names applied."""
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        with conn:
            step(conn)
            conn.execute("INSERT INTO _migrations VALUES (?, ?)", (name, time.time()))
        applied.append(name)
    return applied
