"""What the web layer is given by app.py: the running parts it reads and commands."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, cast

from quart import current_app

from slum.config import Config
from slum.events import Hub
from slum.fleet.nodes import NodeChecker
from slum.fleet.service import FleetService
from slum.metrics import RequestMetrics
from slum.sampler import Sampler
from slum.store.db import Store
from slum.store.ingest import IngestStatistics
from slum.supervisor import Instance, Supervisor
from slum.web.auth import Authenticator


@dataclass
class WebContext:
    config: Config
    store: Store
    hub: Hub
    supervisor: Supervisor
    auth: Authenticator
    domain: str
    public_port: int
    fleet: FleetService  # every fleet operation, and the edge's routes
    ingest: IngestStatistics = field(default_factory=IngestStatistics)
    requests: RequestMetrics = field(default_factory=RequestMetrics)
    sampler: Sampler | None = None
    nodes: NodeChecker = field(default_factory=NodeChecker)
    started_at: float = field(default_factory=time.time)
    extras: dict[str, Any] = field(default_factory=dict)

    def instance_dict(self, inst: Instance) -> dict[str, Any]:
        d = inst.to_dict()
        port = "" if self.public_port == 80 else f":{self.public_port}"
        d["url"] = f"http://{inst.name}.{inst.service.name}.{self.domain}{port}/"
        return d


_KEY = "SLUM_CONTEXT"


def install(app: Any, ctx: WebContext) -> None:
    """Make `ctx` what `context()` returns inside this app's requests."""
    app.config[_KEY] = ctx


def context() -> WebContext:
    """The running parts, for the view handling the current request."""
    return cast(WebContext, current_app.config[_KEY])
