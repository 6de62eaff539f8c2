"""What the web layer is given by app.py: the running parts it reads and commands."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from slum.alerts import Alerts
from slum.config import Config
from slum.events import Hub
from slum.fleet.nodes import NodeChecker
from slum.fleet.service import FleetService
from slum.proxy.edge import Edge
from slum.store.db import Store
from slum.store.ingest import IngestStatistics
from slum.supervisor import Instance, Supervisor
from slum.tasks import Tasks
from slum.telemetry.requests import RequestMetrics
from slum.telemetry.sampler import Sampler
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
    # The running parts a view reads when there are any (a test's app may have none).
    edge: Edge | None = None
    alerts: Alerts | None = None
    tasks: Tasks | None = None  # background tasks' errors (slum/tasks.py)
    reload: Callable[[], Awaitable[dict[str, Any]]] | None = None
    # A shared registry's (etcd) state: up or not, and why; None for this node's SQLite.
    registry_health: Callable[[], dict[str, Any]] | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # views' own caches

    def instance_dict(self, inst: Instance) -> dict[str, Any]:
        """An instance as the API shows it (the Instance schema in web/instances.py)."""
        port = "" if self.public_port == 80 else f":{self.public_port}"
        sampled = self.sampler.of(inst.id) if self.sampler is not None else None
        uptime = (time.time() - inst.started_at) if inst.started_at and inst.pid else 0.0
        return {
            "id": inst.id,
            "service": inst.service.name,
            "name": inst.name,
            "status": inst.status,
            "state": inst.state.value,
            "crash_looping": inst.crash_looping,
            "health": inst.health,
            "port": inst.port,
            "pid": inst.pid,
            "socket": inst.unix_path or (f"127.0.0.1:{inst.port}" if inst.port else None),
            "weight": inst.weight,
            "uptime_secs": round(uptime, 1),
            "restarts": inst.restarts,
            "reason": inst.reason,
            "last_reason": inst.last_reason,
            "wakes": inst.wakes,
            "last_exit": inst.last_exit,
            "last_exit_code": inst.last_exit_code,
            "idle_timeout": inst.service.idle_timeout,
            "cpu_percent": sampled.cpu_percent if sampled else None,
            "rss_bytes": sampled.rss_bytes if sampled else None,
            "oom_kills": inst.oom_kills,
            **inst.storage(),
            "url": f"http://{inst.name}.{inst.service.name}.{self.domain}{port}/",
        }


_KEY = "SLUM_CONTEXT"


def install(app: Any, ctx: WebContext) -> None:
    """Make `ctx` what `context()` returns inside this app's requests."""
    app.config[_KEY] = ctx


def context() -> WebContext:
    """The running parts, for the view handling the current request."""
    # Imported here, not at the top: slum's start imports this module, and Quart (~16 MB of
    # RSS) loads with the web app at the first request to it (specs/performance.md).
    from quart import current_app

    return cast(WebContext, current_app.config[_KEY])
