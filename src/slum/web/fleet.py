"""The fleet registry: servers and tenants, under `/api` (scripts, other nodes) and `/_/api`
(the dashboard). Every route here needs an unscoped token, except a tenant's own detail."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import trio
from quart import Blueprint, Response, current_app, jsonify, request

from slum.errors import BadRequest, Conflict, ServerUnreachable
from slum.fleet import nodes, registry
from slum.web.auth import check_tenant, require_unscoped
from slum.web.context import WebContext, context
from slum.web.instances import Instance
from slum.web.routes import BOTH, endpoint, read_body

bp = Blueprint("fleet", __name__)


@bp.before_request
async def unscoped_only() -> None:
    if current_app.view_functions.get(request.endpoint or "") is not tenant:  # checks its own
        require_unscoped()


class Server(TypedDict):
    id: str
    name: str
    address: str
    created_at: str
    status: str
    capacity: int | None
    tenant_count: int
    has_token: bool


class Tenant(TypedDict):
    id: str
    server_id: str
    server: str | None
    service: str | None
    config: str | None
    status: str
    created_at: str
    aliases: NotRequired[list[str]]
    instance: NotRequired[Instance | None]
    moved_from: NotRequired[str]


@dataclass
class NewServer:
    """A slum node to route tenants to."""

    address: str
    name: str | None = None
    token: str | None = None
    capacity: int | None = None


@dataclass
class NewTenant:
    """A tenant, placed on a server (the least loaded when none is named)."""

    id: str
    server: str | None = None
    service: str | None = None
    config: str | dict[str, Any] | None = None


@dataclass
class TenantMove:
    to: str


async def fleet(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a fleet operation (registry writes + calls to other nodes) in a worker thread,
    its database work going through the single writer. A node that cannot be reached is a 502:
    the request was fine, the server it needs is not."""
    ctx = context()

    def transact(step: Any) -> Any:
        return trio.from_thread.run(ctx.store.write, step)

    try:
        return await trio.to_thread.run_sync(lambda: fn(transact, *args))
    except ServerUnreachable as e:
        raise nodes.NodeFailed(e.message) from None


async def routes_changed(result: Any) -> Any:
    await context().refresh_routes()
    return result


async def stop_here(ctx: WebContext, tenant: dict[str, Any], left: str | None) -> None:
    """A tenant that left this node (removed, or moved away): its instance here stops."""
    inst = ctx.supervisor.instances.get(
        f"{tenant['service'] or ctx.config.default_service}:{tenant['id']}")
    if left == registry.LOCAL and inst is not None and inst.want_running:
        await ctx.supervisor.stop(inst.id)


@endpoint(bp, "GET", "/servers", prefixes=BOTH, response=list[Server])
async def servers() -> Response:
    """Every server of the fleet, this node (`local`) included."""
    return jsonify(await context().store.read(registry.list_servers))


@endpoint(bp, "GET", "/servers/<ref>", response=Server)
async def server(ref: str) -> Response:
    """One server, by id or name."""
    return jsonify(await context().store.read(lambda c: registry.get_server(c, ref)))


@endpoint(bp, "POST", "/servers", prefixes=BOTH, body=NewServer, response=Server, status=201)
async def server_add() -> tuple[Response, int]:
    """Add a server."""
    data = await read_body(NewServer)
    if not data.address:
        raise BadRequest("address is required")
    result = await context().store.write(
        lambda c: registry.add_server(c, data.address, data.name, data.token, data.capacity))
    return jsonify(await routes_changed(result)), 201


@endpoint(bp, "DELETE", "/servers/<ref>", prefixes=BOTH, response=Server)
async def server_remove(ref: str) -> Response:
    """Remove a server that holds no tenant."""
    result = await context().store.write(lambda c: registry.remove_server(c, ref))
    return jsonify(await routes_changed(result))


@endpoint(bp, "GET", "/tenants", prefixes=BOTH, response=list[Tenant])
async def tenants() -> Response:
    """Every tenant."""
    return jsonify(await context().store.read(registry.list_tenants))


@endpoint(bp, "GET", "/tenants/<tenant_id>", response=Tenant)
async def tenant(tenant_id: str) -> Response:
    """One tenant, with its aliases and its instance when it runs here."""
    check_tenant(tenant_id)
    ctx = context()
    result = await ctx.store.read(lambda c: registry.get_tenant(c, tenant_id))
    service = result["service"] or ctx.config.default_service
    inst = ctx.supervisor.instances.get(f"{service}:{tenant_id}")
    result["instance"] = ctx.instance_dict(inst) if inst else None
    return jsonify(result)


@endpoint(bp, "POST", "/tenants", prefixes=BOTH, body=NewTenant, response=Tenant, status=201)
async def tenant_add() -> tuple[Response, int]:
    """Add a tenant and register it on its server."""
    data = await read_body(NewTenant)
    if not data.id:
        raise BadRequest("id is required")
    if data.id in context().config.services:
        # `{name}.{domain}` routes a service or a tenant: this tenant would never get its traffic.
        raise Conflict(service_clash(data.id))
    config = data.config
    config_text = None if config is None else (config if isinstance(config, str)
                                                else json.dumps(config))
    result = await fleet(nodes.place_tenant, data.id, data.server, data.service, config_text)
    return jsonify(await routes_changed(result)), 201


@endpoint(bp, "DELETE", "/tenants/<tenant_id>", prefixes=BOTH, response=Tenant)
async def tenant_remove(tenant_id: str) -> Response:
    """Remove a tenant; its instance stops."""
    result = await fleet(nodes.remove_tenant, tenant_id)
    await routes_changed(result)
    await stop_here(context(), result, result["server"])
    return jsonify(result)


@endpoint(bp, "POST", "/tenants/<tenant_id>/move", prefixes=BOTH, body=TenantMove,
          response=Tenant)
async def tenant_move(tenant_id: str) -> Response:
    """Move a tenant to another server: started there, stopped here. Its data stays behind."""
    to = (await read_body(TenantMove)).to
    if not to:
        raise BadRequest("to (a server name) is required")
    result = await fleet(nodes.move_tenant, tenant_id, to)
    await routes_changed(result)
    await stop_here(context(), result, result["moved_from"])
    return jsonify(result)


def service_clash(name: str) -> str:
    return (f"{name!r} is a service in the config: `{name}.DOMAIN` routes to that service by "
            "weight, so a tenant cannot have its name; choose another tenant id")
