"""Servers, tenants and domain aliases in SQLite, in the original Rust slum's tables (plus
columns). Plain functions on a connection: the CLI calls them directly on `--database`, the
server through its single writer. The node itself is always the server named `local`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from slum.config import check_label
from slum.errors import BadRequest, Conflict, NotFound

LOCAL = "local"
DEFAULT_CAPACITY = 100


def bump_version(conn: Any) -> None:
    """Tell running servers (which poll this cheaply) that routes changed, whoever wrote them."""
    conn.execute("INSERT INTO config (key, value) VALUES ('registry_version', '1') "
                 "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1, "
                 "updated_at = datetime('now')")


def registry_version(conn: Any) -> str:
    for (value,) in conn.execute("SELECT value FROM config WHERE key = 'registry_version'"):
        return str(value)
    return "0"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ensure_local(conn: Any) -> None:
    row = list(conn.execute("SELECT 1 FROM servers WHERE name = ?", (LOCAL,)))
    if not row:
        conn.execute("INSERT OR IGNORE INTO servers (id, name, address, created_at, status) "
                     "VALUES (?, ?, ?, ?, 'online')", (LOCAL, LOCAL, LOCAL, now_iso()))


_SERVER_COLS = "s.id, s.name, s.address, s.created_at, s.status, s.capacity, s.token"


def _server(row: tuple[Any, ...], count: int) -> dict[str, Any]:
    return {"id": row[0], "name": row[1], "address": row[2], "created_at": row[3],
            "status": row[4] or "online", "capacity": row[5], "tenant_count": count,
            "has_token": bool(row[6])}


def list_servers(conn: Any) -> list[dict[str, Any]]:
    ensure_local(conn)
    counts = dict(conn.execute("SELECT server_id, count(*) FROM tenants GROUP BY server_id"))
    return [_server(r, counts.get(r[0], 0)) for r in
            conn.execute(f"SELECT {_SERVER_COLS} FROM servers s ORDER BY s.created_at, s.name")]


def get_server(conn: Any, ref: str) -> dict[str, Any]:
    ensure_local(conn)
    rows = list(conn.execute(f"SELECT {_SERVER_COLS} FROM servers s WHERE s.id = ? OR s.name = ?",
                             (ref, ref)))
    if not rows:
        raise NotFound(f"no server {ref!r}")
    (count,) = next(conn.execute("SELECT count(*) FROM tenants WHERE server_id = ?",
                                 (rows[0][0],)))
    return _server(rows[0], count)


def server_token(conn: Any, server_id: str) -> str | None:
    for (token,) in conn.execute("SELECT token FROM servers WHERE id = ?", (server_id,)):
        return token  # type: ignore[no-any-return]
    return None


def normalize_address(address: str) -> str:
    address = address.strip().rstrip("/")
    if not address:
        raise BadRequest("server address is empty")
    if "://" not in address:
        address = "http://" + address
    scheme, _, rest = address.partition("://")
    if scheme not in ("http", "https") or not rest or " " in rest:
        raise BadRequest(f"invalid server address {address!r}: expected host:port or a URL")
    return address


def add_server(conn: Any, address: str, name: str | None = None, token: str | None = None,
               capacity: int | None = None) -> dict[str, Any]:
    ensure_local(conn)
    address = normalize_address(address)
    if name is None:
        name = address.partition("://")[2].replace(":", "-").replace(".", "-").lower()
    check_label(name, "server name")
    if capacity is not None and capacity < 1:
        raise BadRequest("capacity must be >= 1")
    if list(conn.execute("SELECT 1 FROM servers WHERE name = ?", (name,))):
        raise Conflict(f"server {name!r} exists already")
    server_id = str(uuid.uuid4())
    conn.execute("INSERT INTO servers (id, name, address, created_at, token, capacity, status) "
                 "VALUES (?, ?, ?, ?, ?, ?, 'online')",
                 (server_id, name, address, now_iso(), token, capacity))
    bump_version(conn)
    return get_server(conn, server_id)


def remove_server(conn: Any, ref: str) -> dict[str, Any]:
    server = get_server(conn, ref)
    if server["name"] == LOCAL:
        raise BadRequest("the local server cannot be removed")
    if server["tenant_count"]:
        raise Conflict(f"server {server['name']!r} has {server['tenant_count']} tenants: "
                       "move or remove them first")
    conn.execute("DELETE FROM servers WHERE id = ?", (server["id"],))
    bump_version(conn)
    return server


def set_server_status(conn: Any, server_id: str, status: str) -> None:
    conn.execute("UPDATE servers SET status = ? WHERE id = ?", (status, server_id))
    bump_version(conn)


_TENANT_COLS = ("t.id, t.server_id, s.name, t.service, t.config, t.status, t.created_at")


def _tenant(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": row[0], "server_id": row[1], "server": row[2], "service": row[3],
            "config": row[4], "status": row[5], "created_at": row[6]}


def list_tenants(conn: Any) -> list[dict[str, Any]]:
    return [_tenant(r) for r in conn.execute(
        f"SELECT {_TENANT_COLS} FROM tenants t LEFT JOIN servers s ON s.id = t.server_id "
        "ORDER BY t.created_at, t.id")]


def get_tenant(conn: Any, tenant_id: str) -> dict[str, Any]:
    rows = list(conn.execute(f"SELECT {_TENANT_COLS} FROM tenants t LEFT JOIN servers s "
                             "ON s.id = t.server_id WHERE t.id = ?", (tenant_id,)))
    if not rows:
        raise NotFound(f"no tenant {tenant_id!r}")
    tenant = _tenant(rows[0])
    tenant["aliases"] = [d for (d,) in conn.execute(
        "SELECT domain FROM domain_aliases WHERE tenant_id = ? ORDER BY domain", (tenant_id,))]
    return tenant


def set_local_capacity(conn: Any, capacity: int | None) -> None:
    """A node without a config runs no processes: capacity 0 keeps placement off it."""
    ensure_local(conn)
    conn.execute("UPDATE servers SET capacity = ? WHERE name = ?", (capacity, LOCAL))


def place(conn: Any) -> dict[str, Any]:
    """The online server with the most room: lowest tenants/capacity, full servers skipped."""
    best = None
    for server in list_servers(conn):
        if server["status"] != "online":
            continue
        capacity = server["capacity"] if server["capacity"] is not None else DEFAULT_CAPACITY
        if server["capacity"] is not None and server["tenant_count"] >= capacity:
            continue
        load = server["tenant_count"] / capacity
        if best is None or load < best[0]:
            best = (load, server)
    if best is None:
        raise Conflict("no online server has room for another tenant")
    return best[1]


def add_tenant(conn: Any, tenant_id: str, server: str | None = None, service: str | None = None,
               config: str | None = None) -> dict[str, Any]:
    check_label(tenant_id, "tenant id")
    if service is not None:
        check_label(service, "service name")
    if list(conn.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,))):
        raise Conflict(f"tenant {tenant_id!r} exists already")
    if server is None:
        target = place(conn)
    else:
        target = get_server(conn, server)
        if target["status"] != "online":
            raise Conflict(f"server {target['name']!r} is offline: choose another or wait")
    conn.execute("INSERT INTO tenants (id, server_id, config, status, created_at, service) "
                 "VALUES (?, ?, ?, 'active', ?, ?)",
                 (tenant_id, target["id"], config, now_iso(), service))
    bump_version(conn)
    return get_tenant(conn, tenant_id)


def move_tenant(conn: Any, tenant_id: str, server: str) -> dict[str, Any]:
    target = get_server(conn, server)
    if target["status"] != "online":
        raise Conflict(f"server {target['name']!r} is offline: choose another or wait")
    conn.execute("UPDATE tenants SET server_id = ? WHERE id = ?", (target["id"], tenant_id))
    bump_version(conn)
    return get_tenant(conn, tenant_id)


def remove_tenant(conn: Any, tenant_id: str) -> dict[str, Any]:
    tenant = get_tenant(conn, tenant_id)
    conn.execute("DELETE FROM domain_aliases WHERE tenant_id = ?", (tenant_id,))
    conn.execute("DELETE FROM tenants WHERE id = ?", (tenant_id,))
    bump_version(conn)
    return tenant


def remove_alias(conn: Any, domain: str) -> None:
    domain = domain.strip().lower().rstrip(".")
    if not list(conn.execute("SELECT 1 FROM domain_aliases WHERE domain = ?", (domain,))):
        raise NotFound(f"no alias {domain!r}")
    conn.execute("DELETE FROM domain_aliases WHERE domain = ?", (domain,))
    bump_version(conn)


def add_alias(conn: Any, domain: str, tenant_id: str) -> None:
    get_tenant(conn, tenant_id)
    domain = domain.strip().lower().rstrip(".")
    if not domain or "/" in domain or " " in domain:
        raise BadRequest(f"invalid domain {domain!r}")
    conn.execute("INSERT OR REPLACE INTO domain_aliases (domain, tenant_id) VALUES (?, ?)",
                 (domain, tenant_id))
    bump_version(conn)


RouteRow = tuple[str, str | None, str, str, str | None, str, str | None]


def route_rows(conn: Any) -> tuple[list[RouteRow], dict[str, str]]:
    """Everything the edge needs to route tenants, read in one go: (tenant, service, status,
    server name, address or None when local, server status, server token), and the aliases."""
    tenants: list[RouteRow] = []
    for tid, service, status, server_name, address, server_status, token in conn.execute(
            "SELECT t.id, t.service, t.status, s.name, s.address, s.status, s.token "
            "FROM tenants t LEFT JOIN servers s ON s.id = t.server_id"):
        local = server_name == LOCAL or address == LOCAL
        tenants.append((tid, service, status, LOCAL if local else (server_name or "?"),
                        None if local else address, server_status or "offline", token))
    aliases = dict(conn.execute("SELECT domain, tenant_id FROM domain_aliases"))
    return tenants, aliases
