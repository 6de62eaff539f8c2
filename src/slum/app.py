"""The one nursery: open the store, reap what a killed slum left, start ingestion, the
supervisor, the web app and the edge in dependency order; on SIGINT/SIGTERM stop them in reverse
(edge and web first, then children with their grace period, then drain the logs, then close).
Only wiring lives here: each part's own set-up is in its module, start-up's in startup.py."""

from __future__ import annotations

import gc
import logging
import socket
from collections.abc import Callable
from functools import partial
from pathlib import Path

import trio

from slum import config as cfg
from slum import startup
from slum.alerts import Alerts, disk_usage_of
from slum.client import control_socket_path
from slum.errors import BadRequest, ConfigError
from slum.events import Hub
from slum.fleet.nodes import NodeChecker
from slum.fleet.registry import RouteRow
from slum.fleet.service import open_fleet
from slum.proxy import io
from slum.proxy.edge import Edge
from slum.proxy.routing import RouteTable
from slum.proxy.trust import RouterTrust
from slum.startup import Running, ServeOptions
from slum.store import processes
from slum.store.db import Store
from slum.store.ingest import IngestStatistics, run_ingest
from slum.store.processes import StoreJournal
from slum.store.retention import INTERVAL_S as RETENTION_INTERVAL_S
from slum.store.retention import retain
from slum.supervisor import Supervisor
from slum.supervisor.reload import Reloader
from slum.tasks import Tasks, run_periodic
from slum.telemetry.tasks import Telemetry
from slum.web.auth import Authenticator, Listener, Proxies
from slum.web.context import WebContext

__all__ = ["Running", "ServeOptions", "serve"]  # what the CLI and tests start slum with
log = logging.getLogger("slum")
GC_YOUNG_THRESHOLD = 2000


async def serve(
    opts: ServeOptions, *, task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED
) -> None:
    """Start everything, serve until SIGINT/SIGTERM, stop everything. A failure before slum is
    up is raised as one SlumError (its message is the CLI's one line); after that, every part
    contains its own failures and nothing but a signal ends this."""
    config = startup.load_config(opts.config, opts.strict, opts.data_dir)
    cfg.check_label(opts.domain.replace(".", "-"), "domain")
    if not 0 <= opts.port <= 65535:
        raise BadRequest(f"port {opts.port} is out of range (0-65535)")
    io.raise_fd_limit()
    up = False

    def ready(running: Running) -> None:
        nonlocal up
        up = True
        task_status.started(running)

    try:
        store = Store(opts.database)
        try:
            control = Path(opts.control_socket or control_socket_path(opts.database))
            with startup.Sockets.bind(control).held() as sockets:
                await _serve(opts, config, store, sockets, ready)
        finally:
            store.close()
    except BaseException as e:
        failure = None if up else startup.startup_failure(e, opts.database)
        if failure is None:
            raise
        raise failure from None


