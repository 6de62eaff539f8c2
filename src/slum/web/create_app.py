"""The Quart-Trio app: auth in front, JSON errors, the API, the SSE streams and the SPA."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from pathlib import Path
from typing import Any

from quart import Response, g, jsonify, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from slum.errors import SlumError
from slum.web import (
    alerts,
    auth,
    compress,
    dashboard,
    deploys,
    fleet,
    fleet_tenants,
    fleet_view,
    health,
    instances,
    logs,
    metrics,
    openapi,
    ops,
    overview,
    overview_summary,
    session,
    tls,
    tokens,
)
from slum.web.context import WebContext, install

log = logging.getLogger("slum.web")
PUBLIC = ("/api/health", tls.ASK_PATH)
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def create_app(ctx: WebContext) -> QuartTrio:
    app = QuartTrio("slum", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = True

    @app.before_request
    async def authenticate() -> None:
        path = request.path
        g.scope = None
        if path in PUBLIC or not _protected(path):
            return
        if path == "/metrics" and ctx.config.settings.public_metrics:
            return
        if path in session.LOGIN_PATHS:
            if not request.scope.get(auth.TRUSTED_SCOPE_KEY):
                # Logging in from a sibling subdomain's page would plant the attacker's session.
                auth.check_same_origin(required=False)
            return
        await auth.authenticate(ctx.auth)

    @app.after_request
    async def security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Content-Security-Policy", dashboard_csp())
        return response

    @app.errorhandler(SlumError)
    async def slum_error(e: SlumError) -> tuple[Response, int]:
        response = jsonify({"error": e.message})
        retry_after = getattr(e, "retry_after", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response, e.status

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
    for module in (
        health,
        fleet,
        fleet_tenants,
        fleet_view,
        instances,
        logs,
        metrics,
        overview,
        session,
        deploys,
        openapi,
    ):
        app.register_blueprint(module.bp)
    app.register_blueprint(metrics.prometheus_bp)
    # Dashboard-only paths, outside the route table.
    alerts.register(app, ctx)
    tls.register(app, ctx)
    ops.register(app, ctx)
    tokens.register(app, ctx)
    overview_summary.register(app, ctx)
    compress.register(app)

    @app.get("/_")
    @app.get("/_/")
    @app.get("/_/<path:path>")
    async def spa(path: str = "") -> Any:
        if path.startswith("api/") or path == "api":
            return jsonify({"error": f"no API endpoint /_/{path}"}), 404
        file, immutable = dashboard.resolve(path)
        response = await compress.send_static(file)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable" if immutable else "no-cache"
        return response

    return app


def dashboard_csp() -> str:
    """The SPA's policy: its scripts from /_/ plus the inline bootstrap script of index.html
    (allowed by its hash, not by 'unsafe-inline'); never framed."""
    hashes = " ".join(f"'sha256-{h}'" for h in _inline_script_hashes(dashboard.root() / "index.html"))
    return (
        "default-src 'self'; script-src 'self' " + hashes + "; style-src 'self' "
        "'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


_hash_cache: dict[tuple[str, float], list[str]] = {}


def _inline_script_hashes(index: Path) -> list[str]:
    try:
        key = (str(index), index.stat().st_mtime)
    except OSError:
        return []
    if key not in _hash_cache:
        text = index.read_text(encoding="utf-8", errors="replace")
        _hash_cache.clear()
        _hash_cache[key] = [
            base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            for body in INLINE_SCRIPT.findall(text)
        ]
    return _hash_cache[key]


def _protected(path: str) -> bool:
    return path.startswith(("/api/", "/_/api/")) or path in ("/_/metrics", "/metrics")
