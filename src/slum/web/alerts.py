"""GET /_/api/alerts: what the alert engine saw lately (newest first), what is still open, and
how delivery went. Token required, like the rest of /_/api."""

from __future__ import annotations

from dataclasses import asdict

from quart import Response, jsonify, request
from quart_trio import QuartTrio

from slum.errors import BadRequest
from slum.web.context import WebContext


def register(app: QuartTrio, ctx: WebContext) -> None:
    @app.get("/_/api/alerts")
    async def alerts() -> Response:
        engine = ctx.alerts
        raw = request.args.get("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise BadRequest("limit must be an integer from 1 to 1000")
        if engine is None:
            return jsonify({"alerts": [], "open": [], "webhooks": 0, "statistics": None})
        recent = list(engine.recent)[::-1][: int(raw)]
        return jsonify(
            {
                "alerts": [a.to_dict() for a in recent],
                "open": [e.alert.to_dict() for e in engine.episodes.values()],
                "webhooks": len(ctx.config.alerts),
                "statistics": asdict(engine.statistics()),
            }
        )
