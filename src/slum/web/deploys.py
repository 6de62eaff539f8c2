"""Deploys and traffic: deploy a version, move traffic between versions, set one weight, and an
instance's storage use. Each under slum's /_/api/ and with tenement's /api/ paths and fields
(`process`, `from`, `to`, `weight`, `timeout`), so tenement's scripts keep working."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

import trio
from quart import Blueprint, Response, jsonify

from slum.config import parse_instance_ref
from slum.errors import BadRequest
from slum.supervisor.storage import measure
from slum.supervisor.supervisor import MAX_WEIGHT
from slum.web.auth import check_instance
from slum.web.context import context
from slum.web.instances import Instance
from slum.web.routes import API, BOTH, body, endpoint

bp = Blueprint("deploys", __name__)

DEFAULT_DEPLOY_TIMEOUT_S = 30.0  # tenement's
MAX_DEPLOY_TIMEOUT_S = 3600.0


class DeployRequest(TypedDict):
    """A version of a service to start; `process` is tenement's name for `service`."""

    service: NotRequired[str]
    process: NotRequired[str]
    version: str
    weight: NotRequired[int]  # 0-100, given once the version is healthy (default 100)
    timeout: NotRequired[float]  # seconds to get healthy (default 30)


# `from` is a keyword in Python: the functional form
RouteRequest = TypedDict(
    "RouteRequest", {"from": str, "to": str, "process": NotRequired[str], "service": NotRequired[str]}
)


class WeightRequest(TypedDict):
    weight: int  # 0-100


class Deployed(Instance):
    instance_id: str  # tenement's DeployResponse


class Routed(TypedDict):
    service: str
    from_instance: str
    to_instance: str
    from_weight: int
    to_weight: int
    # `from` and `to`: the two instances (a keyword in Python, so not typed here)


class Storage(TypedDict):
    id: str
    path: str
    exists: bool
    bytes: int
    storage_bytes: int | None
    storage_quota_bytes: int | None
    storage_warning: str | None


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
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (0 < value <= MAX_DEPLOY_TIMEOUT_S)
    ):
        raise BadRequest(f"timeout must be a number of seconds in (0, {MAX_DEPLOY_TIMEOUT_S:g}]")
    return float(value)


@endpoint(bp, "POST", "/deploys", prefixes=BOTH, body=DeployRequest, response=Deployed, status=201)
async def deploy() -> tuple[Response, int]:
    """Deploy a version: started at weight 0, given its weight once healthy; a version that
    does not get healthy is stopped and the serving versions keep their traffic."""
    return await _deploy()


@endpoint(bp, "POST", "/deploy", prefixes=(API,), body=DeployRequest, response=Deployed, status=201)
async def deploy_tenement() -> tuple[Response, int]:
    """Deploy a version, at tenement's path."""
    return await _deploy()


async def _deploy() -> tuple[Response, int]:
    ctx = context()
    data = await body()
    service = _str(data, "service", "process")
    version = _str(data, "version")
    check_instance(f"{service}:{version}")
    weight = _int(data, "weight", MAX_WEIGHT)
    inst = await ctx.supervisor.deploy(service, version, weight=weight, timeout_s=_timeout(data))
    d = ctx.instance_dict(inst)
    d["instance_id"] = inst.id  # tenement's DeployResponse
    return jsonify(d), 201


async def _route(service: str, data: dict[str, Any]) -> Response:
    ctx = context()
    source, target = _str(data, "from"), _str(data, "to")
    check_instance(f"{service}:{source}")
    check_instance(f"{service}:{target}")
    old, new = await ctx.supervisor.route(service, source, target)
    return jsonify(
        {
            "service": service,
            "from_instance": old.id,
            "to_instance": new.id,
            "from_weight": old.weight,
            "to_weight": new.weight,
            "from": ctx.instance_dict(old),
            "to": ctx.instance_dict(new),
        }
    )


@endpoint(bp, "POST", "/services/<service>/route", prefixes=BOTH, body=RouteRequest, response=Routed)
async def service_route(service: str) -> Response:
    """Blue/green: all of `from`'s weight goes to `to` in one step; `from` keeps running."""
    return await _route(service, await body())


@endpoint(bp, "POST", "/route", prefixes=(API,), body=RouteRequest, response=Routed)
async def tenement_route() -> Response:
    """Blue/green, at tenement's path (the service as `process`)."""
    data = await body()
    return await _route(_str(data, "process", "service"), data)


@endpoint(bp, "POST", "/instances/<ref>/weight", prefixes=BOTH, body=WeightRequest, response=Deployed)
async def weight(ref: str) -> Response:
    """Set one instance's share of its service's traffic (0-100)."""
    parse_instance_ref(ref)
    check_instance(ref)
    ctx = context()
    data = await body()
    if "weight" not in data:
        raise BadRequest("weight is required")
    inst = await ctx.supervisor.set_weight(ref, data["weight"])
    d = ctx.instance_dict(inst)
    d["instance_id"] = inst.id
    return jsonify(d)


@endpoint(bp, "GET", "/instances/<ref>/storage", prefixes=BOTH, response=Storage)
async def storage(ref: str) -> Response:
    """An instance's data directory: where, whether it exists, bytes used against its quota."""
    parse_instance_ref(ref)
    check_instance(ref)
    ctx = context()
    inst = ctx.supervisor.get(ref)
    data_dir = ctx.config.settings.data_dir
    try:
        used = await measure(inst, data_dir)
    except OSError:
        used = 0
    path = data_dir / inst.service.name / inst.name
    exists = await trio.Path(path).is_dir()
    return jsonify({"id": inst.id, "path": str(path), "exists": exists, "bytes": used, **inst.storage()})
