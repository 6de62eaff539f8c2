"""Dashboard login: the token once, then an HttpOnly session cookie (so EventSource works without
a token in a URL)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from quart import Blueprint, Response, jsonify, request

from slum.errors import BadRequest
from slum.web.auth import SESSION_COOKIE, SESSION_TTL_S, client_address
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


@endpoint(bp, "POST", "/login", body=Login, response=Ok, public=True)
async def login() -> Response:
    """Exchange the token for a session cookie."""
    ctx = context()
    data = await body()
    token = _opt_str(data, "token")
    if not token:
        raise BadRequest("token is required")
    token_id = await ctx.auth.verify_token(token.strip(),
                                           client_address(request.headers))
    response = jsonify({"ok": True})
    response.set_cookie(SESSION_COOKIE, ctx.auth.new_session(token_id),
                        max_age=SESSION_TTL_S, httponly=True, samesite="Strict", path="/")
    return response


@endpoint(bp, "POST", "/logout", response=Ok, public=True)
async def logout() -> Response:
    """End this session."""
    ctx = context()
    ctx.auth.end_session(request.cookies.get(SESSION_COOKIE))
    response = jsonify({"ok": True})
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@endpoint(bp, "GET", "/session", response=SessionState)
async def session() -> Response:
    """Whether the request is authenticated (401 otherwise)."""
    return jsonify({"authenticated": True})
