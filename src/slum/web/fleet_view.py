"""The fleet from one dashboard. GET /_/api/fleet/servers: each server as the Servers page
shows it: status, load, memory, instance count, slum version and when it last answered.
GET /_/api/fleet/logs: the newest lines of every node, merged by time, each with its server.

This node answers for itself from memory. A remote node is asked over its API, all at once and
each within a few seconds: `/_/api/overview/summary` with the node's token (load, memory,
instances), else the public `/api/health` (version, instance count) for a node that is older or
has no token here. A node that does not answer keeps what it said last, with its time."""

from __future__ import annotations

import time
from functools import partial
from typing import Any

import trio
from quart import Response, jsonify, request
from quart_trio import QuartTrio

from slum import __version__
from slum.client import Client
from slum.errors import BadRequest, SlumError
from slum.fleet import nodes, registry
from slum.store import logs
from slum.web.auth import require_unscoped
from slum.web.context import WebContext

ASK_TIMEOUT_S = 3.0
LOG_FILTERS = ("instance_id", "min_level", "search")
MAX_FLEET_LINES = 1000
HOST_KEYS = ("load1", "cpus", "memory_total_bytes", "memory_available_bytes")


def register(app: QuartTrio, ctx: WebContext) -> None:
    seen: dict[str, dict[str, Any]] = ctx.extras.setdefault("fleet_view_seen", {})

    @app.get("/_/api/fleet/servers")
    async def servers_summary() -> Response:
        require_unscoped()
        servers = await ctx.store.read(registry.list_servers)
        tokens = await ctx.store.read(
            lambda c: {s["id"]: registry.server_token(c, s["id"]) for s in servers})
        out: dict[str, dict[str, Any]] = {}

        async def one(server: dict[str, Any]) -> None:
            if server["name"] == registry.LOCAL:
                out[server["id"]] = {**server, **_local(ctx)}
                return
            try:
                with trio.fail_after(ASK_TIMEOUT_S + 1):
                    fresh = await trio.to_thread.run_sync(
                        _ask, server, tokens.get(server["id"]), abandon_on_cancel=True)
            except (SlumError, trio.TooSlowError) as e:
                error = getattr(e, "message", None) or "no answer in time"
                out[server["id"]] = {**server, **seen.get(server["id"], {}), "error": error}
                return
            seen[server["id"]] = fresh
            out[server["id"]] = {**server, **fresh}

        async with trio.open_nursery() as nursery:
            for server in servers:
                nursery.start_soon(one, server)
        return jsonify([out[s["id"]] for s in servers])

    @app.get("/_/api/fleet/logs")
    async def fleet_logs() -> Response:
        require_unscoped()  # every server's lines: not one tenant's
        """Each node's newest `limit` lines matching the filters, newest first. A node that does
        not answer adds one line saying so, rather than failing the page."""
        args = {k: request.args.get(k) for k in LOG_FILTERS if request.args.get(k)}
        raw_limit = request.args.get("limit", "200")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_FLEET_LINES:
            raise BadRequest(f"limit must be an integer from 1 to {MAX_FLEET_LINES}")
        limit = int(raw_limit)
        q = logs.LogQuery(instance_id=args.get("instance_id"), min_level=args.get("min_level"),
                          search=args.get("search"), limit=limit).validate()
        rows = [{**r, "server": registry.LOCAL}
                for r in await ctx.store.read(lambda c: logs.query(c, q))]
        servers = [s for s in await ctx.store.read(registry.list_servers)
                   if s["name"] != registry.LOCAL]
        tokens = await ctx.store.read(
            lambda c: {s["id"]: registry.server_token(c, s["id"]) for s in servers})

        async def one(server: dict[str, Any]) -> None:
            try:
                with trio.fail_after(ASK_TIMEOUT_S + 1):
                    got = await trio.to_thread.run_sync(
                        partial(nodes.remote_logs, server, tokens.get(server["id"]),
                                **args, limit=limit), abandon_on_cancel=True)
                rows.extend({**r, "server": server["name"]} for r in got)
            except (SlumError, trio.TooSlowError) as e:
                rows.append({"id": 0, "server": server["name"], "level": "error",
                             "timestamp": logs.iso(time.time()),
                             "instance_id": None, "tenant_id": None, "stream": "system",
                             "message": f"{server['name']} did not answer: "
                                        f"{getattr(e, 'message', None) or 'no answer in time'}"})

        async with trio.open_nursery() as nursery:
            for server in servers:
                nursery.start_soon(one, server)
        rows.sort(key=lambda r: str(r.get("timestamp") or ""), reverse=True)
        return jsonify(rows[:limit])


def _local(ctx: WebContext) -> dict[str, Any]:
    host = ctx.sampler.host if ctx.sampler is not None else {}
    return {"version": __version__, "instance_count": len(ctx.supervisor.list()),
            "host": {k: host[k] for k in HOST_KEYS if k in host}, "last_seen": time.time()}


def _ask(server: dict[str, Any], token: str | None) -> dict[str, Any]:
    """What a remote node says about itself (blocking: runs in a worker thread)."""
    health = Client(server["address"], timeout=ASK_TIMEOUT_S).server_health()
    fresh: dict[str, Any] = {"version": health.get("version"),
                             "instance_count": health.get("instances"), "host": {},
                             "last_seen": time.time()}
    try:
        summary = nodes.node_client(server, token, ASK_TIMEOUT_S).request(
            "GET", "/_/api/overview/summary")
    except SlumError:
        return fresh  # an older node, or no token for it here: health is what we have
    if isinstance(summary, dict):
        host = summary.get("host") or {}
        fresh["host"] = {k: host[k] for k in HOST_KEYS if k in host}
        fresh["instance_count"] = summary.get("instances", fresh["instance_count"])
    return fresh
