"""The one nursery: open the store, reap what a killed slum left, start ingestion, the
supervisor, the web app and the edge in dependency order; on SIGINT/SIGTERM stop them in reverse
(edge and web first, then children with their grace period, then drain the logs, then close)."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import stat
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from slum import config as cfg
from slum.client import control_socket_path
from slum.errors import SlumError
from slum.events import Hub
from slum.fleet import registry
from slum.fleet.nodes import NodeChecker
from slum.metrics import RequestMetrics
from slum.proxy.edge import Edge, EdgeOptions
from slum.proxy.routing import RouteTable, TenantRoute
from slum.sampler import Sampler, minute_rows
from slum.store.db import Store
from slum.store.ingest import IngestStatistics, run_ingest
from slum.store.metrics import write_history
from slum.store.retention import run_retention
from slum.supervisor import Instance, Supervisor
from slum.supervisor.process import reap_leftovers
from slum.supervisor.watchdog import Watchdog
from slum.web.auth import Authenticator, active_tokens
from slum.web.context import WebContext

log = logging.getLogger("slum")
ROUTES_POLL_S = 1.0
ROUTER_TRUST_S = 5.0


@dataclass
class ServeOptions:
    host: str = "0.0.0.0"
    port: int = 8080
    database: str = "slum.db"
    config: str | None = None
    domain: str = "localhost"
    control_socket: str | None = None


@dataclass
class Running:
    """What `serve` hands to whoever started it (tests, the CLI banner)."""

    port: int
    control_socket: str
    supervisor: Supervisor
    store: Store
    hub: Hub
    edge: Edge
    requests: RequestMetrics
    sampler: Sampler
    reaped: int = 0
    warnings: list[str] = field(default_factory=list)


class StoreJournal:
    """What must survive slum: process groups (for the watchdog, and for the reap at the next
    start) and the instances ever spawned."""

    def __init__(self, store: Store, watchdog: Watchdog) -> None:
        self.store = store
        self.watchdog = watchdog

    async def process_started(self, inst: Instance, pid: int, started_at: float) -> None:
        self.watchdog.watch(pid)
        await self.store.write(lambda c: c.execute(
            "INSERT OR REPLACE INTO processes (instance_id, pid, pgid, started_at) "
            "VALUES (?, ?, ?, ?)", (inst.id, pid, pid, started_at)))

    async def process_exited(self, inst: Instance, pid: int) -> None:
        self.watchdog.forget(pid)
        await self.store.write(lambda c: c.execute(
            "DELETE FROM processes WHERE instance_id = ?", (inst.id,)))

    async def instance_known(self, inst: Instance) -> None:
        await self.store.write(lambda c: c.execute(
            "INSERT OR IGNORE INTO instances (id, service, name) VALUES (?, ?, ?)",
            (inst.id, inst.service.name, inst.name)))


def load_config(path: str | None) -> cfg.Config:
    if path is not None:
        return cfg.load(path)
    if Path("tenement.toml").is_file():
        return cfg.load("tenement.toml")
    return cfg.empty_config()


def default_instance(config: cfg.Config) -> str | None:
    service = config.default_service
    if service is None:
        return None
    names = config.instances.get(service)
    return f"{service}:{names[0] if names else 'default'}"


def bind_control_socket(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # left by a slum that did not exit cleanly
        else:
            raise SlumError(f"another slum is serving this database (control socket {path})")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


async def serve(opts: ServeOptions, *,
                task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
    config = load_config(opts.config)
    cfg.check_label(opts.domain.replace(".", "-"), "domain")
    store = Store(opts.database)
    try:
        await _serve(opts, config, store, task_status)
    finally:
        store.close()


async def _serve(opts: ServeOptions, config: cfg.Config, store: Store,
                 task_status: trio.TaskStatus[Running]) -> None:
    leftovers = store.write_sync(lambda c: list(c.execute(
        "SELECT pid, pgid, started_at FROM processes")))
    reaped = await trio.to_thread.run_sync(reap_leftovers, leftovers)
    if reaped:
        log.warning("reaped %d processes left by a slum that did not stop cleanly", reaped)
    store.write_sync(lambda c: c.execute("DELETE FROM processes"))
    store.write_sync(registry.ensure_local)
    # A node without a config runs no processes: keep tenant placement off it.
    local = store.write_sync(lambda c: registry.get_server(c, registry.LOCAL))
    if not config.services:
        store.write_sync(lambda c: registry.set_local_capacity(c, 0))
    elif local["capacity"] == 0:
        store.write_sync(lambda c: registry.set_local_capacity(c, None))
    known = store.write_sync(lambda c: list(c.execute("SELECT service, name FROM instances")))

    hub = Hub()
    watchdog = Watchdog()
    if config.services:
        watchdog.start()
    supervisor = Supervisor(config, hub, StoreJournal(store, watchdog))
    table = RouteTable(opts.domain.lower())
    version = ""

    async def refresh_routes() -> None:
        nonlocal version
        version, (rows, aliases) = await store.read(
            lambda c: (registry.registry_version(c), registry.route_rows(c)))
        table.replace({tid: TenantRoute(tid, service or _only_service(config), server, address,
                                        status, server_status, token)
                       for tid, service, status, server, address, server_status, token in rows},
                      aliases)

    async def watch_routes() -> None:
        # The CLI writes the registry straight into the database: notice it within a second.
        while True:
            await trio.sleep(ROUTES_POLL_S)
            current = await store.read(registry.registry_version)
            if current != version:
                await refresh_routes()

    await refresh_routes()
    auth = Authenticator(lambda: store.read(active_tokens))
    ingest = IngestStatistics()
    control_path = Path(opts.control_socket) if opts.control_socket else (
        control_socket_path(opts.database))
    control = bind_control_socket(control_path)
    trusted: dict[str, float] = {}

    async def trust_router(token: str) -> bool:
        # Every routed request carries the token: a verified one is trusted for a few seconds
        # without asking the database, so a revoked token stops working within ROUTER_TRUST_S.
        now = trio.current_time()
        if trusted.get(token, 0.0) > now:
            return True
        try:
            await auth.verify_token(token, "router")
        except SlumError:
            return False
        if len(trusted) > 1000:
            trusted.clear()
        trusted[token] = now + ROUTER_TRUST_S
        return True

    requests = RequestMetrics()
    requests.enabled = config.settings.request_metrics
    sampler = Sampler(supervisor, config.settings.data_dir)
    edge = Edge(table, supervisor, str(control_path),
                EdgeOptions(max_body=config.settings.max_body_mb * 1024 * 1024,
                            default_instance=default_instance(config),
                            connect_timeout_s=config.settings.connect_timeout_s,
                            response_timeout_s=config.settings.response_timeout_s,
                            idle_timeout_s=config.settings.upstream_idle_timeout_s,
                            trust_router=trust_router),
                on_request=requests.record)
    checker = NodeChecker(config.settings.node_check_interval)
    ctx = WebContext(config, store, hub, supervisor, auth, opts.domain.lower(), opts.port,
                     refresh_routes, ingest, requests=requests, sampler=sampler, nodes=checker)
    ctx.extras["edge_connections"] = lambda: edge.connections
    try:
        async with trio.open_nursery() as outer:
            await outer.start(run_ingest, hub, store, ingest)
            async with trio.open_nursery() as timers:
                settings = config.settings
                timers.start_soon(run_retention, store, settings.log_retention_days,
                                  settings.log_max_mb * 1024 * 1024)
                await timers.start(sampler.run)
                timers.start_soon(_flush_history, store, sampler, requests)

                def report(server: str, status: str) -> None:
                    level = "info" if status == "online" else "error"
                    hub.system(None, f"server {server} is {status}", level)
                    log.log(logging.INFO if level == "info" else logging.WARNING,
                            "server %s is %s", server, status)

                timers.start_soon(checker.run, store.read, store.write, refresh_routes, report)
                async with trio.open_nursery() as procs:
                    await procs.start(supervisor.run, known)
                    async with trio.open_nursery() as front:
                        web_stop = trio.Event()
                        await front.start(_serve_web, ctx, control, web_stop)
                        listeners = await front.start(edge.serve, opts.host, opts.port)
                        port = listeners[0].getsockname()[1]
                        front.start_soon(watch_routes)
                        ctx.public_port = port
                        # Everything loaded at start lives as long as slum: move it out of the
                        # collector's way, so a full collection under load scans only new
                        # objects (a full scan of ~200k objects was a 20+ ms pause).
                        gc.collect()
                        gc.freeze()
                        task_status.started(Running(port, str(control_path), supervisor, store,
                                                    hub, edge, requests, sampler, reaped,
                                                    list(config.warnings)))
                        await _wait_for_signal()
                        log.info("stopping: edge and web first, then %d instances",
                                 len(supervisor.instances))
                        web_stop.set()
                        front.cancel_scope.cancel()
                    procs.cancel_scope.cancel()
                timers.cancel_scope.cancel()
            hub.close()  # ingestion drains what the children wrote, then returns
    finally:
        watchdog.close()
        with contextlib.suppress(OSError):
            control.close()
            control_path.unlink()


async def _flush_history(store: Store, sampler: Sampler, requests: RequestMetrics) -> None:
    """Once a minute, just after it ends: the minute's min/avg/max of every series."""
    while True:
        now = time.time()
        minute = int(now) - int(now) % 60
        await trio.sleep(minute + 60.5 - now)
        rows = minute_rows(minute, sampler, requests)
        if rows:
            await store.write(partial(write_history, rows=rows))


async def _wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def _serve_web(ctx: WebContext, sock: socket.socket, stop: trio.Event, *,
                     task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
    """Quart and Hypercorn are ~20 MB of RSS that a node nobody asks does not need: load them
    (off the loop) when the first connection waits on the control socket, which is listening
    already, so that connection is served, only later. See specs/architecture.md."""
    task_status.started()
    await trio.lowlevel.wait_readable(sock)
    await trio.to_thread.run_sync(_import_web)
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve as hyper_serve

    from slum.web.create_app import create_app

    app = create_app(ctx)

    hc = HyperConfig()
    hc.bind = [f"fd://{sock.fileno()}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 1.0
    hc.keep_alive_timeout = 75.0
    await hyper_serve(app, hc, shutdown_trigger=stop.wait)


def _import_web() -> None:
    import hypercorn.trio  # noqa: F401

    import slum.web.create_app  # noqa: F401


def _only_service(config: cfg.Config) -> str | None:
    if config.default_service:
        return config.default_service
    if len(config.services) == 1:
        return next(iter(config.services))
    return None
