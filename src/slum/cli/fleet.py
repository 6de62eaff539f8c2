"""The fleet registry's commands: server-add/list/remove, tenant-add/list/move/remove,
alias-add/remove. Each goes through the slum serving `--database` (its control socket) when one
runs, so the server's FleetService does the operation (and stops a removed tenant's instance);
only when none runs does the command open the database file itself, with a FleetService of its
own. Either way it is the same code path, and the output is the same."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from cyclopts import Parameter

from slum.cli.commands import DEFAULT_DATABASE, Database, Json, app
from slum.cli.output import print_json, table

if TYPE_CHECKING:
    from slum.client import Client
    from slum.fleet.service import FleetService

T = TypeVar("T")


def _running(database: str) -> Client | None:
    """A client of the slum serving this database, or None when none answers on its socket
    (a socket file left by a slum that was killed counts as none)."""
    import socket

    from slum.client import Client, control_socket_path

    path = control_socket_path(database)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return None
    finally:
        probe.close()
    return Client(f"unix:{path}")


def _fleet(database: str, api: Callable[[Client], T], local: Callable[[FleetService], Awaitable[T]]) -> T:
    client = _running(database)
    if client is not None:
        return api(client)
    return _on_database(database, local)


def _on_database(database: str, op: Callable[[FleetService], Awaitable[T]]) -> T:
    import trio

    from slum.fleet.service import FleetService
    from slum.store.db import Store
    from slum.store.registry import SqliteRegistry

    async def main() -> T:
        store = Store(database)
        try:
            return await op(FleetService(SqliteRegistry(store), services=_config_services))
        finally:
            store.close()

    return trio.run(main)


def _config_services() -> list[str]:
    """The services of the tenement.toml found here: no tenant may take one of their names."""
    from slum import config as cfg
    from slum.errors import ConfigError

    found = cfg.find_config()
    try:
        return list(cfg.load(found).services) if found is not None else []
    except ConfigError:
        return []  # a broken config is `serve`'s to report; it routes nothing meanwhile


async def _servers_dicts(service: FleetService) -> list[dict[str, Any]]:
    from slum.fleet.registry import server_dict

    return [server_dict(s) for s in await service.servers()]


def _server_rows(servers: list[dict[str, Any]]) -> str:
    return table(
        ["NAME", "ADDRESS", "STATUS", "TENANTS", "CAPACITY", "ID"],
        [(s["name"], s["address"], s["status"], s["tenant_count"], s["capacity"], s["id"]) for s in servers],
    )


@app.command(name="server-add")
def server_add(
    address: str,
    *,
    name: Annotated[str | None, Parameter(name=["--name", "-n"])] = None,
    token: Annotated[str | None, Parameter(name=["--token"])] = None,
    capacity: int | None = None,
    database: Database = DEFAULT_DATABASE,
    json: Json = False,
) -> int:
    """Add a server (a node running `slum serve`) to the fleet."""
    from slum.fleet.registry import server_dict

    async def local(f: FleetService) -> dict[str, Any]:
        return server_dict(await f.add_server(address, name, token, capacity))

    s = _fleet(database, lambda c: c.add_server(address, name, token, capacity), local)
    print_json(s) if json else print(f"added server {s['name']} ({s['address']})")
    return 0


@app.command(name="server-list")
def server_list(*, database: Database = DEFAULT_DATABASE, json: Json = False) -> int:
    """List servers."""
    servers = _fleet(database, lambda c: c.servers(), _servers_dicts)
    print_json(servers) if json else print(_server_rows(servers))
    return 0


@app.command(name="server-remove")
def server_remove(server: str, *, database: Database = DEFAULT_DATABASE) -> int:
    """Remove a server (it must have no tenants)."""
    from slum.fleet.registry import server_dict

    async def local(f: FleetService) -> dict[str, Any]:
        return server_dict(await f.remove_server(server))

    s = _fleet(database, lambda c: c.remove_server(server), local)
    print(f"removed server {s['name']}")
    return 0


@app.command(name="tenant-add")
def tenant_add(
    id: str,
    *,
    server: Annotated[str | None, Parameter(name=["--server", "-s"])] = None,
    service: str | None = None,
    database: Database = DEFAULT_DATABASE,
    json: Json = False,
) -> int:
    """Add a tenant, placed on the server with the most room (or -s SERVER)."""
    from slum.fleet.registry import tenant_dict

    async def local(f: FleetService) -> dict[str, Any]:
        return tenant_dict(await f.add_tenant(id, server, service))

    t = _fleet(database, lambda c: c.add_tenant(id, server, service), local)
    print_json(t) if json else print(f"added tenant {t['id']} on server {t['server']}")
    return 0


@app.command(name="tenant-list")
def tenant_list(*, database: Database = DEFAULT_DATABASE, json: Json = False) -> int:
    """List tenants."""
    from slum.fleet.registry import tenant_dict

    async def local(f: FleetService) -> list[dict[str, Any]]:
        return [tenant_dict(t) for t in await f.tenants()]

    tenants = _fleet(database, lambda c: c.tenants(), local)
    if json:
        print_json(tenants)
    else:
        print(
            table(
                ["TENANT", "SERVER", "SERVICE", "STATUS", "CREATED"],
                [(t["id"], t["server"], t["service"], t["status"], t["created_at"]) for t in tenants],
            )
        )
    return 0


@app.command(name="tenant-move")
def tenant_move(id: str, *, to: str, database: Database = DEFAULT_DATABASE, json: Json = False) -> int:
    """Move a tenant to another server: stopped there, started here on its next request."""
    from slum.fleet.registry import tenant_dict

    async def local(f: FleetService) -> dict[str, Any]:
        moved = await f.move_tenant(id, to)
        return {
            **tenant_dict(moved.tenant),
            "moved_from": moved.moved_from,
            **({"warnings": list(moved.warnings)} if moved.warnings else {}),
        }

    t = _fleet(database, lambda c: c.move_tenant(id, to), local)
    if json:
        print_json(t)
    else:
        print(f"moved tenant {t['id']} to server {t['server']}")
        sys.stderr.write(
            "note: its data was not copied: move the instance's data directory "
            "({data_dir}/{service}/{id}) yourself if it has any.\n"
        )
    for warning in t.get("warnings", []):
        sys.stderr.write(f"slum: warning: {warning}\n")
    return 0


@app.command(name="tenant-remove")
def tenant_remove(id: str, *, database: Database = DEFAULT_DATABASE) -> int:
    """Remove a tenant (and stop it on its server)."""
    from slum.fleet.registry import tenant_dict

    async def local(f: FleetService) -> dict[str, Any]:
        return tenant_dict(await f.remove_tenant(id))

    t = _fleet(database, lambda c: c.remove_tenant(id), local)
    print(f"removed tenant {t['id']}")
    return 0


@app.command(name="alias-add")
def alias_add(domain: str, tenant: str, *, database: Database = DEFAULT_DATABASE) -> int:
    """Route a custom domain to a tenant."""
    from slum.fleet.registry import tenant_dict

    async def local(f: FleetService) -> dict[str, Any]:
        return tenant_dict(await f.add_alias(tenant, domain))

    _fleet(database, lambda c: c.add_alias(tenant, domain), local)
    print(f"{domain} -> tenant {tenant}")
    return 0


@app.command(name="alias-remove")
def alias_remove(domain: str, *, database: Database = DEFAULT_DATABASE) -> int:
    """Stop routing a custom domain."""
    from slum.fleet.registry import tenant_dict

    async def local(f: FleetService) -> dict[str, Any]:
        return tenant_dict(await f.remove_alias(domain))

    def api(c: Client) -> dict[str, Any]:
        # The API names the tenant: find it first (one small read).
        from slum.fleet.registry import domain_key

        name = domain_key(domain)
        owner = next((t["id"] for t in c.tenants() if name in t.get("aliases", [])), None)
        if owner is None:
            from slum.errors import NotFound

            raise NotFound(f"no alias {name!r}")
        return c.remove_alias(owner, name)

    _fleet(database, api, local)
    print(f"removed alias {domain}")
    return 0
