"""The fleet from one dashboard. GET /_/api/fleet/servers: each server as the Servers page
shows it: status, load, memory, instance count, slum version and when it last answered.
GET /_/api/fleet/logs: the newest lines of every node, merged by time, each with its server.

This node answers for itself from memory. A remote node is asked over its API, all at once and
each within nodes.READ_TIMEOUT_S: `/_/api/overview/summary` with the node's token (load, memory,
instances), else the public `/api/health` (version, instance count) for a node that is older or
has no token here. A node that does not answer keeps what it said last, with its time. A node
the checker marked offline, or whose address does not parse, is not asked: its status is the
answer, so a dead node never holds the page."""

from __future__ import annotations

import time
from typing import Any, NotRequired, TypedDict
from urllib.parse import urlencode

import trio
from quart import Blueprint, Response, jsonify, request

from slum import __version__
from slum.errors import BadRequest, SlumError
from slum.fleet import nodes, registry
from slum.store import logs
from slum.store.registry import Server
from slum.web.auth import require_unscoped
from slum.web.context import WebContext, context
from slum.web.fleet import Server as ServerRow
from slum.web.logs import LogEntry
from slum.web.routes import endpoint

bp = Blueprint("fleet_view", __name__)
LOG_FILTERS = ("instance_id", "min_level", "search")
MAX_FLEET_LINES = 1000
HOST_KEYS = ("load1", "cpus", "memory_total_bytes", "memory_available_bytes")
_SEEN = "fleet_view_seen"


class HostStats(TypedDict, total=False):
    load1: float
    cpus: int
    memory_total_bytes: int
    memory_available_bytes: int


class ServerView(ServerRow):
    version: NotRequired[str | None]
    instance_count: NotRequired[int | None]
    host: NotRequired[HostStats]
    last_seen: NotRequired[float | None]  # unix seconds of its last answer
    error: NotRequired[str]  # why it did not answer this time


class FleetLogEntry(LogEntry):
    server: str


class FleetLogArgs(TypedDict, total=False):
    instance_id: str
    min_level: str
    search: str
    limit: int


@endpoint(bp, "GET", "/fleet/servers", response=list[ServerView])
async def servers_summary() -> Response:
    """Every server with its load, memory, instance count, version and last answer."""
    require_unscoped()
    ctx = context()
    seen: dict[str, dict[str, Any]] = ctx.extras.setdefault(_SEEN, {})
    servers = await ctx.fleet.servers()
    out: dict[str, dict[str, Any]] = {}

    async def one(server: Server) -> None:
        row = registry.server_dict(server)
        if server.local:
            out[server.id] = {**row, **_local(ctx)}
            return
        if row["status"] == registry.INVALID:  # never called: its address does not parse
            out[server.id] = {**row, "error": row.get("reason") or "invalid address"}
            return
        if (why := nodes.unreachable(server)) is not None:
            out[server.id] = {**row, **seen.get(server.id, {}), "error": why}
            return
        try:
            fresh = await _ask(server)
        except SlumError as e:
            out[server.id] = {**row, **seen.get(server.id, {}), "error": e.message}
            return
        seen[server.id] = fresh
        out[server.id] = {**row, **fresh}

    async with trio.open_nursery() as nursery:
        for server in servers:
            nursery.start_soon(one, server)
    return jsonify([out[s.id] for s in servers])


@endpoint(bp, "GET", "/fleet/logs", response=list[FleetLogEntry], query=FleetLogArgs)
async def fleet_logs() -> Response:
    """Each node's newest `limit` lines matching the filters, newest first. A node that does not
    answer adds one line saying so, rather than failing the page."""
    require_unscoped()  # every server's lines: not one tenant's
    ctx = context()
    args = {k: v for k in LOG_FILTERS if (v := request.args.get(k))}
    raw_limit = request.args.get("limit", "200")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_FLEET_LINES:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_FLEET_LINES}")
    limit = int(raw_limit)
    q = logs.LogQuery(
        instance_id=args.get("instance_id"),
        min_level=args.get("min_level"),
        search=args.get("search"),
        limit=limit,
    ).validate()
    rows = [{**r, "server": registry.LOCAL} for r in await ctx.store.read(lambda c: logs.query(c, q))]
    path = "/_/api/logs?" + urlencode({**args, "limit": limit})

    async def one(server: Server) -> None:
        why = nodes.unreachable(server)  # not asked: its status says why it has no lines
        try:
            if why is None:
                got = await nodes.call(server, "GET", path, timeout_s=nodes.READ_TIMEOUT_S)
                rows.extend({**r, "server": server.name} for r in got or ())
                return
        except SlumError as e:
            why = f"{server.name} did not answer: {e.message}"
        rows.append(
            {
                "id": 0,
                "server": server.name,
                "level": "error",
                "timestamp": logs.iso(time.time()),
                "instance_id": None,
                "tenant_id": None,
                "stream": "system",
                "message": why,
            }
        )

    async with trio.open_nursery() as nursery:
        for server in await ctx.fleet.servers():
            if not server.local:
                nursery.start_soon(one, server)
    rows.sort(key=lambda r: str(r.get("timestamp") or ""), reverse=True)
    return jsonify(rows[:limit])


def _local(ctx: WebContext) -> dict[str, Any]:
    host = ctx.sampler.host if ctx.sampler is not None else {}
    return {
        "version": __version__,
        "instance_count": len(ctx.supervisor.list()),
        "host": {k: host[k] for k in HOST_KEYS if k in host},
        "last_seen": time.time(),
    }


async def _ask(server: Server) -> dict[str, Any]:
    """What a remote node says about itself."""
    health = await nodes.call(server, "GET", "/api/health", timeout_s=nodes.READ_TIMEOUT_S) or {}
    fresh: dict[str, Any] = {
        "version": health.get("version"),
        "instance_count": health.get("instances"),
        "host": {},
        "last_seen": time.time(),
    }
    try:
        summary = await nodes.call(server, "GET", "/_/api/overview/summary", timeout_s=nodes.READ_TIMEOUT_S)
    except SlumError:
        return fresh  # an older node, or no token for it here: health is what we have
    if isinstance(summary, dict):
        host = summary.get("host") or {}
        fresh["host"] = {k: host[k] for k in HOST_KEYS if k in host}
        fresh["instance_count"] = summary.get("instances", fresh["instance_count"])
    return fresh
