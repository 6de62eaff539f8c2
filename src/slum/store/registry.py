"""The fleet registry in SQLite: servers, tenants and domain aliases, in the original Rust slum's
tables (plus columns). Frozen rows, and `SqliteRegistry`, the SQLite backend of
`slum.fleet.registry.Registry` (that Protocol states what every method guarantees).

Every write is one `BEGIN IMMEDIATE` transaction: it takes the write lock before it reads, so a
check ("is the name free?", "has this server room?") and the write it guards see the same
database, also beside another process (the CLI on `--database` with no server running). Each
write bumps `registry_version` in the same transaction; `changes()` is built on it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import apsw
import trio

from slum.errors import BadRequest, Conflict, NotFound, Unavailable
from slum.store.db import Store, describe_error, immediate

T = TypeVar("T")
LOCAL = "local"  # the node itself is always the server named `local`
CHANGES_CHECK_S = 1.0  # how soon a write by another process is seen (one indexed read)


@dataclass(frozen=True, slots=True)
class Server:
    id: str
    name: str
    address: str  # "local" for the node itself, else normalized http://host:port
    created_at: str
    status: str  # online | offline, as the router's node checks last saw it
    capacity: int | None
    tenant_count: int
    token: str | None = field(default=None, repr=False)  # proves the router to that node

    @property
    def local(self) -> bool:
        return self.name == LOCAL or self.address == LOCAL


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    server_id: str
    server: str | None  # the server's name (None only for a row written by hand)
    service: str | None
    config: str | None
    status: str  # active | suspended
    created_at: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Alias:
    domain: str
    tenant_id: str


@dataclass(frozen=True, slots=True)
class RouteSnapshot:
    """Everything routing needs, read at one moment: `version` grows with every change."""

    version: int
    servers: tuple[Server, ...]
    tenants: tuple[Tenant, ...]
    aliases: tuple[Alias, ...]


class RegistryUnavailable(Unavailable):
    """The registry cannot be written now (locked for too long, disk full, read-only): a 503."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- reads, on any connection ---
_SERVER_COLS = "s.id, s.name, s.address, s.created_at, s.status, s.capacity, s.token"
_TENANT_COLS = "t.id, t.server_id, s.name, t.service, t.config, t.status, t.created_at"


def _server(row: tuple[object, ...], count: int) -> Server:
    sid, name, address, created, status, capacity, token = row
    return Server(
        str(sid),
        str(name),
        str(address),
        str(created),
        str(status or "online"),
        None if capacity is None else int(capacity),  # type: ignore[call-overload]
        count,
        None if token is None else str(token),
    )


def _tenant(row: tuple[object, ...], aliases: Sequence[str] = ()) -> Tenant:
    tid, server_id, server, service, config, status, created = row
    return Tenant(
        str(tid),
        str(server_id),
        None if server is None else str(server),
        None if service is None else str(service),
        None if config is None else str(config),
        str(status),
        str(created),
        tuple(aliases),
    )


def version(conn: apsw.Connection) -> int:
    for (value,) in conn.execute("SELECT value FROM config WHERE key = 'registry_version'"):
        return int(value)  # type: ignore[call-overload, no-any-return]
    return 0


def list_servers(conn: apsw.Connection) -> list[Server]:
    counts = {
        str(sid): int(n)
        for sid, n in conn.execute(  # type: ignore[call-overload]
            "SELECT server_id, count(*) FROM tenants GROUP BY server_id"
        )
    }
    return [
        _server(r, counts.get(str(r[0]), 0))
        for r in conn.execute(f"SELECT {_SERVER_COLS} FROM servers s ORDER BY s.created_at, s.name")
    ]


def get_server(conn: apsw.Connection, ref: str) -> Server:
    rows = list(
        conn.execute(f"SELECT {_SERVER_COLS} FROM servers s WHERE s.id = ? OR s.name = ?", (ref, ref))
    )
    if not rows:
        raise NotFound(f"no server {ref!r}")
    (count,) = next(conn.execute("SELECT count(*) FROM tenants WHERE server_id = ?", (rows[0][0],)))
    return _server(rows[0], int(count))  # type: ignore[call-overload]


def _aliases(conn: apsw.Connection) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for domain, tid in conn.execute("SELECT domain, tenant_id FROM domain_aliases ORDER BY domain"):
        out.setdefault(str(tid), []).append(str(domain))
    return out


def list_tenants(conn: apsw.Connection) -> list[Tenant]:
    aliases = _aliases(conn)
    return [
        _tenant(r, aliases.get(str(r[0]), ()))
        for r in conn.execute(
            f"SELECT {_TENANT_COLS} FROM tenants t LEFT JOIN servers s ON s.id = t.server_id "
            "ORDER BY t.created_at, t.id"
        )
    ]


