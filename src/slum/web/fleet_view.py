"""GET /_/api/fleet/servers: each server as the dashboard's Servers page shows it: status,
load, memory, instance count, slum version and when it last answered.

This node answers for itself from memory. A remote node is asked over its API, all at once and
each within a few seconds: `/_/api/overview/summary` with the node's token (load, memory,
instances), else the public `/api/health` (version, instance count) for a node that is older or
has no token here. A node that does not answer keeps what it said last, with its time."""

from __future__ import annotations

import time
from typing import Any

import trio
from quart import Response, jsonify
from quart_trio import QuartTrio

from slum import __version__
from slum.client import Client
from slum.errors import SlumError
from slum.fleet import nodes, registry
from slum.web.context import WebContext

ASK_TIMEOUT_S = 3.0
HOST_KEYS = ("load1", "cpus", "memory_total_bytes", "memory_available_bytes")


def register(app: QuartTrio, ctx: WebContext) -> None:
    seen: dict[str, dict[str, Any]] = ctx.extras.setdefault("fleet_view_seen", {})

    @app.get("/_/api/fleet/servers")
    async def servers_summary() -> Response:
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
