"""The fleet registry in etcd: `slum.fleet.registry.Registry` for several routers that share one
registry, so that losing a router loses no tenant.

Keys, under a prefix (default `/slum/`), values JSON or plain text:

    servers/<id>             {"id", "name", "address", "created_at", "status", "capacity", "token"}
    server-names/<name>      <id>: a name is taken by exactly one create (compare: absent)
    tenants/<id>             {"id", "server_id", "service", "config", "status", "created_at"}
    aliases/<domain>         <tenant id>
    placement                touched by every tenant placement and server removal: the one
                             compare that makes capacity checks and "no server removed under a
                             tenant being placed" atomic
    routers/<router>         each live router, on its lease
    health/<server>/<router> what that router's node checks see (online | offline), on its lease
    status/<server>          the status seen by the majority of live routers, on the lease of
                             the router that wrote it

Every write is one etcd transaction that compares the mod_revision of what it read; when
another writer got there first, it reads again and decides again (placement included), a few
times, then answers Conflict. Nothing is locked, so a router that dies mid-write leaves nothing
half-done.

Reads come from an in-memory mirror of the prefix that the watch in `changes()` keeps (a change
by any router reaches every router's mirror, and route table, in milliseconds), or from a fresh
read when the mirror has not yet seen this process's last write. When etcd cannot be reached or
has no quorum, the mirror is what there is: routing and reads go on with the last known state,
writes fail with 503 naming the reason, and `health()` says so until the watch is back, which
resumes from the revision after the last one it saw.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from slum.errors import BadRequest, Conflict, NotFound, SlumError, Unavailable
from slum.fleet.etcd import KV, Compacted, Compare, Delete, Etcd, Op, Put, parse_registry_url
from slum.store.registry import LOCAL, Alias, RouteSnapshot, Server, Tenant, now_iso

log = logging.getLogger("slum.fleet.etcd")

T = TypeVar("T")
DEFAULT_PREFIX = "/slum/"
CAS_TRIES = 30  # a write that loses this many races in a row answers Conflict
LEASE_TTL_S = 6  # a dead router's health views and its presence go after this long
RECONNECT_MAX_S = 1.0  # how long after etcd is back a router at most notices it


def dumps_row(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class State:
    """The prefix's keys at one revision, and the rows they make."""

    prefix: bytes
    kvs: dict[bytes, KV]
    revision: int
    _snapshot: RouteSnapshot | None = field(default=None, init=False, repr=False)
    _groups: dict[str, list[KV]] | None = field(default=None, init=False, repr=False)

    def key(self, *parts: str) -> bytes:
        return self.prefix + "/".join(parts).encode()

    def get(self, *parts: str) -> KV | None:
        return self.kvs.get(self.key(*parts))

    def mod(self, *parts: str) -> int:
        kv = self.get(*parts)
        return 0 if kv is None else kv.mod_revision

    def under(self, *parts: str) -> list[KV]:
        """The keys under prefix + parts + "/", oldest first."""
        group = self._group(parts[0])
        if len(parts) == 1:
            return group
        start = self.key(*parts) + b"/"
        return [kv for kv in group if kv.key.startswith(start)]

    def _group(self, name: str) -> list[KV]:
        # One pass over the keys per state, not one per question: a snapshot asks for each
        # server's health views, and a fleet has thousands of tenant keys.
        if self._groups is None:
            groups: dict[str, list[KV]] = {}
            n = len(self.prefix)
            for k, kv in self.kvs.items():
                head, slash, _ = k[n:].partition(b"/")
                if slash:
                    groups.setdefault(head.decode(errors="replace"), []).append(kv)
            for group in groups.values():
                group.sort(key=lambda kv: (kv.create_revision, kv.key))
            self._groups = groups
        return self._groups.get(name, [])

    def apply(self, ops: Sequence[Op], revision: int) -> State:
        """The state after a transaction of ours succeeded at revision."""
        kvs = dict(self.kvs)
        for op in ops:
            key = op.key.encode() if isinstance(op.key, str) else op.key
            if isinstance(op, Put):
                value = op.value.encode() if isinstance(op.value, str) else op.value
                old = kvs.get(key)
                kvs[key] = KV(
                    key,
                    value,
                    old.create_revision if old else revision,
                    revision,
                    (old.version if old else 0) + 1,
                    op.lease,
                )
            elif isinstance(op, Delete):
                if op.prefix:
                    for k in [k for k in kvs if k.startswith(key)]:
                        del kvs[k]
                else:
                    kvs.pop(key, None)
        return State(self.prefix, kvs, revision)

    # --- rows ---
    def snapshot(self) -> RouteSnapshot:
        if self._snapshot is None:
            self._snapshot = self._build()
        return self._snapshot

    def _build(self) -> RouteSnapshot:
        raw_servers = [s for s in (_row_view(kv) for kv in self.under("servers")) if s]
        raw_tenants = [t for t in (_row_view(kv) for kv in self.under("tenants")) if t]
        aliases: dict[str, list[str]] = {}
        alias_rows = []
        for kv in self.under("aliases"):
            domain = kv.key[len(self.key("aliases")) + 1 :].decode(errors="replace")
            tenant_id = kv.value.decode(errors="replace")
            aliases.setdefault(tenant_id, []).append(domain)
            alias_rows.append(Alias(domain, tenant_id))
        counts: dict[str, int] = {}
        for t in raw_tenants:
            counts[str(t.get("server_id"))] = counts.get(str(t.get("server_id")), 0) + 1
        servers = []
        for s in raw_servers:
            try:
                sid = str(s["id"])
                capacity = s.get("capacity")
                servers.append(
                    Server(
                        sid,
                        str(s["name"]),
                        str(s["address"]),
                        str(s.get("created_at", "")),
                        self.status_of(sid, str(s.get("status") or "online")),
                        None if capacity is None else int(capacity),
                        counts.get(sid, 0),
                        None if s.get("token") is None else str(s["token"]),
                    )
                )
            except (KeyError, TypeError, ValueError):
                log.warning("skipping an unreadable server row in etcd: %r", s)
        names = {s.id: s.name for s in servers}
        tenants = []
        for t in raw_tenants:
            try:
                tid = str(t["id"])
                server_id = str(t["server_id"])
                tenants.append(
                    Tenant(
                        tid,
                        server_id,
                        names.get(server_id),
                        None if t.get("service") is None else str(t["service"]),
                        None if t.get("config") is None else str(t["config"]),
                        str(t.get("status") or "active"),
                        str(t.get("created_at", "")),
                        tuple(sorted(aliases.get(tid, ()))),
                    )
                )
            except (KeyError, TypeError, ValueError):
                log.warning("skipping an unreadable tenant row in etcd: %r", t)
        return RouteSnapshot(
            self.revision, tuple(servers), tuple(tenants), tuple(sorted(alias_rows, key=lambda a: a.domain))
        )

    def views(self, server_id: str) -> dict[str, str]:
        """Each live router's view of a server: {router: status}."""
        live = {kv.key.rsplit(b"/", 1)[1].decode() for kv in self.under("routers")}
        out = {}
        for kv in self.under("health", server_id):
            router = kv.key.rsplit(b"/", 1)[1].decode()
            if router in live:
                out[router] = kv.value.decode(errors="replace")
        return out

    def live_routers(self) -> int:
        return len(self.under("routers"))

    def status_of(self, server_id: str, recorded: str) -> str:
        """The agreed status; while none is written (no router has checked yet, or the one
        that wrote it is gone), the majority of the live views; else what the row says."""
        agreed = self.get("status", server_id)
        if agreed is not None:
            return agreed.value.decode(errors="replace")
        majority = _majority(self.views(server_id), self.live_routers())
        return majority or recorded

    def server(self, ref: str) -> Server:
        for s in self.snapshot().servers:
            if ref in (s.id, s.name):
                return s
        raise NotFound(f"no server {ref!r}")

    def tenant(self, tenant_id: str) -> Tenant:
        for t in self.snapshot().tenants:
            if t.id == tenant_id:
                return t
        raise NotFound(f"no tenant {tenant_id!r}")


