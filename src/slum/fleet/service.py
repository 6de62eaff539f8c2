"""FleetService: the one path of every fleet operation. The API calls it inside the server; the
CLI calls the server's API when one runs on its database, and a FleetService of its own on the
database file when none does. It validates input, places tenants (placement.py), writes through
a Registry backend, calls the nodes involved (nodes.py), stops a tenant's instance here when the
tenant leaves this node, and hands every new route snapshot to the edge (`publish`).

Routes reach the edge two ways, both through `_publish` and never older than what it has:
- at once after each write made here (the API answers only once its change routes);
- from the backend's `changes()`, for writes by anyone else (another process on the same
  SQLite file, another router on etcd, the node checker).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import partial

import trio

from slum.config import Config, check_label
from slum.errors import BadRequest, Conflict, SlumError, Unavailable
from slum.fleet import nodes, placement
from slum.fleet.nodes import NodeChecker, NodeFailed
from slum.fleet.registry import (
    Registry,
    RouteRow,
    default_server_name,
    domain_key,
    normalize_address,
    parse_domain,
    snapshot_rows,
)
from slum.store.db import Store
from slum.store.registry import RouteSnapshot, Server, SqliteRegistry, Tenant
from slum.supervisor import Supervisor
from slum.tasks import Tasks, run_contained, run_periodic

log = logging.getLogger("slum.fleet")

StopHere = Callable[[Tenant], Awaitable[None]]
Publish = Callable[[RouteSnapshot], None]


@dataclass(frozen=True)
class Moved:
    """A move's outcome: the tenant where it is now, where it came from, and what could not
    be done at the source (the move stands; the operator is told)."""

    tenant: Tenant
    moved_from: str
    warnings: tuple[str, ...] = ()


@dataclass
class FleetService:
    registry: Registry
    services: Callable[[], Collection[str]] = tuple  # the config's services: no tenant takes a name
    stop_here: StopHere | None = None  # stops a tenant's instance on this node (None: no server)
    publish: Publish | None = None  # hands a route snapshot to the edge
    _version: int = field(default=-1, init=False)
    _last: RouteSnapshot | None = field(default=None, init=False)

    # --- reads ---
    async def servers(self) -> Sequence[Server]:
        return await self.registry.servers()

    async def server(self, ref: str) -> Server:
        return await self.registry.server(ref)

    async def tenants(self) -> Sequence[Tenant]:
        return await self.registry.tenants()

    async def tenant(self, tenant_id: str) -> Tenant:
        return await self.registry.tenant(tenant_id)

    # --- servers ---
    async def add_server(
        self, address: str, name: str | None = None, token: str | None = None, capacity: int | None = None
    ) -> Server:
        address = normalize_address(address)
        name = default_server_name(address) if name is None else name
        check_label(name, "server name")
        if capacity is not None and (
            isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1
        ):
            raise BadRequest("capacity must be an integer >= 1")
        server = await self.registry.add_server(name, address, token, capacity)
        await self.refresh()
        return server

    async def remove_server(self, ref: str) -> Server:
        server = await self.registry.remove_server(ref)
        await self.refresh()
        return server

    # --- tenants ---
    async def add_tenant(
        self, tenant_id: str, server: str | None = None, service: str | None = None, config: str | None = None
    ) -> Tenant:
        """Placed in the registry, then registered on its node. A node that does not take it
        undoes the placement (503 naming the server): it is in the registry only if it is on
        its node."""
        check_label(tenant_id, "tenant id")
        if service is not None:
            check_label(service, "service name")
        if tenant_id in self.services():
            raise Conflict(service_clash(tenant_id))
        place = placement.least_loaded if server is None else placement.named(server)
        tenant = await self.registry.add_tenant(tenant_id, place, service, config)
        target = await self.registry.server(tenant.server_id)
        if not target.local:
            try:
                await nodes.register_tenant(target, tenant_id, service)
            except SlumError as e:
                await self.registry.remove_tenant(tenant_id)
                raise Unavailable(
                    f"server {target.name} did not take tenant {tenant_id}: {e.message}"
                ) from None
        await self.refresh()
        return tenant

    async def remove_tenant(self, tenant_id: str) -> Tenant:
        """Removed from the registry and the routes first (so no request wakes it again),
        then it leaves its server: stopped here, or unregistered from its node (a node that is
        down is logged: nothing routes there any more either way)."""
        tenant = await self.registry.tenant(tenant_id)
        source = await self.registry.server(tenant.server_id)
        removed = await self.registry.remove_tenant(tenant_id)
        await self.refresh()
        await self._leave(source, tenant)
        return removed

    async def move_tenant(self, tenant_id: str, to: str) -> Moved:
        """Started there, routed there, stopped here. Its data stays behind (the operator's job).

        Each step's failure has one outcome:
        1. the target node does not take it: nothing changed (502 naming the server);
        2. the registry write fails (a concurrent move, a registry that cannot write): the
           target node is told to drop it again, the tenant stays where it was, the error is
           raised;
        3. the source does not stop it (a node that is down): the move stands, the warning
           is in the answer and the log; the old instance there idles out or is removed when
           that node is back."""
        tenant = await self.registry.tenant(tenant_id)
        source = await self.registry.server(tenant.server_id)
        target = await self.registry.server(to)
        if source.id == target.id:
            raise Conflict(f"tenant {tenant_id} is already on server {target.name}")
        placement.check_online(target)
        if not target.local:
            try:
                await nodes.register_tenant(target, tenant_id, tenant.service)
            except SlumError as e:
                raise NodeFailed(
                    f"server {target.name} did not take tenant {tenant_id}: {e.message}"
                ) from None
        try:
            moved = await self.registry.move_tenant(tenant_id, target.id, from_server_id=source.id)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._leave(target, tenant)
            raise
        await self.refresh()
        warning = await self._leave(source, tenant)
        return Moved(moved, source.name, () if warning is None else (warning,))

    async def _leave(self, server: Server, tenant: Tenant) -> str | None:
        """The one "tenant leaves this server" step of remove and move: its instance stops,
        here through the supervisor, on a node through that node's API. What failed is
        returned (and logged), never raised: the registry no longer sends it traffic."""
        try:
            if server.local:
                if self.stop_here is not None:
                    await self.stop_here(tenant)
            else:
                await nodes.unregister_tenant(server, tenant.id)
        except SlumError as e:
            warning = f"server {server.name} did not remove tenant {tenant.id}: {e.message}"
            log.warning("%s", warning)
            return warning
        return None

    # --- aliases ---
    async def add_alias(self, tenant_id: str, domain: str) -> Tenant:
        tenant = await self.registry.add_alias(parse_domain(domain), tenant_id)
        await self.refresh()
        return tenant

    async def remove_alias(self, domain: str, tenant_id: str | None = None) -> Tenant:
        tenant = await self.registry.remove_alias(domain_key(domain), tenant_id)
        await self.refresh()
        return tenant

    # --- routes to the edge ---
    async def refresh(self) -> None:
        """Read the registry now and publish it, if newer than what the edge has."""
        if self.publish is not None:
            self._publish(await self.registry.snapshot())

    def republish(self) -> None:
        """The same snapshot again, for a config change (a tenant without a service takes
        the new default)."""
        if self.publish is not None and self._last is not None:
            self.publish(self._last)

    def _publish(self, snapshot: RouteSnapshot) -> None:
        if self.publish is None or snapshot.version <= self._version:
            return
        self._version, self._last = snapshot.version, snapshot
        self.publish(snapshot)

    async def follow_changes(self) -> None:
        """Publish every change the backend reports, whoever wrote it."""
        async for snapshot in self.registry.changes():
            self._publish(snapshot)

    async def run(
        self,
        tasks: Tasks,
        checker: NodeChecker,
        report: Callable[[str, str], None],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The fleet's background tasks, contained: "routes" (the backend's changes to the
        edge) and "node checker" (each remote node's health, written as its status)."""
        async with trio.open_nursery() as nursery:
            # A shared registry's own upkeep (etcd: this router's lease), if it has any.
            upkeep = getattr(self.registry, "run", None)
            if upkeep is not None:
                await nursery.start(run_contained, tasks, "registry", upkeep)
            await nursery.start(run_contained, tasks, "routes", self.follow_changes)
            await nursery.start(
                partial(
                    run_periodic,
                    tasks,
                    "node checker",
                    partial(checker.check, self.registry, report),
                    checker.interval_s,
                )
            )
            task_status.started()


def service_clash(name: str) -> str:
    return (
        f"{name!r} is a service in the config: `{name}.DOMAIN` routes to that service by "
        "weight, so a tenant cannot have its name; choose another tenant id"
    )


def supervisor_stopper(supervisor: Supervisor, config: Callable[[], Config]) -> StopHere:
    """A tenant that left this node (removed, or moved away): its instance here stops."""

    async def stop(tenant: Tenant) -> None:
        inst = supervisor.instances.get(f"{tenant.service or config().tenant_service}:{tenant.id}")
        if inst is not None and inst.want_running:
            await supervisor.stop(inst.id)

    return stop


async def open_fleet(
    store: Store,
    supervisor: Supervisor,
    config: Callable[[], Config],
    publish: Callable[[list[RouteRow], dict[str, str]], None],
    shared: Registry | None = None,
) -> FleetService:
    """The server's FleetService on its SQLite registry (or on `shared`, a registry several
    routers use), with the local server's capacity set (a node without services takes no
    tenants) and the first route table published."""
    # Typed as the interface: mypy checks that every backend keeps it.
    registry: Registry = shared if shared is not None else SqliteRegistry(store)
    service = FleetService(
        registry,
        services=lambda: config().services,
        stop_here=supervisor_stopper(supervisor, config),
        publish=lambda snap: publish(*snapshot_rows(snap)),
    )
    # A node without services runs no processes: no tenant is placed on it.
    local = await registry.ensure_local()
    if shared is not None:
        # Every router sharing the registry is `local` to itself: a tenant placed there would
        # be served by whichever router a request reaches. Routers place on nodes only.
        if local.capacity != 0:
            await registry.ensure_local(0, set_capacity=True)
    elif not config().services:
        await registry.ensure_local(0, set_capacity=True)
    elif local.capacity == 0:
        await registry.ensure_local(None, set_capacity=True)
    await service.refresh()
    return service