def get_tenant(conn: apsw.Connection, tenant_id: str) -> Tenant:
    rows = list(
        conn.execute(
            f"SELECT {_TENANT_COLS} FROM tenants t LEFT JOIN servers s ON s.id = t.server_id WHERE t.id = ?",
            (tenant_id,),
        )
    )
    if not rows:
        raise NotFound(f"no tenant {tenant_id!r}")
    aliases = [
        str(d)
        for (d,) in conn.execute(
            "SELECT domain FROM domain_aliases WHERE tenant_id = ? ORDER BY domain", (tenant_id,)
        )
    ]
    return _tenant(rows[0], aliases)


def snapshot(conn: apsw.Connection) -> RouteSnapshot:
    with conn:  # one read transaction: the version and the rows agree
        snap = RouteSnapshot(
            version(conn),
            tuple(list_servers(conn)),
            tuple(list_tenants(conn)),
            tuple(
                Alias(str(d), str(t))
                for d, t in conn.execute("SELECT domain, tenant_id FROM domain_aliases ORDER BY domain")
            ),
        )
    return snap


# --- writes, each inside one immediate transaction ---
def bump_version(conn: apsw.Connection) -> None:
    """A change, for every reader of changes(): each write calls it in its transaction."""
    conn.execute(
        "INSERT INTO config (key, value) VALUES ('registry_version', '1') "
        "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1, "
        "updated_at = datetime('now')"
    )


def ensure_local(conn: apsw.Connection, capacity: int | None = None, set_capacity: bool = False) -> Server:
    conn.execute(
        "INSERT OR IGNORE INTO servers (id, name, address, created_at, status) VALUES (?, ?, ?, ?, 'online')",
        (LOCAL, LOCAL, LOCAL, now_iso()),
    )
    if set_capacity:
        conn.execute("UPDATE servers SET capacity = ? WHERE name = ?", (capacity, LOCAL))
    return get_server(conn, LOCAL)


def insert_server(
    conn: apsw.Connection, name: str, address: str, token: str | None, capacity: int | None
) -> Server:
    ensure_local(conn)
    if list(conn.execute("SELECT 1 FROM servers WHERE name = ?", (name,))):
        raise Conflict(f"server {name!r} exists already")
    server_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO servers (id, name, address, created_at, token, capacity, status) "
        "VALUES (?, ?, ?, ?, ?, ?, 'online')",
        (server_id, name, address, now_iso(), token, capacity),
    )
    bump_version(conn)
    return get_server(conn, server_id)


def delete_server(conn: apsw.Connection, ref: str) -> Server:
    server = get_server(conn, ref)
    if server.name == LOCAL:
        raise BadRequest("the local server cannot be removed")
    if server.tenant_count:
        raise Conflict(f"server {server.name!r} has {server.tenant_count} tenants: move or remove them first")
    conn.execute("DELETE FROM servers WHERE id = ?", (server.id,))
    bump_version(conn)
    return server


def update_server_status(conn: apsw.Connection, server_id: str, status: str) -> None:
    conn.execute("UPDATE servers SET status = ? WHERE id = ?", (status, server_id))
    bump_version(conn)


def insert_tenant(
    conn: apsw.Connection,
    tenant_id: str,
    place: Callable[[Sequence[Server]], Server],
    service: str | None,
    config: str | None,
) -> Tenant:
    ensure_local(conn)
    if list(conn.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,))):
        raise Conflict(f"tenant {tenant_id!r} exists already")
    target = place(list_servers(conn))  # under the write lock: the counts cannot change
    conn.execute(
        "INSERT INTO tenants (id, server_id, config, status, created_at, service) "
        "VALUES (?, ?, ?, 'active', ?, ?)",
        (tenant_id, target.id, config, now_iso(), service),
    )
    bump_version(conn)
    return get_tenant(conn, tenant_id)


def update_tenant_server(
    conn: apsw.Connection, tenant_id: str, server_id: str, from_server_id: str
) -> Tenant:
    tenant = get_tenant(conn, tenant_id)
    if tenant.server_id != from_server_id:
        raise Conflict(f"tenant {tenant_id!r} was moved meanwhile (now on {tenant.server})")
    get_server(conn, server_id)
    conn.execute("UPDATE tenants SET server_id = ? WHERE id = ?", (server_id, tenant_id))
    bump_version(conn)
    return get_tenant(conn, tenant_id)


def delete_tenant(conn: apsw.Connection, tenant_id: str) -> Tenant:
    tenant = get_tenant(conn, tenant_id)
    conn.execute("DELETE FROM domain_aliases WHERE tenant_id = ?", (tenant_id,))
    conn.execute("DELETE FROM tenants WHERE id = ?", (tenant_id,))
    bump_version(conn)
    return tenant


