"""Health: public, for load balancers and uptime checks."""

from __future__ import annotations

import time
from typing import Any, NotRequired, TypedDict

from quart import Blueprint, Response, jsonify

from slum import __version__
from slum.web.context import WebContext, context
from slum.web.routes import API, ROOT, endpoint

bp = Blueprint("health", __name__)


class Health(TypedDict):
    status: str
    version: str
    uptime_secs: float
    instances: int
    registry: NotRequired[dict[str, Any]]  # a shared registry (etcd): reachable or not, and why


@endpoint(bp, "GET", "/health", prefixes=(ROOT, API), response=Health, public=True)
async def health() -> Response:
    """Whether slum is up (no token needed)."""
    ctx = context()
    data: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "uptime_secs": round(time.time() - ctx.started_at, 1),
        "instances": len(ctx.supervisor.instances),
    }
    if ctx.registry_health is not None:
        # Still 200: this router routes with its last known table. A load balancer keeps it;
        # an operator (and the metric slum_registry_up) sees that writes cannot be made.
        state = registry_health(ctx)
        data["registry"] = {"backend": state["backend"], "up": state["up"], "reason": state["reason"]}
        if not state["up"]:
            data["status"] = "degraded"
    return jsonify(data)


def registry_health(ctx: WebContext) -> dict[str, Any]:
    """The fleet registry's state: SQLite is this process's own file (up while slum runs);
    a shared one (etcd) says whether it is reachable, and why not."""
    health = ctx.registry_health
    return health() if health is not None else {"backend": "sqlite", "up": True, "reason": None}
