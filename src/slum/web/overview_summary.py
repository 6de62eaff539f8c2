"""GET /_/api/overview/summary: everything the dashboard's overview shows, in one small answer.

The overview used to fetch /_/api/overview, /_/api/metrics and every instance's per-second series
for the last hour (/_/api/metrics/live?seconds=3599: ~870 KB with a dozen instances) only to draw
two sparklines and a few numbers. Here the server sums the application traffic into 30-second
buckets and picks the few numbers itself, so a first load is a few KB whatever the fleet's size.
"""

from __future__ import annotations

import time
from typing import Any

from quart import Response, jsonify
from quart_trio import QuartTrio

from slum.events import LEVELS
from slum.fleet import registry
from slum.store import logs
from slum.supervisor.instance import CRASH_LOOPING
from slum.web.auth import require_unscoped
from slum.web.context import WebContext

# Request targets that are slum itself, not an application: its API and dashboard (`slum`) and
# the answers the edge gives on its own (`edge`: 404s for unknown hosts, redirects).
OWN_TARGETS = frozenset({"slum", "edge"})
TRAFFIC_SECONDS = 3600
BUCKET_S = 30
TOP = 5
ATTENTION_STATES = frozenset({"failed", CRASH_LOOPING, "backoff", "unhealthy"})


def register(app: QuartTrio, ctx: WebContext) -> None:
    @app.get("/_/api/overview/summary")
    async def overview_summary() -> Response:
        require_unscoped()  # the whole node's, like /_/api/overview
        return jsonify(await summary(ctx))


async def summary(ctx: WebContext) -> dict[str, Any]:
    recent = await ctx.store.read(lambda c: logs.query(c, logs.LogQuery(min_level="warn", limit=10)))
    servers = [registry.server_dict(s) for s in await ctx.fleet.servers()]
    tenants = await ctx.fleet.tenants()
    insts = ctx.supervisor.list()
    by_state: dict[str, int] = {}
    attention: list[dict[str, Any]] = []
    consumers: list[dict[str, Any]] = []
    for inst in insts:
        status = inst.status
        by_state[status] = by_state.get(status, 0) + 1
        if status in ATTENTION_STATES:
            reason = inst.reason or inst.last_reason
            attention.append(
                {
                    "kind": "instance",
                    "id": inst.id,
                    "state": status,
                    "message": f"{status}: {reason}" if reason else status,
                }
            )
        sampled = ctx.sampler.of(inst.id) if ctx.sampler is not None else None
        if inst.pid is not None and sampled is not None:
            consumers.append(
                {"id": inst.id, "cpu_percent": sampled.cpu_percent, "rss_bytes": sampled.rss_bytes}
            )
    attention += [
        {"kind": "server", "id": s["name"], "state": s["status"], "message": "offline"}
        for s in servers
        if s["status"] != "online"
    ]
    healthy = by_state.get("healthy", 0)
    idle = by_state.get("stopped", 0) + by_state.get("sleeping", 0)
    return {
        "servers": len(servers),
        "tenants": len(tenants),
        "instances": len(insts),
        "healthy": healthy,
        "unhealthy": len(insts) - healthy - idle,
        "by_state": by_state,
        "recent_logs": recent,
        "attention": attention,
        "server_list": [{**s, "tenants": [t.id for t in tenants if t.server_id == s["id"]]} for s in servers],
        "levels": list(LEVELS),
        "traffic": _traffic(ctx),
        "latency": _worst_latency(ctx, {i.id for i in insts}),
        "host": dict(ctx.sampler.host) if ctx.sampler is not None else {},
        "top_cpu": sorted(
            (c for c in consumers if c["cpu_percent"] is not None), key=lambda c: -c["cpu_percent"]
        )[:TOP],
        "top_memory": sorted(
            (c for c in consumers if c["rss_bytes"] is not None), key=lambda c: -c["rss_bytes"]
        )[:TOP],
    }


def _traffic(ctx: WebContext) -> dict[str, Any]:
    """Requests and 5xx per second of the applications over the last hour, averaged per bucket,
    oldest first; the total counts are exact."""
    now = int(time.time()) - 1
    requests = [0.0] * TRAFFIC_SECONDS
    errors = [0.0] * TRAFFIC_SECONDS
    ctx.requests.settle()
    for target, series in list(ctx.requests.series.items()):
        if target in OWN_TARGETS:
            continue
        for out, values in (
            (requests, series.requests.series(TRAFFIC_SECONDS, now, fill=0.0)),
            (errors, series.errors.series(TRAFFIC_SECONDS, now, fill=0.0)),
        ):
            for i, v in enumerate(values):
                out[i] += v or 0.0
    return {
        "end": now * 1000,
        "bucket_s": BUCKET_S,
        "requests": _buckets(requests),
        "errors": _buckets(errors),
        "requests_total": round(sum(requests)),
        "errors_total": round(sum(errors)),
        "rate_now": round(sum(requests[-60:]) / 60, 3),
    }


def _buckets(values: list[float]) -> list[float]:
    return [round(sum(values[i : i + BUCKET_S]) / BUCKET_S, 3) for i in range(0, len(values), BUCKET_S)]


def _worst_latency(ctx: WebContext, instance_ids: set[str]) -> dict[str, Any] | None:
    """The slowest application over the last ~2 minutes; slum's own traffic never counts, and
    `instance` is set only when the target is a local instance (a page exists for it)."""
    worst: dict[str, Any] | None = None
    for target in list(ctx.requests.series):
        if target in OWN_TARGETS:
            continue
        recent = ctx.requests.recent(target).summary()
        if not recent["count"]:
            continue
        if worst is None or recent["p99"] > worst["p99"]:
            worst = {
                "target": target,
                "instance": target if target in instance_ids else None,
                "p50": recent["p50"],
                "p95": recent["p95"],
                "p99": recent["p99"],
                "count": recent["count"],
            }
    return worst
