"""Metrics endpoints: current snapshots, history, and the Prometheus text exposition."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any, NotRequired, TypedDict

from quart import Blueprint, Response, jsonify, request

from slum.errors import BadRequest
from slum.store import logs
from slum.telemetry.history import query_history
from slum.web.auth import Forbidden, instance_allowed, require_unscoped, scope_tenant
from slum.web.context import WebContext, context
from slum.web.health import registry_health
from slum.web.routes import MAX_INT, endpoint, int_arg

bp = Blueprint("metrics", __name__)
prometheus_bp = Blueprint("prometheus", __name__)  # text, not JSON: outside the API's table

PROM_BUCKETS_MS = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000]


class MetricSnapshot(TypedDict):
    """One current value; latency metrics carry their summary too."""

    name: str
    value: float | None
    labels: dict[str, str]
    timestamp: int  # unix milliseconds
    count: NotRequired[int]
    sum: NotRequired[float]
    mean: NotRequired[float]
    p50: NotRequired[float]
    p95: NotRequired[float]
    p99: NotRequired[float]
    max: NotRequired[float]


class LiveMetrics(TypedDict):
    end: int  # unix milliseconds of the last point
    step_ms: int
    series: dict[str, dict[str, list[float | None]]]


class HistorySeries(TypedDict):
    labels: dict[str, str]
    points: list[list[float]]  # [unix ms, avg, min, max]


class MetricHistory(TypedDict):
    name: str
    step: int
    since: int
    until: int
    series: list[HistorySeries]
    points: list[list[float]]


class LiveArgs(TypedDict, total=False):
    seconds: int  # 10 to 3600
    keys: str  # comma-separated series keys (instance ids, targets)
    exclude: str


class HistoryArgs(TypedDict, total=False):
    name: str
    labels: str  # a JSON object or k=v,k=v
    since: str  # 10m, 2h, a unix time (seconds or milliseconds) or ISO-8601
    until: str
    step: int  # seconds, at least 60


def _in_scope(labels: dict[str, Any] | None) -> bool:
    """A series a scoped token may see: one that names only the tenant's instances."""
    if scope_tenant() is None:
        return True
    if not labels:
        return False
    named = [str(labels[k]) for k in ("target", "instance") if k in labels]
    return bool(named) and all(":" in n and instance_allowed(n) for n in named)


@endpoint(bp, "GET", "/metrics", response=list[MetricSnapshot])
async def metrics() -> Response:
    """Current values: request rates and latencies per target, CPU and memory per instance."""
    ctx = context()
    out = ctx.requests.snapshot()
    if ctx.sampler is not None:
        out += ctx.sampler.snapshot()
    now_ms = int(time.time() * 1000)
    for target in ctx.requests.series:
        recent = ctx.requests.recent(target).summary()
        out.append(
            {
                "name": "requests_per_s",
                "value": round(ctx.requests.rate(target), 2),
                "labels": {"target": target},
                "timestamp": now_ms,
            }
        )
        out.append(
            {
                "name": "latency_recent_ms",
                "value": recent["p99"],
                "labels": {"target": target},
                "timestamp": now_ms,
                **recent,
            }
        )
    return jsonify([m for m in out if _in_scope(m.get("labels"))])


@endpoint(bp, "GET", "/metrics/live", response=LiveMetrics, query=LiveArgs)
async def live() -> Response:
    """The last hour at one-second resolution, from the in-memory rings."""
    ctx = context()
    seconds = min(max(int_arg("seconds", 300, low=-MAX_INT, high=MAX_INT), 10), 3600)
    keys = set(filter(None, (request.args.get("keys") or "").split(","))) or None
    exclude = set(filter(None, (request.args.get("exclude") or "").split(",")))

    def wanted(key: str) -> bool:
        return (keys is None or key in keys) and key not in exclude and _in_scope({"target": key})

    now = int(time.time()) - 1
    series: dict[str, Any] = {}
    ctx.requests.settle()
    for target, s in ctx.requests.series.items():
        if not wanted(target):
            continue
        series[target] = {
            "requests": s.requests.series(seconds, now, fill=0.0),
            "errors": s.errors.series(seconds, now, fill=0.0),
        }
    if ctx.sampler is not None:
        for name, rings in ctx.sampler.rings.items():
            if not wanted(name):
                continue
            entry = series.setdefault(name, {})
            entry["cpu_percent"] = rings.cpu.series(seconds, now)
            entry["rss_bytes"] = rings.rss.series(seconds, now)
    return jsonify({"end": now * 1000, "step_ms": 1000, "series": series})


@endpoint(bp, "GET", "/metrics/history", response=MetricHistory, query=HistoryArgs)
async def history() -> Response:
    """Per-minute history (avg, min, max) of one metric, at a step that fits the range."""
    ctx = context()
    a = request.args
    name = a.get("name") or ""
    labels = parse_labels(a.get("labels"))
    if not _in_scope(labels):
        raise Forbidden(
            f"this token is limited to tenant {scope_tenant()}: "
            "name one of its instances in labels (target or instance)"
        )
    now = time.time()
    since = _seconds(logs.parse_since(a.get("since"))) or now - 3600
    until = _seconds(logs.parse_since(a.get("until"))) or now
    step = int_arg("step", 0) or None
    result = await ctx.store.read(lambda c: query_history(c, name, labels, int(since), int(until), step))
    result["series"] = [s for s in result["series"] if _in_scope(s["labels"])]
    # One series asked for by its labels: its points at the top level too.
    result["points"] = result["series"][0]["points"] if len(result["series"]) == 1 else []
    return jsonify(result)


