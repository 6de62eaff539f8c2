"""Instances: list, spawn, one instance, restart, stop, health. A tenant-scoped token sees and
acts on its tenant's instances only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

import trio
from quart import Blueprint, Response, jsonify, request

from slum.config import parse_instance_ref
from slum.errors import BadRequest, SlumError
from slum.fleet import nodes, registry
from slum.store.registry import Server
from slum.web.auth import check_instance, instance_allowed, scope_tenant
from slum.web.context import context
from slum.web.routes import API, BOTH, endpoint, read_body

bp = Blueprint("instances", __name__)


InstanceState = Literal[
    "stopped",
    "sleeping",
    "starting",
    "healthy",
    "degraded",
    "unhealthy",
    "backoff",
    "stopping",
    "failed",
    "crash-looping",
]
Health = Literal["healthy", "unhealthy", "unknown"]


class StateTransition(TypedDict):
    ts: float
    state: str
    reason: str | None


class ServiceConfig(TypedDict):
    """What the instance runs: its [service.NAME] section, as parsed."""

    command: list[str]
    health: str | None
    idle_timeout: float | None
    startup_timeout: float | None
    restart: str | None
    workdir: str | None
    env: dict[str, str]
    memory_limit_mb: int | None
    cpu_shares: int | None
    pids_max: int | None
    isolation: str  # process | namespace


class Instance(TypedDict):
    id: str
    service: str
    name: str
    status: InstanceState  # `crash-looping` derived from the state machine's own `state`
    state: str
    crash_looping: bool
    health: Health
    port: int | None
    pid: int | None
    socket: str | None
    weight: int  # share of `{service}.{domain}` traffic, 0-100
    uptime_secs: float
    restarts: int
    reason: str | None
    last_reason: str | None  # the last reason given, kept across restarts
    wakes: int
    last_exit: int | None
    last_exit_code: int | None
    idle_timeout: float | None
    cpu_percent: float | None
    rss_bytes: int | None
    oom_kills: int  # processes the kernel killed at the memory limit
    storage_bytes: int | None
    storage_quota_bytes: int | None
    storage_warning: str | None
    url: str
    server: NotRequired[str]
    history: NotRequired[list[StateTransition]]
    config: NotRequired[ServiceConfig]


class InstanceHealth(TypedDict):
    id: str
    health: Health
    status: InstanceState
    reason: str | None


class InstancesArgs(TypedDict, total=False):
    all: str  # "1" or "true": also the instances on the fleet's other servers


@dataclass
class SpawnRequest:
    """The instance to start: `service` and `id`, or `service` as `service:id`."""

    service: str
    id: str | None = None


def checked_ref(ref: str) -> str:
    parse_instance_ref(ref)
    check_instance(ref)
    return ref


@endpoint(bp, "GET", "/instances", prefixes=BOTH, response=list[Instance], query=InstancesArgs)
async def instances() -> Response:
    """The instances of this node (with `all=1`: of every server)."""
    ctx = context()
    local = [
        {**ctx.instance_dict(i), "server": registry.LOCAL}
        for i in ctx.supervisor.list()
        if instance_allowed(i.id)
    ]
    if request.args.get("all") not in ("1", "true") or scope_tenant() is not None:
        return jsonify(local)  # a scoped token: its tenant runs here, the fleet is not its own
    servers = [s for s in await ctx.fleet.servers() if not s.local]
    results: list[dict[str, Any]] = list(local)

    async def one(server: Server) -> None:
        # A node marked offline is not asked: its placeholder row says so at once.
        try:
            why = nodes.unreachable(server)
            if why is not None:
                raise nodes.NodeFailed(why)
            got = await nodes.call(server, "GET", "/_/api/instances", timeout_s=nodes.READ_TIMEOUT_S)
            answer = [i for i in got if isinstance(i, dict)] if isinstance(got, list) else []
            results.extend(
                {**i, "server": server.name} for i in answer if instance_allowed(str(i.get("id", "")))
            )
        except SlumError as e:
            if instance_allowed(f"{server.name}:?"):
                results.append(
                    {
                        "id": f"{server.name}:?",
                        "server": server.name,
                        "status": "unknown",
                        "reason": e.message,
                    }
                )

    async with trio.open_nursery() as nursery:
        for server in servers:
            nursery.start_soon(one, server)
    return jsonify(results)


@dataclass
class TenementSpawn:
    """tenement's spawn: `process` (the service) and `id`."""

    id: str
    process: str | None = None
    service: str | None = None


@endpoint(bp, "POST", "/instances", body=SpawnRequest, response=Instance, status=201)
async def spawn() -> tuple[Response, int]:
    """Start an instance; answers when it has settled (healthy, or clearly not)."""
    data = await read_body(SpawnRequest)
    return await _spawn(data.service, data.id)


@endpoint(bp, "POST", "/instances/spawn", prefixes=(API,), body=TenementSpawn, response=Instance, status=201)
async def spawn_tenement() -> tuple[Response, int]:
    """Start an instance, as tenement's API does."""
    data = await read_body(TenementSpawn)
    return await _spawn(data.process or data.service or "", data.id)


async def _spawn(service: str, name: str | None) -> tuple[Response, int]:
    if service and not name and ":" in service:
        service, name = parse_instance_ref(service)
    if not service or not name:
        raise BadRequest("service and id are required")
    check_instance(f"{service}:{name}")
    ctx = context()
    inst = await ctx.supervisor.spawn(service, name)
    return jsonify(ctx.instance_dict(inst)), 201


@endpoint(bp, "GET", "/instances/<ref>", prefixes=BOTH, response=Instance)
async def instance(ref: str) -> Response:
    """One instance, with its state history and its service's config."""
    ctx = context()
    inst = ctx.supervisor.get(checked_ref(ref))
    d = ctx.instance_dict(inst)
    d["history"] = [{"ts": t.ts, "state": t.state, "reason": t.reason} for t in inst.history]
    svc = inst.service
    d["config"] = {
        "command": list(svc.command),
        "health": svc.health,
        "idle_timeout": svc.idle_timeout,
        "startup_timeout": svc.startup_timeout,
        "restart": svc.restart,
        "workdir": str(svc.workdir),
        "env": svc.env,
        "memory_limit_mb": svc.memory_limit_mb,
        "cpu_shares": svc.cpu_shares,
        "pids_max": svc.pids_max,
        "isolation": svc.isolation,
    }
    return jsonify(d)


@endpoint(bp, "POST", "/instances/<ref>/restart", prefixes=BOTH, response=Instance)
async def restart(ref: str) -> Response:
    """Restart an instance (starts it when stopped)."""
    ctx = context()
    return jsonify(ctx.instance_dict(await ctx.supervisor.restart(checked_ref(ref))))


@endpoint(bp, "POST", "/instances/<ref>/stop", prefixes=BOTH, response=Instance)
async def stop(ref: str) -> Response:
    """Stop an instance; it stays stopped until started again."""
    ctx = context()
    return jsonify(ctx.instance_dict(await ctx.supervisor.stop(checked_ref(ref))))


@endpoint(bp, "GET", "/instances/<ref>/health", prefixes=BOTH, response=InstanceHealth)
async def instance_health(ref: str) -> Response:
    """An instance's health and status."""
    inst = context().supervisor.get(checked_ref(ref))
    return jsonify({"id": inst.id, "health": inst.health, "status": inst.state.value, "reason": inst.reason})
