"""Deploys and traffic: deploy a version, move traffic between versions, set one weight, and an
instance's storage use. Each under slum's /_/api/ and with tenement's /api/ paths and fields
(`process`, `from`, `to`, `weight`, `timeout`), so tenement's scripts keep working."""

from __future__ import annotations

from typing import Any

import trio
from quart import Response, jsonify, request
from quart_trio import QuartTrio

from slum.config import parse_instance_ref
from slum.errors import BadRequest, Conflict
from slum.supervisor.storage import measure
from slum.supervisor.supervisor import MAX_WEIGHT
from slum.web.context import WebContext

DEFAULT_DEPLOY_TIMEOUT_S = 30.0  # tenement's
MAX_DEPLOY_TIMEOUT_S = 3600.0
TENANT_PATHS = ("/api/tenants", "/_/api/tenants")


async def _body() -> dict[str, Any]:
    data: Any = await request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise BadRequest("expected a JSON object in the request body")
    return data


def _str(data: dict[str, Any], *keys: str) -> str:
    for key in keys:
        value = data.get(key)
        if value is not None:
            if not isinstance(value, str) or not value:
                raise BadRequest(f"{key} must be a non-empty string")
            return value
    raise BadRequest(f"{keys[0]} is required")


def _int(data: dict[str, Any], key: str, default: int) -> int:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"{key} must be an integer, not {value!r}")
    return value


def _timeout(data: dict[str, Any]) -> float:
    value = data.get("timeout", DEFAULT_DEPLOY_TIMEOUT_S)
    if value is None:
        return DEFAULT_DEPLOY_TIMEOUT_S
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 < value <= MAX_DEPLOY_TIMEOUT_S):
        raise BadRequest(f"timeout must be a number of seconds in (0, {MAX_DEPLOY_TIMEOUT_S:g}]")
    return float(value)


def register(app: QuartTrio, ctx: WebContext) -> None:
    sup = ctx.supervisor

    @app.before_request
    async def refuse_tenant_named_like_a_service() -> None:
        # `{name}.{domain}` routes a service or a tenant: a tenant named like a service would
        # never get its traffic. Refused here, before the registry is written.
        if request.method != "POST" or request.path not in TENANT_PATHS:
            return
        data: Any = await request.get_json(force=True, silent=True)
        tenant = data.get("id") if isinstance(data, dict) else None
        if isinstance(tenant, str) and tenant in ctx.config.services:
            raise Conflict(service_clash(tenant))

    @app.post("/_/api/deploys")
    @app.post("/api/deploys")
    @app.post("/api/deploy")
    async def deploy() -> tuple[Response, int]:
        data = await _body()
        service = _str(data, "service", "process")
        version = _str(data, "version")
        weight = _int(data, "weight", MAX_WEIGHT)
        inst = await sup.deploy(service, version, weight=weight, timeout_s=_timeout(data))
        d = ctx.instance_dict(inst)
        d["instance_id"] = inst.id  # tenement's DeployResponse
        return jsonify(d), 201

    async def route(service: str, data: dict[str, Any]) -> Response:
        old, new = await sup.route(service, _str(data, "from"), _str(data, "to"))
        return jsonify({"service": service, "from_instance": old.id, "to_instance": new.id,
                        "from_weight": old.weight, "to_weight": new.weight,
                        "from": ctx.instance_dict(old), "to": ctx.instance_dict(new)})

    @app.post("/_/api/services/<service>/route")
    @app.post("/api/services/<service>/route")
    async def service_route(service: str) -> Response:
        return await route(service, await _body())

    @app.post("/api/route")
    async def tenement_route() -> Response:
        data = await _body()
        return await route(_str(data, "process", "service"), data)

    @app.post("/_/api/instances/<ref>/weight")
    @app.post("/api/instances/<ref>/weight")
    async def weight(ref: str) -> Response:
        parse_instance_ref(ref)
        data = await _body()
        if "weight" not in data:
            raise BadRequest("weight is required")
        inst = await sup.set_weight(ref, data["weight"])
        d = ctx.instance_dict(inst)
        d["instance_id"] = inst.id
        return jsonify(d)

    @app.get("/_/api/instances/<ref>/storage")
    @app.get("/api/instances/<ref>/storage")
    async def storage(ref: str) -> Response:
        parse_instance_ref(ref)
        inst = sup.get(ref)
        data_dir = ctx.config.settings.data_dir
        try:
            used = await measure(inst, data_dir)
        except OSError:
            used = 0
        path = data_dir / inst.service.name / inst.name
        exists = await trio.Path(path).is_dir()
        return jsonify({"id": inst.id, "path": str(path), "exists": exists, "bytes": used,
                        **inst.storage()})


def service_clash(name: str) -> str:
    return (f"{name!r} is a service in the config: `{name}.DOMAIN` routes to that service by "
            "weight, so a tenant cannot have its name; choose another tenant id")
