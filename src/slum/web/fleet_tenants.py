"""Where each tenant stands, wherever it runs. GET /_/api/fleet/tenants: every tenant (or one,
`?id=`) with its server's status and its instance, asked of the node that runs it.

The tenants API says what the registry holds, and an instance only when it runs here. A tenant on
another node is only as up as that node: each remote node holding a wanted tenant is asked once,
all at once, for its instances, within nodes.READ_TIMEOUT_S. A node known to be offline (the node
checker says so) or with an address that does not parse is not asked at all; its tenants carry
the server's status and why there is no instance, so the page says so instead of "Active"."""

from __future__ import annotations

from typing import Any, TypedDict

import trio
from quart import Blueprint, Response, jsonify, request

from slum.errors import SlumError
from slum.fleet import nodes, registry
from slum.store.registry import Server, Tenant
from slum.web.auth import require_unscoped
from slum.web.context import context
from slum.web.instances import Instance
from slum.web.routes import endpoint

bp = Blueprint("fleet_tenants", __name__)


class TenantState(TypedDict):
    id: str
    server_id: str
    server: str | None
    server_status: str  # online, offline, invalid (the registry's status of its server)
    instance: Instance | None  # None: not running, or its node did not say
    error: str | None  # why its node's answer is missing


class TenantStateArgs(TypedDict, total=False):
    id: str  # one tenant: only its node is asked


@endpoint(bp, "GET", "/fleet/tenants", response=list[TenantState], query=TenantStateArgs)
async def tenant_states() -> Response:
    """Every tenant with its server's status and its instance, asked of the node it runs on."""
    require_unscoped()
    ctx = context()
    wanted = request.args.get("id")
    tenants = [await ctx.fleet.tenant(wanted)] if wanted is not None else await ctx.fleet.tenants()
    servers = {s.id: s for s in await ctx.fleet.servers()}
    local = [ctx.instance_dict(i) for i in ctx.supervisor.list()]
    answers: dict[str, list[dict[str, Any]] | str] = {}

    async def ask(server: Server) -> None:
        try:
            got = await nodes.call(server, "GET", "/_/api/instances", timeout_s=nodes.READ_TIMEOUT_S)
        except SlumError as e:
            answers[server.id] = f"server {server.name} did not answer: {e.message}"
            return
        answers[server.id] = got if isinstance(got, list) else []

    async with trio.open_nursery() as nursery:
        for sid in {t.server_id for t in tenants}:
            server = servers.get(sid)
            if server is None:
                answers[sid] = f"server {sid} is not in the registry"
            elif server.local:
                answers[sid] = local
            elif (why := nodes.unreachable(server)) is not None:
                answers[sid] = why
            else:
                nursery.start_soon(ask, server)
    return jsonify(
        [
            _state(t, servers.get(t.server_id), answers[t.server_id], ctx.config.default_service)
            for t in tenants
        ]
    )


def _state(
    tenant: Tenant,
    server: Server | None,
    answer: list[dict[str, Any]] | str,
    default_service: str | None,
) -> TenantState:
    state = TenantState(
        id=tenant.id,
        server_id=tenant.server_id,
        server=tenant.server,
        server_status=registry.status_of(server)[0] if server is not None else "unknown",
        instance=None,
        error=None,
    )
    if isinstance(answer, str):
        state["error"] = answer
        return state
    # a remote node names the instance by its own default service when the tenant has none
    service = tenant.service
    if service is None and server is not None and server.local:
        service = default_service
    for inst in answer:
        if inst.get("name") == tenant.id and (service is None or inst.get("service") == service):
            state["instance"] = {**inst, "server": tenant.server}  # type: ignore[typeddict-item]
            break
    return state
