"""The Quart-Trio app: auth in front, JSON errors, the API, the SSE streams and the SPA."""

from __future__ import annotations

import logging
from typing import Any

from quart import Response, jsonify, request, send_file
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from slum.errors import SlumError, Unauthorized
from slum.web import (
    dashboard,
    fleet,
    health,
    instances,
    logs,
    metrics,
    openapi,
    overview,
    session,
)
from slum.web.auth import SESSION_COOKIE, bearer, client_address
from slum.web.context import WebContext, install

log = logging.getLogger("slum.web")
PUBLIC = ("/api/health",)


def create_app(ctx: WebContext) -> QuartTrio:
    app = QuartTrio("slum", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True

    @app.before_request
    async def authenticate() -> None:
        path = request.path
        if path in PUBLIC or not _protected(path) or path in session.LOGIN_PATHS:
            return
        if path == "/metrics" and ctx.config.settings.public_metrics:
            return
        if "x-slum-edge" not in request.headers:
            return  # came over the control socket (mode 0600): the local operator
        token = bearer(request.headers.get("authorization"))
        if token is not None:
            await ctx.auth.verify_token(token, client_address(request.headers))
            return
        sid = request.cookies.get(SESSION_COOKIE)
        if sid:
            await ctx.auth.verify_session(sid)
            return
        await ctx.auth.require_tokens()
        raise Unauthorized("authentication required: Authorization: Bearer slum_...")

    @app.errorhandler(SlumError)
    async def slum_error(e: SlumError) -> tuple[Response, int]:
        return jsonify({"error": e.message}), e.status

    @app.errorhandler(HTTPException)
    async def http_error(e: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": e.description or e.name}), e.code or 500

    @app.errorhandler(Exception)
    async def internal_error(e: Exception) -> tuple[Response, int]:
        log.exception("internal error on %s", request.path)
        return jsonify({"error": "internal error (see slum's log)"}), 500

    @app.after_request
    async def drain_body(response: Response) -> Response:
        # An answer given before the body was read (415, 401, 404) leaves the body in the
        # connection the edge pools; read it (at most MAX_CONTENT_LENGTH) so the next request
        # on that connection is not stuck behind it.
        try:
            await request.get_data(cache=False)
        except Exception:
            pass
        return response

    install(app, ctx)
    for module in (health, fleet, instances, logs, metrics, overview, session, openapi):
        app.register_blueprint(module.bp)
    app.register_blueprint(metrics.prometheus_bp)

    @app.get("/_")
    @app.get("/_/")
    @app.get("/_/<path:path>")
    async def spa(path: str = "") -> Any:
        if path.startswith("api/") or path == "api":
            return jsonify({"error": f"no API endpoint /_/{path}"}), 404
        file, immutable = dashboard.resolve(path)
        response = await send_file(file)
        response.headers["Cache-Control"] = ("public, max-age=31536000, immutable" if immutable
                                             else "no-cache")
        return response

    return app


def _protected(path: str) -> bool:
    return path.startswith(("/api/", "/_/api/")) or path in ("/_/metrics", "/metrics")
