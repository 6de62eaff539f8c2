"""Health: public, for load balancers and uptime checks."""

from __future__ import annotations

import time
from typing import TypedDict

from quart import Blueprint, Response, jsonify

from slum import __version__
from slum.web.context import context
from slum.web.routes import API, ROOT, endpoint

bp = Blueprint("health", __name__)


class Health(TypedDict):
    status: str
    version: str
    uptime_secs: float
    instances: int


@endpoint(bp, "GET", "/health", prefixes=(ROOT, API), response=Health, public=True)
async def health() -> Response:
    """Whether slum is up (no token needed)."""
    ctx = context()
    return jsonify({"status": "ok", "version": __version__,
                    "uptime_secs": round(time.time() - ctx.started_at, 1),
                    "instances": len(ctx.supervisor.instances)})
