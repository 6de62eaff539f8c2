"""Talking to the other slum nodes of the fleet: health checks, registering the tenants placed on
them, reading their instances and logs.

Every call is async, with httpx on trio, and bounded as a whole by its timeout: a node that hangs
(a dead host not yet marked offline, a process that accepts and never answers) holds one task for
that long, never a worker thread, and a dashboard view asks within READ_TIMEOUT_S. A node the
checker has marked offline, or whose stored address does not parse, is not asked at all
(`unreachable` says why)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import trio

from slum.errors import SlumError
from slum.fleet.registry import INVALID, Registry, status_of
from slum.store.registry import Server

log = logging.getLogger("slum.fleet")
CHECK_TIMEOUT_S = 1.0
CALL_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 3.0  # a view's read of a node: a page waits at most this long for one
OFFLINE_AFTER = 2


class NodeFailed(SlumError):
    """The node a fleet operation needs did not answer, or refused: a bad gateway."""

    status = 502


class NodeRefused(SlumError):
    """The node answered with an error of its own (its message is kept)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def call(
    server: Server, method: str, path: str, body: Any = None, *, timeout_s: float = CALL_TIMEOUT_S
) -> Any:
    """One request to a node's API with its token; NodeFailed when it cannot be reached,
    NodeRefused (carrying the node's status and message) when it says no."""
    # Imported on the first call, not at start: httpx is ~20 MB of RSS and ~50 ms of import that
    # a slum without nodes never uses (specs/performance.md).
    import httpx

    headers = {"Accept": "application/json"}
    if server.token:
        headers["Authorization"] = f"Bearer {server.token}"
    # httpx's timeout is per phase (connect, each read): a node that trickles bytes would
    # outlast it. The deadline bounds the whole call.
    with trio.move_on_after(timeout_s) as deadline:
        try:
            # trust_env off: an HTTP_PROXY meant for the internet must not carry node traffic.
            async with httpx.AsyncClient(
                base_url=server.address, timeout=timeout_s, trust_env=False
            ) as client:
                response = await client.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as e:
            raise NodeFailed(
                f"cannot talk to slum at {server.address}: {type(e).__name__}: {e}".rstrip(": ")
            ) from None
    if deadline.cancelled_caught:
        raise NodeFailed(f"slum at {server.address} did not answer within {timeout_s:g} s")
    try:
        data = response.json() if response.content else None
    except ValueError:
        data = None
    if response.status_code >= 400:
        message = data.get("error") if isinstance(data, dict) else None
        raise NodeRefused(
            message or f"HTTP {response.status_code} from {server.address}", response.status_code
        )
    return data


def unreachable(server: Server) -> str | None:
    """Why a view does not ask this node (offline as the checker last saw it, or an address that
    does not parse), or None when it may: its status is the answer, at once."""
    status, _ = status_of(server)
    return None if status == "online" else f"server {server.name} is {status}"


async def register_tenant(server: Server, tenant_id: str, service: str | None) -> None:
    """The node takes the tenant as its own (`local` there): it runs it on request."""
    await call(server, "POST", "/api/tenants", {"id": tenant_id, "server": "local", "service": service})


async def unregister_tenant(server: Server, tenant_id: str) -> None:
    """The node drops the tenant, which stops its instance there."""
    await call(server, "DELETE", f"/api/tenants/{quote(tenant_id, safe='')}")


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

    async def check(self, registry: Registry, report: Callable[[str, str], None]) -> None:
        """One round: every remote server checked at once, status changes written (the
        registry's change notification then reroutes) and reported. A stored address that does
        not parse is `invalid`, never called."""
        servers = [s for s in await registry.servers() if not s.local and status_of(s)[0] != INVALID]
        moved: list[tuple[Server, str, bool]] = []
        async with trio.open_nursery() as nursery:
            for server in servers:
                nursery.start_soon(self._check, server, moved)
        for server, status, changed_here in moved:
            await registry.set_server_status(server.id, status)
            if not changed_here:
                # This router's view is unchanged, only not (yet) the fleet's: on a shared
                # registry the majority of routers decides. Said once, when it changed.
                continue
            self.transitions += 1
            error = self.nodes[server.name].last_error
            report(server.name, status if status == "online" else f"{status}: {error}")
        known = {s.name for s in servers}
        for name in list(self.nodes):
            if name not in known:
                del self.nodes[name]

    async def _check(self, server: Server, moved: list[tuple[Server, str, bool]]) -> None:
        state = self.nodes.setdefault(server.name, NodeStatus(server.status))
        try:
            await call(server, "GET", "/api/health", timeout_s=CHECK_TIMEOUT_S)
        except Exception as e:
            # Whatever one node does wrong is that node's failed check, never the end of the
            # round for the others.
            state.failures += 1
            state.last_error = e.message if isinstance(e, SlumError) else f"{type(e).__name__}: {e}"
        else:
            state.failures = 0
            state.last_error = None
        want = (
            "online"
            if state.failures == 0
            else ("offline" if state.failures >= OFFLINE_AFTER else state.status)
        )
        changed_here = want != state.status
        state.status = want
        if want != server.status:
            moved.append((server, want, changed_here))
