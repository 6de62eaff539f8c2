"""Talking to the other slum nodes of the fleet: health checks, registering the tenants placed on
them, and reading their instances and logs. Node calls use slum.Client (the same API the CLI
uses) in worker threads; they are occasional, never on the request path."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

from slum.client import Client
from slum.errors import Conflict, SlumError, Unavailable
from slum.fleet import registry

log = logging.getLogger("slum.fleet")
CHECK_TIMEOUT_S = 1.0
CALL_TIMEOUT_S = 10.0
OFFLINE_AFTER = 2

class NodeFailed(SlumError):
    """The node a fleet operation needs did not answer, or refused: a bad gateway."""

    status = 502


# Runs fn(conn) in one transaction, wherever the database is (the CLI's connection, or the
# server's single writer reached from a worker thread).
Transact = Callable[[Callable[[Any], Any]], Any]


def node_client(server: dict[str, Any], conn_token: str | None, timeout: float) -> Client:
    return Client(server["address"], conn_token, timeout=timeout)


def _remote(transact: Transact, server: dict[str, Any]) -> Client | None:
    if server["name"] == registry.LOCAL:
        return None
    token = transact(lambda c: registry.server_token(c, server["id"]))
    return node_client(server, token, CALL_TIMEOUT_S)


def place_tenant(transact: Transact, tenant_id: str, server: str | None,
                 service: str | None, config: str | None = None) -> dict[str, Any]:
    """Add the tenant to the registry and register it on its node; undo if the node refuses."""
    tenant = transact(lambda c: registry.add_tenant(c, tenant_id, server, service, config))
    target = transact(lambda c: registry.get_server(c, tenant["server_id"]))
    client = _remote(transact, target)
    if client is not None:
        try:
            client.add_tenant(tenant_id, registry.LOCAL, service)
        except SlumError as e:
            transact(lambda c: registry.remove_tenant(c, tenant_id))
            raise Unavailable(f"server {target['name']} did not take tenant {tenant_id}: "
                              f"{e.message}") from None
    return tenant  # type: ignore[no-any-return]


def remove_tenant(transact: Transact, tenant_id: str) -> dict[str, Any]:
    """Remove the tenant from the registry and from its node (which stops its instance)."""
    tenant = transact(lambda c: registry.get_tenant(c, tenant_id))
    target = transact(lambda c: registry.get_server(c, tenant["server_id"]))
    _unregister(transact, target, tenant_id)
    return transact(lambda c: registry.remove_tenant(c, tenant_id))  # type: ignore[no-any-return]


def _unregister(transact: Transact, server: dict[str, Any], tenant_id: str) -> None:
    """Tell a remote node to drop a tenant (stopping its instance); a node that is down is
    logged, not fatal: the registry no longer routes there either way."""
    client = _remote(transact, server)
    if client is not None:
        try:
            client.remove_tenant(tenant_id)
        except SlumError as e:
            log.warning("server %s did not remove tenant %s: %s", server["name"], tenant_id,
                        e.message)


def move_tenant(transact: Transact, tenant_id: str, to: str) -> dict[str, Any]:
    """Stop it there, start it here. Its data stays behind: moving data is the operator's job."""
    tenant = transact(lambda c: registry.get_tenant(c, tenant_id))
    source = transact(lambda c: registry.get_server(c, tenant["server_id"]))
    target = transact(lambda c: registry.get_server(c, to))
    if source["id"] == target["id"]:
        raise Conflict(f"tenant {tenant_id} is already on server {target['name']}")
    if target["status"] != "online":
        raise Conflict(f"server {target['name']!r} is {target['status']}: choose another or wait")
    new_client = _remote(transact, target)
    if new_client is not None:
        try:
            new_client.add_tenant(tenant_id, registry.LOCAL, tenant["service"])
        except SlumError as e:
            raise NodeFailed(f"server {target['name']} did not take tenant {tenant_id}: "
                             f"{e.message}") from None
    moved = transact(lambda c: registry.move_tenant(c, tenant_id, target["id"]))
    _unregister(transact, source, tenant_id)
    moved["moved_from"] = source["name"]
    return moved  # type: ignore[no-any-return]


def _set_status(conn: Any, server_id: str, status: str) -> None:
    registry.set_server_status(conn, server_id, status)


@dataclass
class NodeStatus:
    status: str = "online"
    failures: int = 0
    last_error: str | None = None


@dataclass
class NodeChecker:
    """Checks every remote server's /api/health; after OFFLINE_AFTER failures in a row it is
    offline (its tenants get a fast 502 naming it), and online again when it answers."""

    interval_s: float = 2.0
    nodes: dict[str, NodeStatus] = field(default_factory=dict)
    transitions: int = 0

    async def run(self, read: Callable[[Callable[[Any], Any]], Awaitable[Any]],
                  write: Callable[[Callable[[Any], Any]], Awaitable[Any]],
                  changed: Callable[[], Awaitable[None]],
                  report: Callable[[str, str], None], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self.check(read, write, changed, report)
            await trio.sleep(self.interval_s)

    async def check(self, read: Callable[[Callable[[Any], Any]], Awaitable[Any]],
                    write: Callable[[Callable[[Any], Any]], Awaitable[Any]],
                    changed: Callable[[], Awaitable[None]],
                    report: Callable[[str, str], None]) -> None:
        """One round: every remote server checked at once, status changes written and
        reported. A stored address that does not parse is marked `invalid`, never called."""
        servers = [s for s in await read(registry.list_servers)
                   if s["name"] != registry.LOCAL and s["status"] != registry.INVALID]
        moved: list[tuple[dict[str, Any], str]] = []
        async with trio.open_nursery() as nursery:
            for server in servers:
                nursery.start_soon(self._check, server, moved)
        for server, status in moved:
            await write(partial(_set_status, server_id=server["id"], status=status))
            self.transitions += 1
            error = self.nodes[server["name"]].last_error
            report(server["name"], status if status == "online" else f"{status}: {error}")
        if moved:
            await changed()
        known = {s["name"] for s in servers}
        for name in list(self.nodes):
            if name not in known:
                del self.nodes[name]

    async def _check(self, server: dict[str, Any], moved: list[tuple[dict[str, Any], str]]) -> None:
        state = self.nodes.setdefault(server["name"], NodeStatus(server["status"]))
        try:
            await trio.to_thread.run_sync(
                lambda: Client(server["address"], timeout=CHECK_TIMEOUT_S).server_health())
        except Exception as e:
            # Whatever one node does wrong (SlumError, or an answer http.client cannot parse)
            # is that node's failed check, never the end of the round for the others.
            state.failures += 1
            state.last_error = e.message if isinstance(e, SlumError) else f"{type(e).__name__}: {e}"
        else:
            state.failures = 0
            state.last_error = None
        want = "online" if state.failures == 0 else (
            "offline" if state.failures >= OFFLINE_AFTER else state.status)
        if want != server["status"] or want != state.status:
            state.status = want
            if want != server["status"]:
                moved.append((server, want))


def remote_instances(server: dict[str, Any], token: str | None) -> list[dict[str, Any]]:
    instances = node_client(server, token, CALL_TIMEOUT_S).instances()
    for inst in instances:
        inst["server"] = server["name"]
    return instances


def remote_logs(server: dict[str, Any], token: str | None, **query: Any) -> list[dict[str, Any]]:
    return node_client(server, token, CALL_TIMEOUT_S).logs(**query)
