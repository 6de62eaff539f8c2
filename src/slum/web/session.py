"""Dashboard login: the token once, then an HttpOnly session cookie (so EventSource works without
a token in a URL)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from quart import Blueprint, Response, jsonify, request

from slum.errors import BadRequest
from slum.web import auth
from slum.web.auth import SESSION_TTL_S
from slum.web.context import context
from slum.web.routes import _opt_str, body, endpoint

bp = Blueprint("session", __name__)

LOGIN_PATHS = ("/_/api/login", "/_/api/logout")


@dataclass
class Login:
    token: str


class Ok(TypedDict):
    ok: bool


class SessionState(TypedDict):
    authenticated: bool
    tenant: str | None  # the tenant a scoped token is limited to; null for full access


@endpoint(bp, "POST", "/login", body=Login, response=Ok, public=True)
async def login() -> Response:
    """Exchange the token for a session cookie."""
    ctx = context()
    data = await body()
    token = _opt_str(data, "token")
    if not token:
        raise BadRequest("token is required")
    identity = await ctx.auth.verify_token(token.strip(), ctx.auth.proxies.client(request.headers))
    if identity.token_id is None:
        raise BadRequest("no session for the local operator: use the control socket")
    response = jsonify({"ok": True})
    https = ctx.auth.proxies.https(request.headers)
    response.set_cookie(
        auth.SECURE_SESSION_COOKIE if https else auth.SESSION_COOKIE,
        await ctx.auth.new_session(identity.token_id),
        max_age=SESSION_TTL_S,
        httponly=True,
        samesite="Strict",
        path="/",
        secure=https,
    )
    return response


@endpoint(bp, "POST", "/logout", response=Ok, public=True)
async def logout() -> Response:
    """End this session."""
    ctx = context()
    await ctx.auth.end_session(auth.session_id())
    response = jsonify({"ok": True})
    for name in auth.SESSION_COOKIES:
        if name in request.cookies:
            response.delete_cookie(
                name, path="/", secure=name.startswith("__Host-"), httponly=True, samesite="Strict"
            )
    return response


@endpoint(bp, "GET", "/session", response=SessionState)
async def session() -> Response:
    """Whether the request is authenticated (401 otherwise), and the tenant its token is
    limited to."""
    return jsonify({"authenticated": True, "tenant": auth.scope_tenant()})
