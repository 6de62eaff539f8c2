"""The fleet registry: servers and tenants, under `/api` (scripts, other nodes) and `/_/api`
(the dashboard). Every route here needs an unscoped token, except a tenant's own detail."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from quart import Blueprint, Response, current_app, jsonify, request

from slum.errors import BadRequest
from slum.fleet.registry import server_dict, tenant_dict
from slum.web.auth import check_tenant, require_unscoped
from slum.web.context import context
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
    reason: NotRequired[str]  # why the status is invalid


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
    warnings: NotRequired[list[str]]  # a move: what the server it left did not do


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


@dataclass
class NewAlias:
    """A custom domain routed to the tenant."""

    domain: str


@endpoint(bp, "GET", "/servers", prefixes=BOTH, response=list[Server])
async def servers() -> Response:
    """Every server of the fleet, this node (`local`) included."""
    return jsonify([server_dict(s) for s in await context().fleet.servers()])


@endpoint(bp, "GET", "/servers/<ref>", response=Server)
async def server(ref: str) -> Response:
    """One server, by id or name."""
    return jsonify(server_dict(await context().fleet.server(ref)))


@endpoint(bp, "POST", "/servers", prefixes=BOTH, body=NewServer, response=Server, status=201)
async def server_add() -> tuple[Response, int]:
    """Add a server."""
    data = await read_body(NewServer)
    if not data.address:
        raise BadRequest("address is required")
    added = await context().fleet.add_server(data.address, data.name, data.token, data.capacity)
    return jsonify(server_dict(added)), 201


@endpoint(bp, "DELETE", "/servers/<ref>", prefixes=BOTH, response=Server)
async def server_remove(ref: str) -> Response:
    """Remove a server that holds no tenant."""
    return jsonify(server_dict(await context().fleet.remove_server(ref)))


@endpoint(bp, "GET", "/tenants", prefixes=BOTH, response=list[Tenant])
async def tenants() -> Response:
    """Every tenant."""
    return jsonify([tenant_dict(t) for t in await context().fleet.tenants()])


@endpoint(bp, "GET", "/tenants/<tenant_id>", response=Tenant)
async def tenant(tenant_id: str) -> Response:
    """One tenant, with its aliases and its instance when it runs here."""
    check_tenant(tenant_id)
    ctx = context()
    result = tenant_dict(await ctx.fleet.tenant(tenant_id))
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
    config = data.config
    config_text = None if config is None else (config if isinstance(config, str) else json.dumps(config))
    added = await context().fleet.add_tenant(data.id, data.server, data.service, config_text)
    return jsonify(tenant_dict(added)), 201


@endpoint(bp, "DELETE", "/tenants/<tenant_id>", prefixes=BOTH, response=Tenant)
async def tenant_remove(tenant_id: str) -> Response:
    """Remove a tenant; its instance stops."""
    return jsonify(tenant_dict(await context().fleet.remove_tenant(tenant_id)))


@endpoint(bp, "POST", "/tenants/<tenant_id>/move", prefixes=BOTH, body=TenantMove, response=Tenant)
async def tenant_move(tenant_id: str) -> Response:
    """Move a tenant to another server: started there, stopped here. Its data stays behind."""
    to = (await read_body(TenantMove)).to
    if not to:
        raise BadRequest("to (a server name) is required")
    moved = await context().fleet.move_tenant(tenant_id, to)
    result = {**tenant_dict(moved.tenant), "moved_from": moved.moved_from}
    if moved.warnings:
        result["warnings"] = list(moved.warnings)
    return jsonify(result)


@endpoint(
    bp, "POST", "/tenants/<tenant_id>/aliases", prefixes=BOTH, body=NewAlias, response=Tenant, status=201
)
async def alias_add(tenant_id: str) -> tuple[Response, int]:
    """Route a custom domain to the tenant (409 if it is another tenant's)."""
    domain = (await read_body(NewAlias)).domain
    return jsonify(tenant_dict(await context().fleet.add_alias(tenant_id, domain))), 201


@endpoint(bp, "DELETE", "/tenants/<tenant_id>/aliases/<domain>", prefixes=BOTH, response=Tenant)
async def alias_remove(tenant_id: str, domain: str) -> Response:
    """Stop routing a custom domain to the tenant."""
    return jsonify(tenant_dict(await context().fleet.remove_alias(domain, tenant_id)))