def insert_alias(conn: apsw.Connection, domain: str, tenant_id: str) -> Tenant:
    get_tenant(conn, tenant_id)
    for (owner,) in conn.execute("SELECT tenant_id FROM domain_aliases WHERE domain = ?", (domain,)):
        if owner == tenant_id:
            return get_tenant(conn, tenant_id)  # already so: nothing changes
        raise Conflict(f"{domain} is already an alias of tenant {owner}")
    conn.execute("INSERT INTO domain_aliases (domain, tenant_id) VALUES (?, ?)", (domain, tenant_id))
    bump_version(conn)
    return get_tenant(conn, tenant_id)


def delete_alias(conn: apsw.Connection, domain: str, tenant_id: str | None) -> Tenant:
    rows = [
        str(t) for (t,) in conn.execute("SELECT tenant_id FROM domain_aliases WHERE domain = ?", (domain,))
    ]
    if not rows or (tenant_id is not None and rows[0] != tenant_id):
        raise NotFound(f"no alias {domain!r}" + (f" of tenant {tenant_id}" if tenant_id else ""))
    conn.execute("DELETE FROM domain_aliases WHERE domain = ?", (domain,))
    bump_version(conn)
    return get_tenant(conn, rows[0])


_CANNOT_WRITE = (
    apsw.BusyError,
    apsw.LockedError,
    apsw.FullError,
    apsw.ReadOnlyError,
    apsw.CantOpenError,
    apsw.IOError,
)


class SqliteRegistry:
    """`slum.fleet.registry.Registry` on one SQLite file, through the store's single writer.
    Several processes may share the file: the write lock serializes them, and `changes()` sees
    another process's write within CHANGES_CHECK_S (one read of one row per check)."""

    def __init__(self, store: Store, check_s: float = CHANGES_CHECK_S) -> None:
        self.store = store
        self.check_s = check_s
        self._wrote = trio.Event()

    async def _write(self, fn: Callable[[apsw.Connection], T]) -> T:
        path = self.store.path

        def run(conn: apsw.Connection) -> T:
            try:
                with immediate(conn, path):
                    return fn(conn)
            except _CANNOT_WRITE as e:
                raise RegistryUnavailable(describe_error(path, e)) from None

        try:
            return await self.store.write_raw(run)
        finally:
            self._wrote.set()
            self._wrote = trio.Event()

    async def _read(self, fn: Callable[[apsw.Connection], T]) -> T:
        return await self.store.read(fn)

    async def servers(self) -> list[Server]:
        servers = await self._read(list_servers)
        if any(s.name == LOCAL for s in servers):
            return servers
        await self.ensure_local()  # a database of the Rust slum, or a fresh one: once
        return await self._read(list_servers)

    async def server(self, ref: str) -> Server:
        if ref == LOCAL:
            return await self.ensure_local()
        return await self._read(lambda c: get_server(c, ref))

    async def ensure_local(self, capacity: int | None = None, *, set_capacity: bool = False) -> Server:
        return await self._write(lambda c: ensure_local(c, capacity, set_capacity))

    async def add_server(
        self, name: str, address: str, token: str | None = None, capacity: int | None = None
    ) -> Server:
        return await self._write(lambda c: insert_server(c, name, address, token, capacity))

    async def remove_server(self, ref: str) -> Server:
        return await self._write(lambda c: delete_server(c, ref))

    async def set_server_status(self, server_id: str, status: str) -> None:
        await self._write(lambda c: update_server_status(c, server_id, status))

    async def tenants(self) -> list[Tenant]:
        return await self._read(list_tenants)

    async def tenant(self, tenant_id: str) -> Tenant:
        return await self._read(lambda c: get_tenant(c, tenant_id))

    async def add_tenant(
        self,
        tenant_id: str,
        place: Callable[[Sequence[Server]], Server],
        service: str | None = None,
        config: str | None = None,
    ) -> Tenant:
        return await self._write(lambda c: insert_tenant(c, tenant_id, place, service, config))

    async def move_tenant(self, tenant_id: str, server_id: str, *, from_server_id: str) -> Tenant:
        return await self._write(lambda c: update_tenant_server(c, tenant_id, server_id, from_server_id))

    async def remove_tenant(self, tenant_id: str) -> Tenant:
        return await self._write(lambda c: delete_tenant(c, tenant_id))

    async def add_alias(self, domain: str, tenant_id: str) -> Tenant:
        return await self._write(lambda c: insert_alias(c, domain, tenant_id))

    async def remove_alias(self, domain: str, tenant_id: str | None = None) -> Tenant:
        return await self._write(lambda c: delete_alias(c, domain, tenant_id))

    async def snapshot(self) -> RouteSnapshot:
        return await self._read(snapshot)

    async def changes(self) -> AsyncIterator[RouteSnapshot]:
        """The current snapshot, then a new one after each change. Writes made through this
        object are seen at once; another process's within check_s (`registry_version` is one
        row: reading it is the whole cost of a check). Changes in between are coalesced."""
        current = await self.snapshot()
        yield current
        while True:
            wrote = self._wrote
            with trio.move_on_after(self.check_s):
                await wrote.wait()
            if await self._read(version) != current.version:
                current = await self.snapshot()
                yield current
