"""Host -> where the request goes. Pure: a dict lookup on tables kept in memory, no I/O.

{id}.{service}.{domain}   -> local instance service:id
{service}.{domain}        -> one of the service's instances, by weight (a name is a service
                             or a tenant, never both: services are looked up first)
{tenant}.{domain}         -> the tenant's server (this node's instance, or a remote node)
alias (custom domain)     -> its tenant, as above
{domain}, IP, localhost   -> slum's own /api and /_/ ; other paths -> [routing] default or /_/
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class Route(Protocol):
    """Where a tenant's requests go: what the edge reads of a route. The fleet's RouteRow is
    one, held as it is published (no copy per table change, no work per request)."""

    @property
    def tenant(self) -> str: ...
    @property
    def service(self) -> str | None: ...
    @property
    def server(self) -> str: ...  # "local" or the name of a remote server
    @property
    def address(self) -> str | None: ...  # remote node's base address
    @property
    def status(self) -> str: ...  # active | suspended
    @property
    def server_status(self) -> str: ...  # online | offline (the router's node checks)
    @property
    def token(self) -> str | None: ...  # the remote node's API token, proves the router to it


@dataclass(frozen=True, slots=True)
class TenantRoute:
    """A Route of the proxy's own (tests, and a table built without the fleet)."""

    tenant: str
    service: str | None
    server: str  # "local" or the name of a remote server
    address: str | None  # remote node's base address
    status: str  # active | suspended
    server_status: str = "online"  # online | offline (the router's node checks)
    token: str | None = None  # the remote node's API token, proves the router to it


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # own | instance | service | tenant | default | unknown
    value: str = ""
    tenant: Route | None = None


OWN = Target("own")
DEFAULT = Target("default")


@dataclass
class RouteTable:
    domain: str
    services: frozenset[str] = frozenset()
    tenants: Mapping[str, Route] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)
    _cache: dict[str, Target] = field(default_factory=dict)

    def replace(self, tenants: Mapping[str, Route], aliases: dict[str, str]) -> None:
        self.tenants, self.aliases = tenants, aliases
        self._cache = {}

    def resolve(self, host: str) -> Target:
        target = self._cache.get(host)
        if target is None:
            target = self._resolve(host)
            if len(self._cache) < 65536:
                self._cache[host] = target
        return target

    def _resolve(self, raw_host: str) -> Target:
        host = strip_port(raw_host).lower().rstrip(".")
        domain = self.domain
        if host == domain or host == "localhost" or is_ip(host):
            return OWN
        if host.endswith("." + domain):
            sub = host[: -len(domain) - 1]
            name, dot, service = sub.partition(".")
            if dot:
                if "." in service or not name or not service:
                    return Target("unknown", host)
                return Target("instance", f"{service}:{name}")
            if sub in self.services:
                return Target("service", sub)
            return self._tenant(sub, host)
        alias = self.aliases.get(host)
        if alias is not None:
            return self._tenant(alias, host)
        return Target("unknown", host)

    def tenant_target(self, tenant: str) -> Target:
        return self._tenant(tenant, tenant)

    def _tenant(self, tenant: str, host: str) -> Target:
        route = self.tenants.get(tenant)
        if route is None:
            return Target("unknown", host)
        return Target("tenant", tenant, route)


def strip_port(host: str) -> str:
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    name, _, port = host.rpartition(":")
    return name if name and port.isdigit() else host


def is_ip(host: str) -> bool:
    # Most hosts are names: skip the exception ipaddress raises for them (3.5 us each).
    if not host or (":" not in host and not host[-1].isdigit()):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_own_path(path: bytes) -> bool:
    return path.startswith((b"/api/", b"/_/", b"/_?", b"/api?", b"/health?", b"/metrics?")) or path in (
        b"/api",
        b"/_",
        b"/health",
        b"/metrics",
    )