@prometheus_bp.get("/_/metrics")
@prometheus_bp.get("/metrics")  # tenement's path; without a token when public_metrics = true
async def prometheus() -> Response:
    from prometheus_client import CollectorRegistry, generate_latest

    require_unscoped()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(context()))
    return Response(
        generate_latest(registry), 200, {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}
    )


def parse_labels(raw: str | None) -> dict[str, str] | None:
    """Labels as JSON ({"instance": "notes:a"}) or as k=v,k=v."""
    if not raw:
        return None
    if raw.lstrip().startswith("{"):
        try:
            labels = json.loads(raw)
        except ValueError:
            labels = None
        if not isinstance(labels, dict):
            raise BadRequest("labels must be a JSON object or k=v,k=v")
        return {str(k): str(v) for k, v in labels.items()}
    out = {}
    for part in raw.split(","):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise BadRequest("labels must be a JSON object or k=v,k=v")
        out[key.strip()] = value.strip()
    return out


def _seconds(value: float | None) -> float | None:
    # Browsers count in milliseconds: a time past the year 5000 in seconds is one of those.
    if value is not None and value > 1e11:
        return value / 1000
    return value


class _Collector:
    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        ctx = self.ctx
        names = ["target", "method", "status", "route"]
        total = CounterMetricFamily("http_requests", "Requests through the edge", labels=names)
        duration = HistogramMetricFamily(
            "http_request_duration_ms", "Request duration in milliseconds", labels=names
        )
        errors = CounterMetricFamily("http_errors", "Requests answered 5xx", labels=["target"])
        error_counts: dict[str, int] = {}
        for key, n in ctx.requests.totals.items():
            total.add_metric(list(key), n)
            hist = ctx.requests.histograms[key]
            cumulative = hist.cumulative(PROM_BUCKETS_MS)
            buckets = [(str(b), c) for b, c in zip(PROM_BUCKETS_MS, cumulative, strict=True)]
            buckets.append(("+Inf", hist.count))
            duration.add_metric(list(key), buckets, hist.sum)
            if key[2] == "5xx":
                error_counts[key[0]] = error_counts.get(key[0], 0) + n
        for target, n in error_counts.items():
            errors.add_metric([target], n)
        yield total
        yield duration
        yield errors

        state = GaugeMetricFamily(
            "slum_instance_up", "1 when the instance serves requests", labels=["instance", "state"]
        )
        restarts = CounterMetricFamily("slum_instance_restarts", "Restarts", labels=["instance"])
        wakes = CounterMetricFamily("slum_instance_wakes", "Wakes on request", labels=["instance"])
        ooms = CounterMetricFamily(
            "slum_instance_oom_kills",
            "Processes the kernel killed at the instance's memory limit",
            labels=["instance"],
        )
        for inst in ctx.supervisor.list():
            state.add_metric([inst.id, inst.state.value], 1 if inst.serving else 0)
            restarts.add_metric([inst.id], inst.restarts)
            wakes.add_metric([inst.id], inst.wakes)
            ooms.add_metric([inst.id], inst.oom_kills)
        yield state
        yield restarts
        yield wakes
        yield ooms
        if ctx.sampler is not None:
            gauges = {
                m: GaugeMetricFamily(
                    f"slum_instance_{m}", f"Instance {m} (process group)", labels=["instance"]
                )
                for m in ("cpu_percent", "rss_bytes", "open_fds", "threads")
            }
            for name, stats in ctx.sampler.instances.items():
                for m, family in gauges.items():
                    family.add_metric([name], float(getattr(stats, m)))
            yield from gauges.values()
            for metric, value in ctx.sampler.host.items():
                yield GaugeMetricFamily(f"slum_host_{metric}", f"Host {metric}", value=value)
        lines = CounterMetricFamily("slum_log_lines", "Log lines stored")
        lines.add_metric([], ctx.ingest.lines)
        yield lines
        dropped = CounterMetricFamily("slum_log_dropped", "Log lines dropped")
        dropped.add_metric([], ctx.hub.dropped_logs)
        yield dropped
        if ctx.edge is not None:
            # What the edge contained: each a refused request or a failed exchange, never a crash.
            edge = ctx.edge.statistics()
            upstream = CounterMetricFamily(
                "slum_edge_upstream_errors",
                "Failed upstream exchanges (malformed, cut or late answers: 502/504)",
                labels=["target"],
            )
            for target, n in sorted(edge.upstream_errors.items()):
                upstream.add_metric([target], n)
            yield upstream
            refused = CounterMetricFamily(
                "slum_edge_client_errors", "Client requests refused as malformed or over a limit"
            )
            refused.add_metric([], edge.client_errors)
            yield refused
            timeouts = CounterMetricFamily(
                "slum_edge_timeouts", "Client connections ended by a header, keep-alive or body timeout"
            )
            timeouts.add_metric([], edge.timeouts)
            yield timeouts
            yield GaugeMetricFamily(
                "slum_edge_connections", "Open client connections", value=edge.connections
            )
        registry = registry_health(ctx)
        up = GaugeMetricFamily(
            "slum_registry_up",
            "1 when the fleet registry can be read and "
            "written; 0 while routing goes on with the last known table",
            labels=["backend"],
        )
        up.add_metric([registry["backend"]], 1 if registry["up"] else 0)
        yield up
        tasks = ctx.tasks
        if tasks is not None:
            task_errors = CounterMetricFamily(
                "slum_task_errors",
                "Errors of a background task (contained: the task retried)",
                labels=["task"],
            )
            for name, n in tasks.errors().items():
                task_errors.add_metric([name], n)
            yield task_errors