def _json_row(kv: KV) -> dict[str, Any] | None:
    """The row a key holds (a fresh dict: the caller may change it), None if unreadable."""
    value = _parse(kv.value)
    if value is None:
        log.warning("skipping an unreadable row in etcd at %r", kv.key)
        return None
    return dict(value)


def _row_view(kv: KV) -> dict[str, Any] | None:
    """The row, shared with the parse cache: read it, never change it."""
    value = _parse(kv.value)
    if value is None:
        log.warning("skipping an unreadable row in etcd at %r", kv.key)
    return value


@functools.lru_cache(maxsize=1 << 16)
def _parse(value: bytes) -> dict[str, Any] | None:
    # Every change rebuilds the snapshot from all rows; almost all of them are the same bytes
    # as last time, so each is parsed once (read-only here; _json_row hands out copies).
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


async def _built(state: State) -> RouteSnapshot:
    """The snapshot built in a worker thread: with thousands of tenants it takes milliseconds
    that the edge's event loop should not wait for."""
    return await trio.to_thread.run_sync(state.snapshot)


def _majority(views: dict[str, str], live: int) -> str | None:
    counts: dict[str, int] = {}
    for status in views.values():
        counts[status] = counts.get(status, 0) + 1
    for status, n in counts.items():
        if n * 2 > max(live, len(views)):
            return status
    return None


