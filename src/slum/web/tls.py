"""GET /api/tls/ask?domain=NAME: Caddy's on-demand TLS asks here before it requests a
certificate, so nobody can make it request certificates for names slum does not route (each
costs an ACME order and counts against the CA's rate limits).

200 only for a name slum routes: the bare domain, `{id}.{service}.{domain}` of an instance that
exists here, `{tenant}.{domain}` of a tenant in the registry, and a tenant's alias. 404 otherwise.

Caddy calls it without a token, so it is public; but its answers tell which tenants and custom
domains exist, so it answers only to a request that came from loopback or `trusted_proxies` (where
Caddy runs: beside slum) and through nothing else, or on the control socket; 403 to everyone else.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from quart import Response, jsonify, request
from quart_trio import QuartTrio

from slum.errors import BadRequest, NotFound
from slum.web.auth import TRUSTED_SCOPE_KEY
from slum.web.context import WebContext

ASK_PATH = "/api/tls/ask"
_HOSTNAME = re.compile(
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*"
    r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
)


def _trusted(ctx: WebContext) -> bool:
    """Asked by whoever runs beside slum: every hop the request came through (the edge appends
    the peer it saw to X-Forwarded-For) is loopback or a trusted proxy. Through Caddy, a request
    from the internet carries the client's address too, and is refused."""
    if request.scope.get(TRUSTED_SCOPE_KEY):
        return True  # came over the control socket (mode 0600): trust from the socket, not a header
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    nets = []
    for net in getattr(ctx.config.settings, "trusted_proxies", ()) or ():
        try:
            nets.append(ipaddress.ip_network(str(net), strict=False))
        except ValueError:
            continue
    for hop in hops:
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return False
        if not address.is_loopback and not any(address in net for net in nets):
            return False
    return bool(hops)


async def routed(ctx: WebContext, name: str) -> str | None:
    """What `name` routes to (a word for the answer), or None."""
    domain = ctx.domain
    if name == domain:
        return "domain"
    if name.endswith("." + domain):
        sub = name[: -len(domain) - 1]
        instance, dot, service = sub.partition(".")
        if dot:
            return "instance" if f"{service}:{instance}" in ctx.supervisor.instances else None
        try:
            await ctx.fleet.tenant(sub)
        except NotFound:
            return None
        return "tenant"
    # Caddy asks once per name it has no certificate for: a scan of the tenants is cheap enough.
    return "alias" if any(name in t.aliases for t in await ctx.fleet.tenants()) else None


def register(app: QuartTrio, ctx: WebContext) -> None:
    @app.get(ASK_PATH)
    async def tls_ask() -> tuple[Response, int]:
        if not _trusted(ctx):
            return jsonify({"error": "ask is answered to loopback and trusted_proxies only"}), 403
        raw: Any = request.args.get("domain", "")
        name = str(raw).strip().lower().rstrip(".")
        if not _HOSTNAME.fullmatch(name):
            raise BadRequest("domain must be a host name, like alice.example.com")
        kind = await routed(ctx, name)
        if kind is None:
            return jsonify({"domain": name, "routed": False}), 404
        return jsonify({"domain": name, "routed": True, "kind": kind}), 200
