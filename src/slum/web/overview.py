"""Summaries: the overview the dashboard opens on, slum's own status, and the parsed config."""

from __future__ import annotations

import time
from typing import Any, NotRequired, TypedDict

from quart import Blueprint, Response, jsonify

from slum import __version__
from slum.events import LEVELS
from slum.fleet import registry
from slum.store import logs
from slum.supervisor.states import State
from slum.web.auth import require_unscoped
from slum.web.context import WebContext, context
from slum.web.health import registry_health
from slum.web.logs import LogEntry
from slum.web.routes import endpoint

bp = Blueprint("overview", __name__)


class AttentionItem(TypedDict):
    kind: str  # instance, server, storage, disk
    id: str
    state: str
    message: str


class Overview(TypedDict):
    servers: int
    tenants: int
    instances: int
    healthy: int
    unhealthy: int
    by_state: dict[str, int]
    recent_logs: list[LogEntry]
    attention: list[AttentionItem]
    server_list: list[dict[str, Any]]
    levels: list[str]


class SamplerStatus(TypedDict):
    ticks: int
    last_tick_ms: float
    busy_s: float


class Status(Overview):
    version: str
    uptime_secs: float
    domain: str
    log_queue: int
    dropped_logs: int
    logs_stored: int
    log_batches: int
    sampler: NotRequired[SamplerStatus]
    edge_connections: int
    requests_metrics: bool
    tasks: dict[str, Any]  # background tasks: their errors (contained, retried)
    registry: dict[str, Any]  # the fleet registry: backend, up, and why not (etcd)
    edge: dict[str, Any]  # the edge's contained failures: refused requests, failed exchanges


@endpoint(bp, "GET", "/overview", response=Overview)
async def overview() -> Response:
    """Counts, what needs attention and the latest warnings (unscoped tokens only)."""
    require_unscoped()
    return jsonify(await _overview(context()))


@endpoint(bp, "GET", "/status", response=Status)
async def status() -> Response:
    """The overview plus slum's own counters (queues, log ingestion, the sampler)."""
    require_unscoped()
    ctx = context()
    data = await _overview(ctx)
    data["version"] = __version__
    data["uptime_secs"] = round(time.time() - ctx.started_at, 1)
    data["domain"] = ctx.domain
    data["log_queue"] = ctx.hub.statistics().log_queue
    data["dropped_logs"] = ctx.hub.dropped_logs
    data["logs_stored"] = ctx.ingest.lines
    data["log_batches"] = ctx.ingest.batches
    if ctx.sampler is not None:
        stats = ctx.sampler.stats
        data["sampler"] = {
            "ticks": stats.ticks,
            "last_tick_ms": stats.last_tick_ms,
            "busy_s": round(stats.busy_s, 4),
        }
    data["edge_connections"] = ctx.edge.connections if ctx.edge is not None else 0
    data["requests_metrics"] = ctx.requests.enabled
    if ctx.edge is not None:
        edge = ctx.edge.statistics()
        data["edge"] = {
            "connections": edge.connections,
            "max_connections": edge.max_connections,
            "client_errors": edge.client_errors,
            "timeouts": edge.timeouts,
            "upstream_errors": dict(edge.upstream_errors),
        }
    else:
        data["edge"] = {}
    data["registry"] = registry_health(ctx)
    data["tasks"] = ctx.tasks.to_dict() if ctx.tasks is not None else {}
    return jsonify(data)


@endpoint(bp, "GET", "/config", response=dict[str, Any])
async def config() -> Response:
    """The parsed tenement.toml (unscoped tokens only)."""
    require_unscoped()
    return jsonify(context().config.to_dict())


async def _overview(ctx: WebContext) -> dict[str, Any]:
    q = logs.LogQuery(min_level="warn", limit=10)
    recent = await ctx.store.read(lambda c: logs.query(c, q))
    # Through the fleet's registry, wherever it is (this database, or etcd shared by routers).
    servers = [registry.server_dict(s) for s in await ctx.fleet.servers()]
    tenants = await ctx.fleet.tenants()
    insts = ctx.supervisor.list()
    by_state = {s.value: 0 for s in State}
    for inst in insts:
        by_state[inst.state.value] += 1
    healthy = by_state["healthy"]
    attention = [
        {
            "kind": "instance",
            "id": i.id,
            "state": i.state.value,
            "message": f"{i.state.value}: {i.reason}" if i.reason else i.state.value,
        }
        for i in insts
        if i.state in (State.FAILED, State.BACKOFF, State.UNHEALTHY)
    ]
    attention += [
        {"kind": "server", "id": s["name"], "state": s["status"], "message": s.get("reason", s["status"])}
        for s in servers
        if s["status"] != "online"
    ]
    attention += [
        {"kind": "storage", "id": i.id, "state": "quota", "message": warning}
        for i in insts
        if (warning := i.storage()["storage_warning"])
    ]
    host = ctx.sampler.host if ctx.sampler is not None else {}
    total, free = host.get("disk_total_bytes"), host.get("disk_free_bytes")
    if total and free is not None and free / total < 0.1:
        attention.append(
            {
                "kind": "disk",
                "id": str(ctx.config.settings.data_dir),
                "state": "filling",
                "message": f"disk {100 - free / total * 100:.0f}% full ({free / 1e9:.1f} GB free)",
            }
        )
    return {
        "servers": len(servers),
        "tenants": len(tenants),
        "instances": len(insts),
        "healthy": healthy,
        "unhealthy": (len(insts) - healthy - by_state["stopped"] - by_state["sleeping"]),
        "by_state": by_state,
        "recent_logs": recent,
        "attention": attention,
        "server_list": [{**s, "tenants": [t.id for t in tenants if t.server_id == s["id"]]} for s in servers],
        "levels": list(LEVELS),
    }