async def _serve(
    opts: ServeOptions,
    config: cfg.Config,
    store: Store,
    sockets: startup.Sockets,
    ready: Callable[[Running], None],
) -> None:
    reaped = await trio.to_thread.run_sync(startup.reap, store)
    known = [(r.service, r.name, r.weight) for r in store.write_sync(processes.instances)]

    tasks = Tasks()
    hub = Hub()
    cgroups, watchdog = await startup.process_guards(opts.database, config)
    supervisor = Supervisor(config, hub, StoreJournal(store.write, watchdog, tasks), cgroups)
    table = RouteTable(opts.domain.lower(), frozenset(config.services))

    def routes(rows: list[RouteRow], aliases: dict[str, str]) -> None:
        default = config.tenant_service  # read at each publish: a reload changes it
        table.replace({r.tenant: r.serving(default) for r in rows}, aliases)

    # etcd when several routers share the fleet; None keeps it in this node's SQLite. A URL that
    # does not parse is a usage error (exit 2).
    registry_url = opts.registry or config.settings.registry
    shared = None
    if registry_url:
        from slum.fleet.etcd_registry import EtcdRegistry  # httpx: ~7 MB a SQLite node never needs

        shared = EtcdRegistry.from_url(registry_url)
    fleet = await open_fleet(store, supervisor, lambda: config, routes, shared)
    for clash in sorted(set(config.services) & set(table.tenants)):
        raise ConfigError(
            f"{config.path}: [service.{clash}] has the name of a tenant: "
            f"`{clash}.{opts.domain}` routes a service or a tenant, never both; "
            f"rename the service or `slum tenant-remove {clash}`"
        )
    settings = config.settings
    proxies = Proxies(settings.trusted_proxies)
    auth = Authenticator(store, proxies)
    # Instances' data (and their logs' secrets) are for the operator only.
    if config.services:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    telemetry = Telemetry.of(supervisor, settings.data_dir, request_metrics=settings.request_metrics)
    requests, sampler = telemetry.requests, telemetry.sampler
    trust = RouterTrust.of_tokens(auth.verify_token)
    edge = Edge(
        table,
        supervisor,
        sockets.edge_path,
        startup.edge_options(settings, config, trust, proxies.trusted),
        on_request=requests.record,
    )
    checker = NodeChecker(settings.node_check_interval)
    alerts = Alerts(
        config.alerts,
        hub,
        restart_window=settings.restart_window,
        max_restarts=settings.max_restarts,
        disk_usage=lambda: disk_usage_of(sampler.host, str(settings.data_dir)),
        registry_health=None if shared is None else lambda: shared.health().as_dict(),
    )
    ctx = WebContext(
        config,
        store,
        hub,
        supervisor,
        auth,
        opts.domain.lower(),
        opts.port,
        fleet,
        IngestStatistics(),
        requests=requests,
        sampler=sampler,
        nodes=checker,
        edge=edge,
        alerts=alerts,
        tasks=tasks,
        registry_health=None if shared is None else lambda: shared.health().as_dict(),
    )

    async def reloaded(new: cfg.Config) -> None:
        nonlocal config  # routes reads it: a tenant without a service gets the new default
        config = ctx.config = new
        alerts.set_rules(new.alerts)
        edge.options.default_instance = startup.default_instance(new)
        requests.enabled = new.settings.request_metrics
        fleet.republish()

    reloader = Reloader(supervisor, partial(startup.load_config, opts.config), reloaded)
    ctx.reload = reloader.reload

    def report(server: str, status: str) -> None:
        level = "info" if status == "online" else "error"
        hub.system(None, f"server {server} is {status}", level)
        alerts.node(server, status)
        log.log(logging.INFO if level == "info" else logging.WARNING, "server %s is %s", server, status)

    try:
        async with trio.open_nursery() as outer:
            await outer.start(run_ingest, hub, store, ctx.ingest)
            async with trio.open_nursery() as timers:
                # Every background task runs contained (slum/tasks.py): an error is logged,
                # counted under the task's name and retried after a backoff, never the end of
                # this nursery.
                timers.start_soon(
                    partial(
                        run_periodic,
                        tasks,
                        "retention",
                        partial(
                            retain, store, settings.log_retention_days, settings.log_max_mb * 1024 * 1024
                        ),
                        RETENTION_INTERVAL_S,
                    )
                )
                await timers.start(telemetry.run, tasks, store)  # the sampler, the history
                await timers.start(alerts.run)
                await timers.start(fleet.run, tasks, checker, report)
                async with trio.open_nursery() as procs:
                    await procs.start(supervisor.run, known)
                    await procs.start(reloader.run)  # also SIGHUP
                    async with trio.open_nursery() as front:
                        web_stop = trio.Event()
                        # The public port first: the one most likely taken. Requests for the
                        # web app wait in the sockets' backlogs until it accepts.
                        with startup.starting(f"cannot listen on {opts.host}:{opts.port}"):
                            listeners = await front.start(edge.serve, opts.host, opts.port)
                        with startup.starting(f"cannot serve the API on {sockets.control_path}"):
                            await front.start(_serve_web, ctx, sockets.control, sockets.edge, web_stop)
                        port = listeners[0].getsockname()[1]
                        ctx.public_port = port
                        # Everything loaded at start lives as long as slum: move it out of the
                        # collector's way, so a full collection under load scans only new
                        # objects (a full scan of ~200k objects was a 20+ ms pause).
                        gc.collect()
                        gc.freeze()
                        # CPython collects the young generation after 700 more container objects
                        # live than died; 32 busy connections keep about that many alive, so
                        # under load it ran every ~30 requests for nothing (3,600 times in 10 s,
                        # 4% of the edge's CPU). Cyclic garbage is rare on the request path
                        # (proxy/http.py: _release); 2,000 leaves it 30 collections in 10 s.
                        gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
                        ready(
                            Running(
                                port,
                                str(sockets.control_path),
                                supervisor,
                                store,
                                hub,
                                edge,
                                requests,
                                sampler,
                                reaped,
                                list(config.warnings),
                                tasks,
                            )
                        )
                        await startup.wait_for_signal()
                        log.info("stopping: edge and web first, then %d instances", len(supervisor.instances))
                        # slum's own web app first: its SSE streams (an open dashboard) would
                        # otherwise hold the drain for the whole grace; tenants' requests in
                        # flight get shutdown_grace.
                        web_stop.set()
                        await edge.drain(config.settings.shutdown_grace)
                        front.cancel_scope.cancel()
                    # Instances stop (SIGTERM, then SIGKILL after their grace); their output
                    # pumps read the pipes to EOF, so their last lines reach the hub.
                    procs.cancel_scope.cancel()
                timers.cancel_scope.cancel()
            # Only now, with every child gone and its output read: ingestion stores what is
            # queued, then returns; the database closes after this (in serve).
            hub.close()
    finally:
        watchdog.close()


async def _serve_web(
    ctx: WebContext,
    control: socket.socket,
    edge_socket: socket.socket,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The web app on its two sockets, loaded when the first connection waits on either.

    Quart and Hypercorn are ~17 MB of RSS that a node nobody asks does not need (specs/
    performance.md). Both sockets listen already, so that first connection waits in the backlog
    while they load (off the loop, once, well under a second) and is then served. The control
    socket's server starts first: it runs the app's start-up; the edge's socket answers its
    lifespan itself."""
    task_status.started()
    async with trio.open_nursery() as first:

        async def readable(sock: socket.socket) -> None:
            await trio.lowlevel.wait_readable(sock)
            first.cancel_scope.cancel()

        async def stopped() -> None:
            await stop.wait()
            first.cancel_scope.cancel()

        first.start_soon(readable, control)
        first.start_soon(readable, edge_socket)
        first.start_soon(stopped)
    if stop.is_set():
        return
    await trio.to_thread.run_sync(_import_web)
    from slum.web.create_app import create_app

    app = create_app(ctx)
    gc.freeze()  # as at start: what the web app loaded lives as long as slum
    async with trio.open_nursery() as servers:
        await servers.start(startup.serve_web, Listener(app, trusted=True), control, stop)
        await servers.start(startup.serve_web, Listener(app, trusted=False), edge_socket, stop)


def _import_web() -> None:
    import hypercorn.trio  # noqa: F401

    import slum.web.create_app  # noqa: F401
