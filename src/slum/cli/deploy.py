"""`slum deploy`, `slum route`, `slum weight`: tenement's deploy commands, over slum.Client."""

from __future__ import annotations

import sys
from typing import Annotated

from cyclopts import Parameter

from slum.cli.commands import Json, Server, Token, _client, _ref, app
from slum.cli.output import print_json


@app.command
def deploy(
    service: str,
    *,
    version: Annotated[str, Parameter(name=["--version", "-v"])],
    weight: Annotated[int, Parameter(name=["--weight", "-w"])] = 100,
    timeout: Annotated[float, Parameter(name=["--timeout", "-t"])] = 30,
    server: Server = None,
    token: Token = None,
    json: Json = False,
) -> int:
    """Start SERVICE:VERSION, wait until it is healthy, then give it --weight of the traffic to
    `SERVICE.DOMAIN`. If it does not get healthy, it is stopped and the running versions keep
    their traffic (exit 1)."""
    inst = _client(server, token).deploy(service, version, weight=weight, timeout=timeout)
    if json:
        print_json(inst)
    else:
        print(f"deployed {inst['id']} ({inst['status']}) with weight {inst['weight']}")
    return 0


@app.command
def route(
    service: str,
    *,
    from_: Annotated[str, Parameter(name=["--from"])],
    to: Annotated[str, Parameter(name=["--to"])],
    server: Server = None,
    token: Token = None,
    json: Json = False,
) -> int:
    """Blue/green: move all of SERVICE's traffic from one version to another in one step. The
    old version keeps running until it idles out or is stopped."""
    result = _client(server, token).route(service, from_, to)
    if json:
        print_json(result)
    else:
        print(
            f"{result['from_instance']} weight {result['from_weight']} -> "
            f"{result['to_instance']} weight {result['to_weight']}"
        )
        if result["to"]["status"] not in ("healthy", "degraded"):
            sys.stderr.write(
                f"note: {result['to_instance']} is {result['to']['status']}: the next request wakes it\n"
            )
    return 0


@app.command
def weight(ref: str, value: int, *, server: Server = None, token: Token = None, json: Json = False) -> int:
    """Set an instance's share of `SERVICE.DOMAIN` traffic: 0 (none) to 100."""
    inst = _client(server, token).set_weight(_ref(ref), value)
    print_json(inst) if json else print(f"{inst['id']} weight {inst['weight']}")
    return 0
