"""The fleet registry, backend-neutral: what a registry backend must do (`Registry`), and the
validation of what goes into one (node addresses, alias domains). The rows are the frozen
dataclasses of `slum.store.registry`; SQLite is its backend there, etcd can be another.

Only `slum.fleet.service.FleetService` writes through a Registry: it validates the input,
places tenants and calls the nodes; a backend stores atomically and tells about changes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from slum.errors import BadRequest
from slum.store.registry import LOCAL, RouteSnapshot, Server, Tenant

__all__ = ["INVALID", "LOCAL", "Registry", "RouteSnapshot", "Server", "Tenant"]

INVALID = "invalid"  # the status shown for a stored server whose address does not parse


class Registry(Protocol):
    """Servers, tenants and aliases, stored where every router of the fleet reads them.

    Guarantees every backend gives:
    - Each write is atomic: its checks and its change happen in one step (a transaction, or a
      compare-and-swap that is retried or refused when what it read has changed).
    - Reads after a write of the same process see that write.
    - Errors are `slum.errors` types the API maps to 4xx: `NotFound` (unknown server, tenant or
      alias), `Conflict` (a name or domain taken, a server with tenants, a lost race),
      `BadRequest` (removing the local server). A backend that cannot write now (locked, full,
      read-only, no quorum) raises `slum.errors.Unavailable` (503); a read that cannot be
      served raises it too. Nothing else escapes.
    - Input is already validated (FleetService does it): addresses normalized, names labels.
    """

    async def servers(self) -> Sequence[Server]:
        """Every server, `local` included, oldest first, with its tenant count."""
        ...

    async def server(self, ref: str) -> Server:
        """One server by id or name; NotFound."""
        ...

    async def ensure_local(self, capacity: int | None = None, *, set_capacity: bool = False) -> Server:
        """The server named `local` exists (created once, whoever gets there first); with
        set_capacity, its capacity is set (0: no tenants are placed on this node)."""
        ...

    async def add_server(
        self, name: str, address: str, token: str | None = None, capacity: int | None = None
    ) -> Server:
        """A new server, status online; Conflict if the name is taken (also by a concurrent
        add: exactly one of two adds of one name succeeds)."""
        ...

    async def remove_server(self, ref: str) -> Server:
        """Removed and returned; BadRequest for `local`, Conflict while it has tenants (checked
        in the same atomic step: a tenant placed concurrently is never orphaned)."""
        ...

    async def set_server_status(self, server_id: str, status: str) -> None:
        """online | offline, as the router's node checks see it; an unknown id is ignored."""
        ...

    async def tenants(self) -> Sequence[Tenant]:
        """Every tenant, oldest first, with its server's name and its aliases."""
        ...

    async def tenant(self, tenant_id: str) -> Tenant:
        """One tenant with its aliases; NotFound."""
        ...

    async def add_tenant(
        self,
        tenant_id: str,
        place: Callable[[Sequence[Server]], Server],
        service: str | None = None,
        config: str | None = None,
    ) -> Tenant:
        """Create the tenant on the server `place` picks from the servers as they are at the
        moment of the write (place may raise Conflict/NotFound; it may be called more than
        once, when a compare-and-swap is retried). The same tenant is never placed twice:
        of concurrent adds of one id exactly one succeeds, the others get Conflict; and two
        adds never both take a server's last free slot."""
        ...

    async def move_tenant(self, tenant_id: str, server_id: str, *, from_server_id: str) -> Tenant:
        """Point the tenant at server_id, only if it is still on from_server_id (else
        Conflict: someone moved it meanwhile); NotFound for an unknown tenant or server."""
        ...

    async def remove_tenant(self, tenant_id: str) -> Tenant:
        """Remove the tenant and its aliases in one step; returns it as it was; NotFound."""
        ...

    async def add_alias(self, domain: str, tenant_id: str) -> Tenant:
        """Route domain to the tenant; returns the tenant. NotFound for an unknown tenant,
        Conflict when the domain is another tenant's alias; adding it again is a no-op."""
        ...

    async def remove_alias(self, domain: str, tenant_id: str | None = None) -> Tenant:
        """Stop routing domain; returns its tenant. NotFound if it is no alias (of tenant_id,
        when given)."""
        ...

    async def snapshot(self) -> RouteSnapshot:
        """Everything routing needs, read at one moment, with a version that grows."""
        ...

    def changes(self) -> AsyncIterator[RouteSnapshot]:
        """The current snapshot at once, then a newer one after every change, by any writer
        in any process (an etcd watch; SQLite's version row). Intermediate states may be
        skipped, an older version never follows a newer one."""
        ...


@dataclass(frozen=True)
class NodeAddress:
    scheme: str
    host: str  # IPv6 without its brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# Routed requests reach a node over the edge's plain TCP connection, with the node's token in
# X-Slum-Router: an https address would promise TLS the routed hop does not give.
HTTPS_REFUSED = (
    "https node addresses are not supported yet: routed requests (and the node's "
    "token) would still travel in clear; use http:// over a private network or "
    "a tunnel (see specs/fleet.md)"
)