@dataclass
class Health:
    """What status, health and metrics show about the registry."""

    backend: str
    up: bool
    reason: str | None
    revision: int
    endpoints: list[str]
    router: str
    since: float  # trio.current_time() of the last change of up

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "up": self.up,
            "reason": self.reason,
            "revision": self.revision,
            "endpoints": self.endpoints,
            "router": self.router,
        }


Build = Callable[[State], tuple[list[Compare], list[Op], Callable[[State], T]]]


class EtcdRegistry:
    """`slum.fleet.registry.Registry` on an etcd cluster (see the module's docstring)."""

    def __init__(self, etcd: Etcd, prefix: str = DEFAULT_PREFIX, *, router: str | None = None) -> None:
        if not prefix.startswith("/") or not prefix.endswith("/"):
            raise BadRequest(f"etcd prefix {prefix!r}: expected /name/")
        self.etcd = etcd
        self.prefix = prefix.encode()
        self.router = router or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._mirror: State | None = None
        self._watching = False
        self._written = 0  # the revision of this process's last write
        self._changed = trio.Event()
        self._lease = 0
        self.up = False
        self.reason: str | None = "not connected yet"
        self._since = 0.0

    @classmethod
    def from_url(cls, url: str) -> EtcdRegistry:
        """etcd://host:port[,host:port...][/prefix/]; BadRequest when it does not parse."""
        endpoints, prefix = parse_registry_url(url, DEFAULT_PREFIX)
        return cls(Etcd(endpoints), prefix)

    async def aclose(self) -> None:
        await self.etcd.aclose()

    def health(self) -> Health:
        return Health(
            "etcd",
            self.up,
            self.reason,
            self._mirror.revision if self._mirror else 0,
            [e.partition("://")[2] for e in self.etcd.endpoints],
            self.router,
            self._since,
        )

    def _mark(self, up: bool, reason: str | None) -> None:
        if up != self.up:
            self._since = trio.current_time()
            if up:
                log.warning(
                    "etcd registry is reachable again (revision %d)",
                    self._mirror.revision if self._mirror else 0,
                )
            else:
                log.warning("etcd registry is unavailable, routing with the last known table: %s", reason)
        self.up, self.reason = up, reason

    def _key(self, *parts: str) -> bytes:
        return self.prefix + "/".join(parts).encode()

    # --- reading ---
    async def _fresh(self) -> State:
        result = await self.etcd.range(self.prefix, prefix=True)
        return State(self.prefix, {kv.key: kv for kv in result.kvs}, result.revision)

    async def _state(self) -> State:
        """The mirror when it has this process's writes, else a fresh read; when etcd cannot
        be reached, the last known state (reads go on during an outage; writes cannot)."""
        mirror = self._mirror
        if mirror is not None and self._watching and mirror.revision >= self._written:
            return mirror
        if mirror is not None and not self.up:
            # Known to be unreachable (the watch is retrying): no read waits for a timeout.
            return mirror
        try:
            return await self._fresh()
        except Unavailable:
            if mirror is not None:
                return mirror
            raise

    async def servers(self) -> Sequence[Server]:
        return (await self._state()).snapshot().servers

    async def server(self, ref: str) -> Server:
        return (await self._state()).server(ref)

    async def tenants(self) -> Sequence[Tenant]:
        return (await self._state()).snapshot().tenants

    async def tenant(self, tenant_id: str) -> Tenant:
        return (await self._state()).tenant(tenant_id)

    async def snapshot(self) -> RouteSnapshot:
        return (await self._state()).snapshot()

    # --- writing ---
    async def _cas(self, build: Build[T]) -> T:
        """Read, decide, write only if what was read is unchanged; else again with a fresh
        read. build raises NotFound/Conflict/BadRequest as the state demands. Always from a
        fresh read: the mirror may be milliseconds behind another router's write."""
        state = await self._fresh()
        for attempt in range(CAS_TRIES):
            compares, ops, result = build(state)
            if not ops:
                return result(state)
            txn = await self.etcd.txn(compares, ops)
            if txn.succeeded:
                self._written = max(self._written, txn.revision)
                return result(state.apply(ops, txn.revision))
            # Lost a race: someone wrote in between. Spread the retries of racing routers.
            await trio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
            state = await self._fresh()
        raise Conflict("the registry kept changing under this write; try again")

    async def ensure_local(self, capacity: int | None = None, *, set_capacity: bool = False) -> Server:
        def build(s: State) -> tuple[list[Compare], list[Op], Callable[[State], Server]]:
            kv = s.get("servers", LOCAL)
            if kv is None:
                row = {
                    "id": LOCAL,
                    "name": LOCAL,
                    "address": LOCAL,
                    "created_at": now_iso(),
                    "status": "online",
                    "capacity": capacity if set_capacity else None,
                    "token": None,
                }
                return (
                    [Compare.absent(s.key("servers", LOCAL))],
                    [Put(s.key("servers", LOCAL), dumps_row(row)), Put(s.key("server-names", LOCAL), LOCAL)],
                    lambda n: n.server(LOCAL),
                )
            row = _json_row(kv) or {}
            if set_capacity and row.get("capacity") != capacity:
                row.update(capacity=capacity)
                return (
                    [Compare.unchanged(kv.key, kv.mod_revision)],
                    [Put(kv.key, dumps_row(row))],
                    lambda n: n.server(LOCAL),
                )
            return [], [], lambda n: n.server(LOCAL)

        return await self._cas(build)

    def _local_ops(self, s: State) -> tuple[list[Compare], list[Op]]:
        """Create the local server in the same transaction, if it is not there yet."""
        if s.get("servers", LOCAL) is not None:
            return [], []
        row = {
            "id": LOCAL,
            "name": LOCAL,
            "address": LOCAL,
            "created_at": now_iso(),
            "status": "online",
            "capacity": None,
            "token": None,
        }
        return (
            [Compare.absent(s.key("servers", LOCAL))],
            [Put(s.key("servers", LOCAL), dumps_row(row)), Put(s.key("server-names", LOCAL), LOCAL)],
        )

    async def add_server(
        self, name: str, address: str, token: str | None = None, capacity: int | None = None
    ) -> Server:
        server_id = str(uuid.uuid4())

        def build(s: State) -> tuple[list[Compare], list[Op], Callable[[State], Server]]:
            if s.get("server-names", name) is not None or any(x.name == name for x in s.snapshot().servers):
                raise Conflict(f"server {name!r} exists already")
            row = {
                "id": server_id,
                "name": name,
                "address": address,
                "created_at": now_iso(),
                "status": "online",
                "capacity": capacity,
                "token": token,
            }
            compares, ops = self._local_ops(s)
            return (
                [*compares, Compare.absent(s.key("server-names", name))],
                [
                    *ops,
                    Put(s.key("servers", server_id), dumps_row(row)),
                    Put(s.key("server-names", name), server_id),
                ],
                lambda n: n.server(server_id),
            )

        return await self._cas(build)

    async def remove_server(self, ref: str) -> Server:
        def build(s: State) -> tuple[list[Compare], list[Op], Callable[[State], Server]]:
            server = s.server(ref)
            if server.name == LOCAL:
                raise BadRequest("the local server cannot be removed")
            if server.tenant_count:
                raise Conflict(
                    f"server {server.name!r} has {server.tenant_count} tenants: move or remove them first"
                )
            key = s.key("servers", server.id)
            return (
                [
                    Compare.unchanged(key, s.mod("servers", server.id)),
                    Compare.unchanged(s.key("placement"), s.mod("placement")),
                ],
                [
                    Delete(key),
                    Delete(s.key("server-names", server.name)),
                    Delete(s.key("status", server.id)),
                    Delete(s.key("health", server.id) + b"/", prefix=True),
                    Put(s.key("placement"), str(s.revision)),
                ],
                lambda _: server,
            )

        return await self._cas(build)

    async def set_server_status(self, server_id: str, status: str) -> None:
        """This router's view of the server; the agreed status is what the majority of live
        routers see (a router alone, or one without a lease such as the CLI, decides alone)."""

        def build(s: State) -> tuple[list[Compare], list[Op], Callable[[State], None]]:
            kv = s.get("servers", server_id)
            if kv is None:
                return [], [], lambda _: None
            lease = self._lease
            compares: list[Compare] = []
            ops: list[Op] = []
            if lease:
                view = s.get("health", server_id, self.router)
                views = s.views(server_id)
                if view is None or view.value != status.encode() or self.router not in views:
                    ops.append(Put(s.key("health", server_id, self.router), status, lease))
                views[self.router] = status
                agreed = _majority(views, max(s.live_routers(), 1))
            else:
                agreed = status
            current = s.get("status", server_id)
            if agreed is not None and (current is None or current.value != agreed.encode()):
                compares.append(Compare.unchanged(s.key("status", server_id), s.mod("status", server_id)))
                ops.append(Put(s.key("status", server_id), agreed, lease))
            return compares, ops, lambda _: None

        await self._cas(build)

    async def add_tenant(
        self,
        tenant_id: str,
        place: Callable[[Sequence[Server]], Server],
        service: str | None = None,
        config: str | None = None,
    ) -> Tenant:
        created = now_iso()

        def build(s: State) -> tuple[list[Compare], list[Op], Callable[[State], Tenant]]:
            if s.get("tenants", tenant_id) is not None:
                raise Conflict(f"tenant {tenant_id!r} exists already")
            compares, ops = self._local_ops(s)
            if ops:  # placement must see the local server too, as SQLite's does
                s = s.apply(ops, s.revision)
            target = place(s.snapshot().servers)
            row = {
                "id": tenant_id,
                "server_id": target.id,
                "service": service,
                "config": config,
                "status": "active",
                "created_at": created,
            }
            return (
                [
                    *compares,
                    Compare.absent(s.key("tenants", tenant_id)),
                    Compare.unchanged(s.key("placement"), s.mod("placement")),
                    Compare.unchanged(s.key("servers", target.id), s.mod("servers", target.id)),
                ],
                [*ops, Put(s.key("tenants", tenant_id), dumps_row(row)), Put(s.key("placement"), tenant_id)],
                lambda n: n.tenant(tenant_id),
            )

        return await self._cas(build)

    async def move_tenant(self, tenant_id: str, server_id: str, *, from_server_id: str) -> Tenant:
        def build(s: State) -> tuple[list[Compare], list[Op], Callable[[State], Tenant]]:
            tenant = s.tenant(tenant_id)
            if tenant.server_id != from_server_id:
                raise Conflict(f"tenant {tenant_id!r} was moved meanwhile (now on {tenant.server})")
            target = s.server(server_id)
            kv = s.get("tenants", tenant_id)
            assert kv is not None
            row = _json_row(kv) or {}
            row["server_id"] = target.id
            return (
                [
                    Compare.unchanged(kv.key, kv.mod_revision),
                    Compare.unchanged(s.key("placement"), s.mod("placement")),
                    Compare.unchanged(s.key("servers", target.id), s.mod("servers", target.id)),
                ],
                [Put(kv.key, dumps_row(row)), Put(s.key("placement"), tenant_id)],
                lambda n: n.tenant(tenant_id),
            )

        return await self._cas(build)

    async def remove_tenant(self, tenant_id: str) -> Tenant:
        def build(s: State) -> tuple[list[Compare], list[Op], Callable[[State], Tenant]]:
            tenant = s.tenant(tenant_id)
            key = s.key("tenants", tenant_id)
            # An alias added meanwhile re-puts the tenant's key, so this compare sees it.
            return (
                [Compare.unchanged(key, s.mod("tenants", tenant_id))],
                [
                    Delete(key),
                    *(Delete(s.key("aliases", d)) for d in tenant.aliases),
                    Put(s.key("placement"), tenant_id),
                ],
                lambda _: tenant,
            )

        return await self._cas(build)

    async def add_alias(self, domain: str, tenant_id: str) -> Tenant:
        def build(s: State) -> tuple[list[Compare], list[Op], Callable[[State], Tenant]]:
            tenant_kv = s.get("tenants", tenant_id)
            if tenant_kv is None:
                raise NotFound(f"no tenant {tenant_id!r}")
            owner = s.get("aliases", domain)
            if owner is not None:
                if owner.value == tenant_id.encode():
                    return [], [], lambda n: n.tenant(tenant_id)
                raise Conflict(
                    f"{domain} is already an alias of tenant {owner.value.decode(errors='replace')}"
                )
            return (
                [
                    Compare.absent(s.key("aliases", domain)),
                    Compare.unchanged(tenant_kv.key, tenant_kv.mod_revision),
                ],
                [Put(s.key("aliases", domain), tenant_id), Put(tenant_kv.key, tenant_kv.value)],
                lambda n: n.tenant(tenant_id),
            )

        return await self._cas(build)

    async def remove_alias(self, domain: str, tenant_id: str | None = None) -> Tenant:
        def build(s: State) -> tuple[list[Compare], list[Op], Callable[[State], Tenant]]:
            owner = s.get("aliases", domain)
            if owner is None or (tenant_id is not None and owner.value != tenant_id.encode()):
                raise NotFound(f"no alias {domain!r}" + (f" of tenant {tenant_id}" if tenant_id else ""))
            tid = owner.value.decode(errors="replace")
            return (
                [Compare.unchanged(owner.key, owner.mod_revision)],
                [Delete(owner.key)],
                lambda n: n.tenant(tid),
            )

        return await self._cas(build)

    # --- following changes ---
    def _apply_events(self, state: State, batch_events: Sequence[Any], revision: int) -> State:
        kvs = dict(state.kvs)
        last = state.revision
        for event in batch_events:
            if event.type == "DELETE":
                kvs.pop(event.kv.key, None)
            else:
                kvs[event.kv.key] = event.kv
            last = max(last, event.kv.mod_revision)
        return State(self.prefix, kvs, max(last, state.revision))

    async def changes(self) -> AsyncIterator[RouteSnapshot]:
        """The watch: the current snapshot, then one after every change by anyone. It never
        ends on etcd's failures: it marks the registry down (routing keeps the last snapshot),
        retries within RECONNECT_MAX_S, and resumes from the revision after the last one seen,
        so nothing written during the outage is missed (a compacted history is read anew)."""
        delay = 0.05
        try:
            while True:
                try:
                    if self._mirror is None:
                        self._mirror = await self._fresh()
                        yield await _built(self._mirror)
                    start = self._mirror.revision + 1
                    async with self.etcd.watch(self.prefix, prefix=True, start_revision=start) as stream:
                        async for batch in stream:
                            self._watching = True
                            delay = 0.05
                            self._mark(True, None)
                            if batch.events:
                                self._mirror = self._apply_events(self._mirror, batch.events, batch.revision)
                                yield await _built(self._mirror)
                except Compacted as e:
                    log.warning("etcd registry: %s; reading everything again", e.message)
                    self._mirror = await self._fresh()
                    yield await _built(self._mirror)
                    continue
                except Unavailable as e:
                    was_watching, self._watching = self._watching, False
                    if was_watching:
                        # One member gone: the next one is tried at once, unnoticed.
                        log.info("etcd watch moved on: %s", e.message)
                        continue
                    self._mark(False, e.message)
                await trio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
        finally:
            self._watching = False

    # --- this router's presence, for the node-health majority ---
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keeps this router's lease (and with it its presence and health views) alive; a new
        lease after an outage that outlived the old one."""
        task_status.started()
        interval = LEASE_TTL_S / 3
        try:
            while True:
                try:
                    if not self._lease or await self.etcd.keepalive(self._lease) <= 0:
                        self._lease = await self.etcd.grant(LEASE_TTL_S)
                        await self.etcd.put(
                            self._key("routers", self.router),
                            dumps_row(
                                {"host": socket.gethostname(), "pid": os.getpid(), "started": now_iso()}
                            ),
                            lease=self._lease,
                        )
                except SlumError as e:
                    log.debug("etcd lease: %s", e.message)
                await trio.sleep(interval)
        finally:
            lease, self._lease = self._lease, 0
            if lease:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    try:
                        await self.etcd.revoke(lease)
                    except SlumError:
                        pass
