"""`slum registry-migrate --from slum.db --to etcd://...`: a single router's SQLite registry
(servers with their tokens, tenants, aliases) copied into etcd, where several routers share it.

The copy keeps ids, names, creation times, capacities and node tokens, so the nodes (which know
their tenants by id and their router by token) see no difference. It is written in transactions
that each create keys only if they are absent; a key that is there already with the same value
is skipped, so a migration that was interrupted can be run again; a key there with another value
stops it (Conflict) before anything of that batch is written: it never overwrites a registry
that routers already use.

Tenants on the old router itself (server `local`) cannot stay there: with a shared registry,
`local` is whichever router a request reaches. They are moved to a node named by
--local-name/--local-address/--local-token (the old router, now serving as a node), or the
migration refuses and says so.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from slum.errors import BadRequest, Conflict
from slum.fleet.etcd import KV, Compare, Get, Put
from slum.fleet.etcd_registry import EtcdRegistry, dumps_row
from slum.fleet.registry import normalize_address
from slum.store.db import Store
from slum.store.registry import LOCAL, RouteSnapshot, snapshot

# etcd refuses a transaction of more than 128 operations (--max-txn-ops): stay well below.
BATCH = 50


@dataclass(frozen=True)
class Migrated:
    servers: int
    tenants: int
    aliases: int
    skipped: int  # keys that were in etcd already, with the same value
    moved_from_local: int


@dataclass(frozen=True)
class LocalNode:
    """Where the old router's own tenants go: itself, as a node of the new fleet."""

    name: str
    address: str
    token: str | None


async def read_sqlite(store: Store) -> RouteSnapshot:
    return await store.read(snapshot)


def plan(snap: RouteSnapshot, prefix: bytes, local: LocalNode | None) -> list[tuple[bytes, bytes]]:
    """Every key and value to write, in an order in which a partial copy is still coherent
    (servers before their tenants, tenants before their aliases)."""

    def key(*parts: str) -> bytes:
        return prefix + "/".join(parts).encode()

    out: list[tuple[bytes, bytes]] = []
    on_local = [t for t in snap.tenants if t.server == LOCAL or t.server_id == LOCAL]
    local_id = None
    if on_local:
        if local is None:
            names = ", ".join(t.id for t in on_local[:5]) + (" ..." if len(on_local) > 5 else "")
            raise BadRequest(
                f"{len(on_local)} tenants are on this router itself (server local: {names}); "
                "routers that share a registry place tenants on nodes only. Give "
                "--local-address http://HOST:PORT (this machine, serving as a node) and "
                "--local-token (a token of it, from `slum token-gen`) to move them there"
            )
        address = normalize_address(local.address)
        # The same id on every run, so that running the migration again finds it in place.
        local_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"slum-node:{local.name}:{address}"))
        out.append(
            (
                key("servers", local_id),
                dumps_row(
                    {
                        "id": local_id,
                        "name": local.name,
                        "address": address,
                        "created_at": min((s.created_at for s in snap.servers), default=""),
                        "status": "online",
                        "capacity": None,
                        "token": local.token,
                    }
                ),
            )
        )
        out.append((key("server-names", local.name), local_id.encode()))
    for s in snap.servers:
        if s.local:
            continue  # each router has its own; they create it when they start
        if local is not None and on_local and s.name == local.name:
            raise Conflict(f"--local-name {local.name!r} is already a server's name")
        out.append(
            (
                key("servers", s.id),
                dumps_row(
                    {
                        "id": s.id,
                        "name": s.name,
                        "address": s.address,
                        "created_at": s.created_at,
                        "status": s.status,
                        "capacity": s.capacity,
                        "token": s.token,
                    }
                ),
            )
        )
        out.append((key("server-names", s.name), s.id.encode()))
    for t in snap.tenants:
        server_id = local_id if (t.server == LOCAL or t.server_id == LOCAL) else t.server_id
        out.append(
            (
                key("tenants", t.id),
                dumps_row(
                    {
                        "id": t.id,
                        "server_id": server_id,
                        "service": t.service,
                        "config": t.config,
                        "status": t.status,
                        "created_at": t.created_at,
                    }
                ),
            )
        )
    for a in snap.aliases:
        out.append((key("aliases", a.domain), a.tenant_id.encode()))
    return out


async def migrate(store: Store, target: EtcdRegistry, local: LocalNode | None = None) -> Migrated:
    snap = await read_sqlite(store)
    writes = plan(snap, target.prefix, local)
    # Reached even with nothing to copy: an unreachable etcd is said now, not at serve time.
    await target.etcd.range(target.prefix, prefix=True, limit=1)
    skipped = 0
    for start in range(0, len(writes), BATCH):
        batch = writes[start : start + BATCH]
        existing = {kv.key: kv for kv in await _get_all(target, [k for k, _ in batch])}
        todo = []
        for k, v in batch:
            have = existing.get(k)
            if have is None:
                todo.append((k, v))
            elif have.value == v:
                skipped += 1
            else:
                raise Conflict(
                    f"etcd already has {k.decode(errors='replace')} with another "
                    "value: this registry is in use; migrate into an empty prefix "
                    "(etcd://HOST:PORT/another-prefix/)"
                )
        if not todo:
            continue
        result = await target.etcd.txn([Compare.absent(k) for k, _ in todo], [Put(k, v) for k, v in todo])
        if not result.succeeded:
            raise Conflict("the etcd registry changed during the migration; run it again")
    moved = sum(1 for t in snap.tenants if t.server == LOCAL or t.server_id == LOCAL)
    return Migrated(
        sum(1 for s in snap.servers if not s.local) + (1 if moved else 0),
        len(snap.tenants),
        len(snap.aliases),
        skipped,
        moved,
    )


async def _get_all(target: EtcdRegistry, keys: list[bytes]) -> list[KV]:
    if not keys:
        return []
    result = await target.etcd.txn([], [Get(k) for k in keys])
    return [kv for kvs in result.responses for kv in kvs]
