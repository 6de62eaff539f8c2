"""Where a new tenant goes. Pure functions of the servers as they are at the moment of the write:
the registry backend calls them inside its atomic step, so two concurrent adds never both take
a server's last free slot."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from slum.errors import Conflict, NotFound
from slum.fleet.registry import status_of
from slum.store.registry import Server

DEFAULT_CAPACITY = 100  # what a server without a stated capacity counts as, for the load ratio

Place = Callable[[Sequence[Server]], Server]


def least_loaded(servers: Sequence[Server]) -> Server:
    """The online server with the most room: lowest tenants/capacity, full servers skipped."""
    best: tuple[float, Server] | None = None
    for server in servers:
        if status_of(server)[0] != "online":
            continue
        capacity = DEFAULT_CAPACITY if server.capacity is None else server.capacity
        if server.capacity is not None and server.tenant_count >= capacity:
            continue
        load = server.tenant_count / capacity
        if best is None or load < best[0]:
            best = (load, server)
    if best is None:
        raise Conflict("no online server has room for another tenant")
    return best[1]


def named(ref: str) -> Place:
    """The server named (or with the id) ref, if it is online."""

    def place(servers: Sequence[Server]) -> Server:
        for server in servers:
            if ref in (server.id, server.name):
                check_online(server)
                return server
        raise NotFound(f"no server {ref!r}")

    return place


def check_online(server: Server) -> None:
    status = status_of(server)[0]
    if status != "online":
        raise Conflict(f"server {server.name!r} is {status}: choose another or wait")
