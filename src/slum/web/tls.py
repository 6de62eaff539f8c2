"""GET /api/tls/ask?domain=NAME: Caddy's on-demand TLS asks here before it requests a
certificate, so nobody can make it request certificates for names slum does not route (each
costs an ACME order and counts against the CA's rate limits).

200 only for a name slum routes: the bare domain, `{id}.{service}.{domain}` of an instance that
exists here, `{tenant}.{domain}` of a tenant in the registry, and a tenant's alias. 404 otherwise.

Caddy calls it without a token, so it is public; but its answers tell which tenants and custom
domains exist, so it answers only to the loopback address, to `trusted_proxies` and on the control
socket (where Caddy runs: beside slum), and says 403 to everyone else.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from quart import Response, jsonify, request
from quart_trio import QuartTrio

from slum.errors import BadRequest
from slum.fleet import registry
from slum.web.auth import client_address
from slum.web.context import WebContext

ASK_PATH = "/api/tls/ask"
_HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*"
                       r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def _trusted(ctx: WebContext, peer: str) -> bool:
    if peer == "local":
        return True  # the control socket (mode 0600): the operator, or Caddy told to use it
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if address.is_loopback:
        return True
    for net in getattr(ctx.config.settings, "trusted_proxies", ()) or ():
        try:
            if address in ipaddress.ip_network(str(net), strict=False):
                return True
        except ValueError:
            continue
    return False


async def routed(ctx: WebContext, name: str) -> str | None:
    """What `name` routes to (a word for the answer), or None."""
    domain = ctx.domain
    if name == domain:
        return "domain"
    tenants, aliases = await ctx.store.read(registry.route_rows)
    if name.endswith("." + domain):
        sub = name[: -len(domain) - 1]
        instance, dot, service = sub.partition(".")
        if dot:
            return "instance" if f"{service}:{instance}" in ctx.supervisor.instances else None
        return "tenant" if any(row[0] == sub for row in tenants) else None
    return "alias" if name in aliases else None


def register(app: QuartTrio, ctx: WebContext) -> None:
    @app.get(ASK_PATH)
    async def tls_ask() -> tuple[Response, int]:
        if not _trusted(ctx, client_address(request.headers)):
            return jsonify({"error": "ask is answered to loopback and trusted_proxies only"}), 403
        raw: Any = request.args.get("domain", "")
        name = str(raw).strip().lower().rstrip(".")
        if not _HOSTNAME.fullmatch(name):
            raise BadRequest("domain must be a host name, like alice.example.com")
        kind = await routed(ctx, name)
        if kind is None:
            return jsonify({"domain": name, "routed": False}), 404
        return jsonify({"domain": name, "routed": True, "kind": kind}), 200
