"""`slum registry-migrate --from slum.db --to etcd://...`: a single router's registry into etcd
(the copy is described in slum/fleet/etcd_migrate.py)."""

from __future__ import annotations

import sys
from typing import Annotated

from cyclopts import Parameter

from slum.cli.commands import Json, app
from slum.cli.output import print_json


@app.command(name="registry-migrate")
def registry_migrate(
    *,
    from_: Annotated[str, Parameter(name=["--from"], help="the SQLite database (slum.db)")],
    to: Annotated[str, Parameter(name=["--to"], help="etcd://HOST:PORT[,HOST:PORT...][/prefix/]")],
    local_name: Annotated[
        str, Parameter(help="the name the old router gets as a node, for the tenants it runs itself")
    ] = "origin",
    local_address: Annotated[str | None, Parameter(help="its address, http://HOST:PORT")] = None,
    local_token: Annotated[str | None, Parameter(help="a token of it (slum token-gen)")] = None,
    json: Json = False,
) -> int:
    """Copy the fleet registry (servers, node tokens, tenants, aliases) from a SQLite database
    into etcd, for routers started with --registry. Safe to run again; never overwrites."""
    from pathlib import Path

    import trio

    from slum.config import check_label
    from slum.errors import BadRequest
    from slum.fleet.etcd_migrate import LocalNode, Migrated, migrate
    from slum.fleet.etcd_registry import EtcdRegistry
    from slum.store.db import Store

    if not Path(from_).is_file():
        raise BadRequest(f"no database at {from_}")
    check_label(local_name, "--local-name")
    target = EtcdRegistry.from_url(to)
    local = None if local_address is None else LocalNode(local_name, local_address, local_token)

    async def main() -> Migrated:
        store = Store(from_)
        try:
            return await migrate(store, target, local)
        finally:
            store.close()
            await target.aclose()

    done = trio.run(main)
    where = ",".join(e.partition("://")[2] for e in target.etcd.endpoints)
    if json:
        print_json(
            {
                "servers": done.servers,
                "tenants": done.tenants,
                "aliases": done.aliases,
                "skipped": done.skipped,
                "moved_from_local": done.moved_from_local,
                "to": where,
                "prefix": target.prefix.decode(),
            }
        )
        return 0
    sys.stdout.write(
        f"copied {done.servers} servers, {done.tenants} tenants and {done.aliases} aliases into "
        f"etcd at {where} (prefix {target.prefix.decode()})"
        + (f"; {done.skipped} keys were there already" if done.skipped else "")
        + "\n"
        + (
            f"{done.moved_from_local} tenants of this router now live on node {local_name}\n"
            if done.moved_from_local
            else ""
        )
        + f"start every router with: slum serve --registry {to}\n"
    )
    return 0
