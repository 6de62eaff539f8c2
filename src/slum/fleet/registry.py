"""Servers, tenants and domain aliases in SQLite, in the original Rust slum's tables (plus
columns). Plain functions on a connection: the CLI calls them directly on `--database`, the
server through its single writer. The node itself is always the server named `local`."""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slum.config import check_label
from slum.errors import BadRequest, Conflict, NotFound

LOCAL = "local"
INVALID = "invalid"  # the status of a stored server whose address does not parse
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
    server = {"id": row[0], "name": row[1], "address": row[2], "created_at": row[3],
              "status": row[4] or "online", "capacity": row[5], "tenant_count": count,
              "has_token": bool(row[6])}
    # A row written before addresses were parsed fully (or by hand) is shown, never used.
    problem = None if row[1] == LOCAL else address_error(row[2])
    if problem is not None:
        server["status"] = INVALID
        server["reason"] = problem
    return server


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


@dataclass(frozen=True)
class NodeAddress:
    scheme: str
    host: str  # IPv6 without its brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# Routed requests reach a node over the edge's plain TCP connection, with the node's token in
# X-Slum-Router: an https address would promise TLS the routed hop does not give.
HTTPS_REFUSED = ("https node addresses are not supported yet: routed requests (and the node's "
                 "token) would still travel in clear; use http:// over a private network or "
                 "a tunnel (see specs/fleet.md)")


def parse_address(address: str) -> NodeAddress:
    """A node address, parsed fully: [http://]host[:port], where host is a DNS name, an IPv4
    address or an IPv6 address in brackets, and port is 1-65535 (80 when left out)."""
    raw = address
    address = address.strip().rstrip("/")

    def bad(why: str) -> BadRequest:
        return BadRequest(f"invalid server address {raw!r}: {why}")

    if not address:
        raise BadRequest("server address is empty")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in address):
        raise bad("it contains spaces or control characters")
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "http", address
    scheme = scheme.lower()
    if scheme == "https":
        raise bad(HTTPS_REFUSED)
    if scheme != "http":
        raise bad(f"scheme {scheme!r}: expected http://host:port")
    if any(ch in rest for ch in "/?#@\\"):
        raise bad("expected host:port, without a path, query or user")
    if rest.startswith("["):
        inner, closed, after = rest[1:].partition("]")
        if not closed:
            raise bad("an IPv6 address needs its closing bracket: [::1]:8080")
        try:
            host = str(ipaddress.IPv6Address(inner))
        except ValueError:
            raise bad(f"{inner!r} is not an IPv6 address") from None
        if after and not after.startswith(":"):
            raise bad("expected [IPv6]:port")
        port_text = after[1:] if after else None
    else:
        host, colon, port_text_ = rest.rpartition(":") if ":" in rest else (rest, "", "")
        port_text = port_text_ if colon else None
        if ":" in host:
            raise bad("an IPv6 address goes in brackets: [::1]:8080")
        host = host.lower()
        if not host:
            raise bad("the host is missing")
        if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
            raise bad(f"{host!r} is not a host name or IPv4 address")
    if port_text is None:
        port = 80
    elif not port_text.isascii() or not port_text.isdigit():
        raise bad(f"port {port_text!r} is not a number")
    else:
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise bad(f"port {port} is out of range (1-65535)")
    return NodeAddress(scheme, host, port)


def address_error(address: str | None) -> str | None:
    """Why a stored address cannot be used, or None when it can (the local node's is 'local')."""
    if address == LOCAL:
        return None
    try:
        parse_address(address or "")
    except BadRequest as e:
        return e.message
    return None


def normalize_address(address: str) -> str:
    if not isinstance(address, str):
        raise BadRequest("server address must be a string")
    return str(parse_address(address))


def add_server(conn: Any, address: str, name: str | None = None, token: str | None = None,
               capacity: int | None = None) -> dict[str, Any]:
    ensure_local(conn)
    address = normalize_address(address)
    if name is None:
        name = re.sub(r"[^a-z0-9]+", "-", address.partition("://")[2].lower()).strip("-")[:63]
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
            raise Conflict(f"server {target['name']!r} is {target['status']}: choose another"
                           " or wait")
    conn.execute("INSERT INTO tenants (id, server_id, config, status, created_at, service) "
                 "VALUES (?, ?, ?, 'active', ?, ?)",
                 (tenant_id, target["id"], config, now_iso(), service))
    bump_version(conn)
    return get_tenant(conn, tenant_id)


def move_tenant(conn: Any, tenant_id: str, server: str) -> dict[str, Any]:
    target = get_server(conn, server)
    if target["status"] != "online":
        raise Conflict(f"server {target['name']!r} is {target['status']}: choose another"
                       " or wait")
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
        if not local and address_error(address) is not None:
            server_status = INVALID  # never routed to: the edge answers 502 naming the server
        tenants.append((tid, service, status, LOCAL if local else (server_name or "?"),
                        None if local else address, server_status or "offline", token))
    aliases = dict(conn.execute("SELECT domain, tenant_id FROM domain_aliases"))
    return tenants, aliases
