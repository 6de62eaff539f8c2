"""Token management over the API: list, create and revoke (what `slum token-*` uses while a
server runs). Not for a tenant-scoped token: a token cannot mint or see other tokens."""

from __future__ import annotations

from typing import Any

from quart import Response, jsonify, request
from quart_trio import QuartTrio

from slum.config import check_label
from slum.errors import BadRequest
from slum.store import tokens
from slum.web.auth import require_unscoped
from slum.web.context import WebContext

MAX_DESCRIPTION = 200


def register(app: QuartTrio, ctx: WebContext) -> None:
    @app.get("/_/api/tokens")
    async def token_list() -> Response:
        require_unscoped()
        return jsonify(await ctx.store.read(tokens.listing))

    @app.post("/_/api/tokens")
    async def token_create() -> tuple[Response, int]:
        require_unscoped()
        data: Any = await request.get_json(silent=True)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise BadRequest("expected a JSON object in the request body")
        description, tenant = data.get("description"), data.get("tenant")
        description, tenant = check_token_fields(description, tenant)
        public_id, token = await ctx.store.write(lambda c: tokens.create(c, description, tenant))
        return jsonify({"id": public_id, "token": token, "description": description, "tenant": tenant}), 201

    @app.delete("/_/api/tokens/<public_id>")
    async def token_revoke(public_id: str) -> Response:
        require_unscoped()
        result = await ctx.store.write(lambda c: tokens.revoke(c, public_id))
        ctx.auth.forget()
        return jsonify(result)


def check_token_fields(description: Any, tenant: Any) -> tuple[str | None, str | None]:
    if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION):
        raise BadRequest(f"description must be a string of at most {MAX_DESCRIPTION} characters")
    if tenant is not None:
        if not isinstance(tenant, str):
            raise BadRequest("tenant must be a string")
        check_label(tenant, "tenant")
    return description or None, tenant
