"""slum: one process per tenant, routed by subdomain, woken on request, in one executable.

`import slum` stays light (the CLI imports it on every command): the Python API is loaded lazily.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Not typing.TYPE_CHECKING: importing typing is a few ms of every CLI command (mypy knows the name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from slum.client import Client
    from slum.errors import BadRequest, Conflict, NotFound, SlumError, Unauthorized

__all__ = ["BadRequest", "Client", "Conflict", "NotFound", "SlumError", "Unauthorized", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from slum.client import Client

        return Client
    if name in {"BadRequest", "Conflict", "NotFound", "SlumError", "Unauthorized"}:
        from slum import errors

        return getattr(errors, name)
    raise AttributeError(name)