def parse_address(address: str) -> NodeAddress:
    """A node address, parsed fully: [http://]host[:port], where host is a DNS name, an IPv4
    address or an IPv6 address in brackets, and port is 1-65535 (80 when left out)."""
    raw = address
    address = address.strip().rstrip("/")

    def bad(why: str) -> BadRequest:
        return BadRequest(f"invalid server address {raw!r}: {why}")

    if not address:
        raise BadRequest("server address is empty")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in address):
        raise bad("it contains spaces or control characters")
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "http", address
    scheme = scheme.lower()
    if scheme == "https":
        raise bad(HTTPS_REFUSED)
    if scheme != "http":
        raise bad(f"scheme {scheme!r}: expected http://host:port")
    if any(ch in rest for ch in "/?#@\\"):
        raise bad("expected host:port, without a path, query or user")
    if rest.startswith("["):
        inner, closed, after = rest[1:].partition("]")
        if not closed:
            raise bad("an IPv6 address needs its closing bracket: [::1]:8080")
        try:
            host = str(ipaddress.IPv6Address(inner))
        except ValueError:
            raise bad(f"{inner!r} is not an IPv6 address") from None
        if after and not after.startswith(":"):
            raise bad("expected [IPv6]:port")
        port_text = after[1:] if after else None
    else:
        host, colon, port_text_ = rest.rpartition(":") if ":" in rest else (rest, "", "")
        port_text = port_text_ if colon else None
        if ":" in host:
            raise bad("an IPv6 address goes in brackets: [::1]:8080")
        host = host.lower()
        if not host:
            raise bad("the host is missing")
        if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
            raise bad(f"{host!r} is not a host name or IPv4 address")
    if port_text is None:
        port = 80
    elif not port_text.isascii() or not port_text.isdigit():
        raise bad(f"port {port_text!r} is not a number")
    else:
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise bad(f"port {port} is out of range (1-65535)")
    return NodeAddress(scheme, host, port)


def address_error(address: str | None) -> str | None:
    """Why a stored address cannot be used, or None when it can (the local node's is 'local')."""
    if address == LOCAL:
        return None
    try:
        parse_address(address or "")
    except BadRequest as e:
        return e.message
    return None


def normalize_address(address: object) -> str:
    if not isinstance(address, str):
        raise BadRequest("server address must be a string")
    return str(parse_address(address))


def default_server_name(address: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", address.partition("://")[2].lower()).strip("-")[:63]


def domain_key(domain: str) -> str:
    """How a domain is stored and looked up: lower-case, without a final dot."""
    return domain.strip().lower().rstrip(".")


def parse_domain(domain: object) -> str:
    """An alias domain: a DNS name of at least two labels, lower-cased, without a final dot."""
    if not isinstance(domain, str):
        raise BadRequest("domain must be a string")
    name = domain.strip().lower().rstrip(".")
    if (
        not name
        or len(name) > 253
        or "." not in name
        or not all(_LABEL.match(label) for label in name.split("."))
    ):
        raise BadRequest(f"invalid domain {domain!r}: expected a DNS name like shop.example.com")
    return name


def status_of(server: Server) -> tuple[str, str | None]:
    """The status to show and route by, and why it is `invalid` (a row written before
    addresses were parsed fully, or by hand, is shown but never used)."""
    problem = None if server.local else address_error(server.address)
    return (INVALID, problem) if problem is not None else (server.status, None)


# --- the HTTP/CLI edge: rows as the JSON shapes of the API ---
def server_dict(server: Server) -> dict[str, Any]:
    status, problem = status_of(server)
    out: dict[str, Any] = {
        "id": server.id,
        "name": server.name,
        "address": server.address,
        "created_at": server.created_at,
        "status": status,
        "capacity": server.capacity,
        "tenant_count": server.tenant_count,
        "has_token": server.token is not None,
    }
    if problem is not None:
        out["reason"] = problem
    return out


def tenant_dict(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": tenant.id,
        "server_id": tenant.server_id,
        "server": tenant.server,
        "service": tenant.service,
        "config": tenant.config,
        "status": tenant.status,
        "created_at": tenant.created_at,
        "aliases": list(tenant.aliases),
    }


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One tenant as the edge routes it. It has the fields of proxy/routing.py's `Route`, so the
    edge's table holds these rows as they are (fleet and proxy do not import each other)."""

    tenant: str
    service: str | None  # None: the config's default service, filled in by `serving`
    server: str  # "local" or the remote server's name
    address: str | None  # the remote node's base address; None when local
    status: str  # active | suspended
    server_status: str  # online | offline | invalid (never routed to: the edge answers 502)
    token: str | None = field(default=None, repr=False)  # proves the router to that node

    def serving(self, default_service: str | None) -> RouteRow:
        """This row with the default service when it names none (once per publish, not per
        request)."""
        if self.service is not None or default_service is None:
            return self
        return replace(self, service=default_service)


def snapshot_rows(snap: RouteSnapshot) -> tuple[list[RouteRow], dict[str, str]]:
    """The routes of a snapshot, one per tenant, and its aliases (domain -> tenant)."""
    servers = {s.id: s for s in snap.servers}
    out: list[RouteRow] = []
    for t in snap.tenants:
        server = servers.get(t.server_id)
        if server is None:
            out.append(RouteRow(t.id, t.service, t.server or "?", None, t.status, "offline"))
            continue
        out.append(
            RouteRow(
                tenant=t.id,
                service=t.service,
                server=LOCAL if server.local else server.name,
                address=None if server.local else server.address,
                status=t.status,
                server_status=status_of(server)[0] or "offline",
                token=server.token,
            )
        )
    return out, {a.domain: a.tenant_id for a in snap.aliases}
