"""The one nursery: open the store, reap what a killed slum left, start ingestion, the
supervisor, the web app and the edge in dependency order; on SIGINT/SIGTERM stop them in reverse
(edge and web first, then children with their grace period, then drain the logs, then close)."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import apsw
import trio

from slum import config as cfg
from slum.alerts import Alerts, disk_usage_of
from slum.client import control_socket_path
from slum.errors import BadRequest, ConfigError, SlumError
from slum.events import Hub
from slum.fleet import registry
from slum.fleet.nodes import NodeChecker
from slum.proxy.edge import Edge, EdgeOptions
from slum.proxy.routing import RouteTable, TenantRoute
from slum.proxy.trust import RouterTrust
from slum.store import processes
from slum.store.db import Store, describe_error
from slum.store.ingest import IngestStatistics, run_ingest
from slum.store.processes import StoreJournal
from slum.store.retention import INTERVAL_S as RETENTION_INTERVAL_S
from slum.store.retention import retain
from slum.supervisor import Supervisor
from slum.supervisor.cgroups import Cgroups, owner_key
from slum.supervisor.process import owner_alive, reap_leftovers
from slum.supervisor.reload import Reloader
from slum.supervisor.watchdog import Watchdog
from slum.tasks import Tasks, run_periodic
from slum.telemetry.history import write_history
from slum.telemetry.requests import RequestMetrics
from slum.telemetry.sampler import INTERVAL_S as SAMPLE_INTERVAL_S
from slum.telemetry.sampler import Sampler, minute_rows
from slum.web.auth import Authenticator, Listener, Proxies
from slum.web.context import WebContext

log = logging.getLogger("slum")
ROUTES_POLL_S = 1.0
EDGE_SOCKET = "web.sock"


@dataclass
class ServeOptions:
    host: str = "0.0.0.0"
    port: int = 8080
    database: str = "slum.db"
    config: str | None = None
    domain: str = "localhost"
    control_socket: str | None = None
    strict: bool = False  # unknown config keys are errors
    data_dir: str | None = None  # overrides [settings] data_dir


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
    tasks: Tasks = field(default_factory=Tasks)


def raise_fd_limit() -> int:
    """Every client connection, upstream connection and child pipe is a descriptor: take the
    soft limit up to the hard one (what the operator allowed), so the default 1,024 is not
    the edge's ceiling. Returns the limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def load_config(path: str | None, strict: bool = False,
                data_dir: str | None = None) -> cfg.Config:
    found = path if path is not None else cfg.find_config()
    if found is not None:
        return cfg.load(found, strict=strict, data_dir=data_dir)
    return cfg.empty_config(Path(data_dir).absolute() if data_dir else None)


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


def bind_edge_socket(control_path: Path) -> tuple[Path, socket.socket]:
    """The edge's own way into the web app: requests arriving here are from the network and
    must authenticate, whatever headers they carry. It lives in a 0700 directory beside the
    control socket (`slum.sock.d/`), so nobody but slum's user can connect and pose as the edge
    (forging X-Forwarded-For); a fresh temporary one when that path is too long for a unix
    socket or is not a directory of ours."""
    directory = control_path.with_name(control_path.name + ".d")
    if len(os.fsencode(directory / EDGE_SOCKET)) >= 100 or not _private_dir(directory):
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        directory = Path(tempfile.mkdtemp(prefix="slum-", dir=runtime if runtime and
                                          Path(runtime).is_dir() else None))
    path = directory / EDGE_SOCKET
    # Left by a slum that was killed: bind_control_socket already proved no slum serves here.
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(128)
    return directory, sock


def _private_dir(directory: Path) -> bool:
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=0o700)
    try:
        st = directory.lstat()
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and stat.S_IMODE(st.st_mode) == 0o700)


class StartupError(SlumError):
    """slum could not start: one line on stderr and exit 1 (a bad config or usage exits 2)."""


async def serve(opts: ServeOptions, *,
                task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED) -> None:
    """Start everything, serve until SIGINT/SIGTERM, stop everything. A failure before slum is
    up is raised as one SlumError (its message is the CLI's one line); after that, every part
    contains its own failures and nothing but a signal ends this."""
    config = load_config(opts.config, opts.strict, opts.data_dir)
    cfg.check_label(opts.domain.replace(".", "-"), "domain")
    if not 0 <= opts.port <= 65535:
        raise BadRequest(f"port {opts.port} is out of range (0-65535)")
    raise_fd_limit()
    up = False

    def ready(running: Running) -> None:
        nonlocal up
        up = True
        task_status.started(running)

    try:
        store = Store(opts.database)
        try:
            await _serve(opts, config, store, ready)
        finally:
            store.close()
    except BaseException as e:
        leaf = _leaf(e)
        if up or leaf is None or isinstance(leaf, trio.Cancelled | KeyboardInterrupt):
            raise
        if isinstance(leaf, SlumError):
            raise leaf from None
        if isinstance(leaf, apsw.Error):
            raise StartupError(describe_error(opts.database, leaf)) from None
        if isinstance(leaf, OSError):
            raise StartupError(f"cannot start: {leaf}") from None
        raise


def _leaf(e: BaseException) -> BaseException | None:
    """The one error that matters in what a nursery raised (cancellations are consequences)."""
    if not isinstance(e, BaseExceptionGroup):
        return e
    leaves = [leaf for sub in e.exceptions if (leaf := _leaf(sub)) is not None]
    real = [leaf for leaf in leaves if not isinstance(leaf, trio.Cancelled)]
    chosen = real or leaves
    return chosen[0] if chosen else None


@contextlib.contextmanager
def _starting(what: str) -> Iterator[None]:
    try:
        yield
    except BaseException as e:
        leaf = _leaf(e)
        if isinstance(leaf, OSError):
            raise StartupError(f"{what}: {leaf.strerror or leaf}") from None
        raise


def _reap(store: Store) -> int:
    """Kill what a SIGKILLed slum left, and forget it. Only groups whose recorded owner is dead:
    a live slum (say, one serving the database this one was copied from) keeps its children."""
    orphans = [r for r in store.write_sync(processes.processes)
               if not owner_alive(r.owner_pid, r.owner_started)]
    reaped = reap_leftovers([(r.pid, r.pgid, r.started_at) for r in orphans])
    store.write_sync(lambda c: processes.forget_processes(c, orphans))
    return reaped


async def _serve(opts: ServeOptions, config: cfg.Config, store: Store,
                 ready: Callable[[Running], None]) -> None:
    # First, before anything is reaped or started: is another slum serving this database?
    control_path = Path(opts.control_socket) if opts.control_socket else (
        control_socket_path(opts.database))
    with _starting(f"cannot bind the control socket {control_path}"):
        control = bind_control_socket(control_path)
    control_inode = control_path.stat().st_ino
    reaped = await trio.to_thread.run_sync(_reap, store)
    if reaped:
        log.warning("reaped %d processes left by a slum that did not stop cleanly", reaped)
    store.write_sync(registry.ensure_local)
    # A node without a config runs no processes: keep tenant placement off it.
    local = store.write_sync(lambda c: registry.get_server(c, registry.LOCAL))
    if not config.services:
        store.write_sync(lambda c: registry.set_local_capacity(c, 0))
    elif local["capacity"] == 0:
        store.write_sync(lambda c: registry.set_local_capacity(c, None))
    known = [(r.service, r.name, r.weight) for r in store.write_sync(processes.instances)]

    tasks = Tasks()
    hub = Hub()
    cgroups = Cgroups.detect(owner_key(opts.database))
    if config.services:
        log.info("%s", cgroups.describe())
        killed = await trio.to_thread.run_sync(cgroups.reap_leftovers)
        if killed:
            log.warning("killed %d processes left in the cgroups of a slum that was killed", killed)
    watchdog = Watchdog()
    if config.services:
        watchdog.start()
    supervisor = Supervisor(config, hub, StoreJournal(store.write, watchdog, tasks), cgroups)
    table = RouteTable(opts.domain.lower(), frozenset(config.services))
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
        if await store.read(registry.registry_version) != version:
            await refresh_routes()

    await refresh_routes()
    for clash in sorted(set(config.services) & set(table.tenants)):
        raise ConfigError(f"{config.path}: [service.{clash}] has the name of a tenant: "
                              f"`{clash}.{opts.domain}` routes a service or a tenant, never both; "
                              f"rename the service or `slum tenant-remove {clash}`")
    proxies = Proxies(config.settings.trusted_proxies)
    auth = Authenticator(store, proxies)
    # Instances' data (and their logs' secrets) are for the operator only.
    if config.services:
        config.settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ingest = IngestStatistics()
    with _starting(f"cannot bind the edge's socket beside {control_path}"):
        edge_dir, edge_socket = bind_edge_socket(control_path)
    # A forged X-Slum-Router must never cost argon2 per request: RouterTrust caches and limits,
    # and failures count against the peer that sent them, never a bucket the real router shares.
    trust_router = RouterTrust(lambda token, peer: auth.verify_token(
        token, None if peer is None else f"router:{peer}"))

    requests = RequestMetrics()
    requests.enabled = config.settings.request_metrics
    sampler = Sampler(supervisor, config.settings.data_dir)
    edge = Edge(table, supervisor, str(edge_dir / EDGE_SOCKET),
                EdgeOptions(max_body=config.settings.max_body_mb * 1024 * 1024,
                            default_instance=default_instance(config),
                            connect_timeout_s=config.settings.connect_timeout_s,
                            response_timeout_s=config.settings.response_timeout_s,
                            idle_timeout_s=config.settings.upstream_idle_timeout_s,
                            trust_router=trust_router, trusted_proxy=proxies.trusted,
                            header_timeout_s=config.settings.header_timeout,
                            keepalive_timeout_s=config.settings.keepalive_timeout,
                            body_timeout_s=config.settings.body_timeout,
                            max_connections=config.settings.max_connections),
                on_request=requests.record)
    checker = NodeChecker(config.settings.node_check_interval)
    ctx = WebContext(config, store, hub, supervisor, auth, opts.domain.lower(), opts.port,
                     refresh_routes, ingest, requests=requests, sampler=sampler, nodes=checker)
    ctx.extras["edge_connections"] = lambda: edge.connections
    ctx.extras["edge_statistics"] = edge.statistics  # contained failures, for status and metrics

    alerts = ctx.extras["alerts"] = Alerts(
        config.alerts, hub, restart_window=config.settings.restart_window,
        max_restarts=config.settings.max_restarts,
        disk_usage=lambda: disk_usage_of(sampler.host, str(config.settings.data_dir)))

    async def reloaded(new: cfg.Config) -> None:
        nonlocal config  # refresh_routes reads it: a tenant without a service gets the new default
        config = ctx.config = new
        alerts.set_rules(new.alerts)
        edge.options.default_instance = default_instance(new)
        requests.enabled = new.settings.request_metrics
        await refresh_routes()

    reloader = Reloader(supervisor, partial(load_config, opts.config), reloaded)
    ctx.extras["reload"] = reloader.reload
    ctx.extras["tasks"] = tasks

    def report(server: str, status: str) -> None:
        level = "info" if status == "online" else "error"
        hub.system(None, f"server {server} is {status}", level)
        alerts.node(server, status)
        log.log(logging.INFO if level == "info" else logging.WARNING,
                "server %s is %s", server, status)

    settings = config.settings
    try:
        async with trio.open_nursery() as outer:
            await outer.start(run_ingest, hub, store, ingest)
            async with trio.open_nursery() as timers:
                # Every background task runs contained (slum/tasks.py): an error is logged,
                # counted under the task's name and retried after a backoff, never the end of
                # this nursery.
                timers.start_soon(partial(
                    run_periodic, tasks, "retention",
                    partial(retain, store, settings.log_retention_days,
                            settings.log_max_mb * 1024 * 1024), RETENTION_INTERVAL_S))
                await timers.start(partial(run_periodic, tasks, "sampler", sampler.tick,
                                           SAMPLE_INTERVAL_S))
                await timers.start(alerts.run)
                timers.start_soon(partial(
                    run_periodic, tasks, "history", partial(_flush_history, store, sampler,
                                                            requests),
                    _until_next_minute, first_delay=True))
                timers.start_soon(partial(
                    run_periodic, tasks, "node checker",
                    partial(checker.check, store.read, store.write, refresh_routes, report),
                    checker.interval_s))
                async with trio.open_nursery() as procs:
                    await procs.start(supervisor.run, known)
                    await procs.start(reloader.run)  # also SIGHUP
                    async with trio.open_nursery() as front:
                        web_stop = trio.Event()
                        # The public port first: the one most likely taken. Requests for the
                        # web app wait in the sockets' backlogs until it accepts.
                        with _starting(f"cannot listen on {opts.host}:{opts.port}"):
                            listeners = await front.start(edge.serve, opts.host, opts.port)
                        with _starting(f"cannot serve the API on {control_path}"):
                            await front.start(_serve_web, ctx, control, edge_socket, web_stop)
                        port = listeners[0].getsockname()[1]
                        front.start_soon(partial(run_periodic, tasks, "routes", watch_routes,
                                                 ROUTES_POLL_S, first_delay=True))
                        ctx.public_port = port
                        # Everything loaded at start lives as long as slum: move it out of the
                        # collector's way, so a full collection under load scans only new
                        # objects (a full scan of ~200k objects was a 20+ ms pause).
                        gc.collect()
                        gc.freeze()
                        ready(Running(port, str(control_path), supervisor, store, hub, edge,
                                      requests, sampler, reaped, list(config.warnings), tasks))
                        await _wait_for_signal()
                        log.info("stopping: edge and web first, then %d instances",
                                 len(supervisor.instances))
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
        _close_control_socket(control, control_path, control_inode)
        # Hypercorn may have closed the edge's socket already: each step on its own.
        for step in (edge_socket.close, partial(shutil.rmtree, edge_dir)):
            with contextlib.suppress(OSError):
                step()


def _close_control_socket(sock: socket.socket, path: Path, inode: int) -> None:
    # Hypercorn closes the descriptor it was given, so closing the socket object again fails
    # with EBADF: that must not keep the file from being removed. Removed only while it is
    # still ours (same inode), never a socket another slum has bound since.
    with contextlib.suppress(OSError):
        sock.close()
    with contextlib.suppress(OSError):
        if path.stat().st_ino == inode:
            path.unlink()


def _until_next_minute() -> float:
    now = time.time()
    return 60.5 - now % 60


async def _flush_history(store: Store, sampler: Sampler, requests: RequestMetrics) -> None:
    """Just after a minute ends: that minute's min/avg/max of every series (run once a minute
    by run_periodic; a retry after an error writes the same minute, once)."""
    now = int(time.time())
    minute = now - now % 60 - 60
    rows = minute_rows(minute, sampler, requests)
    if rows:
        await store.write(partial(write_history, rows=rows))


async def _wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def _serve_web(ctx: WebContext, control: socket.socket, edge_socket: socket.socket,
                     stop: trio.Event, *,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The web app on its two sockets, loaded when the first connection waits on either.

    Quart and Hypercorn are ~17 MB of RSS that a node nobody asks does not need (specs/
    performance.md). Both sockets listen already, so that first connection waits in the backlog
    while they load (off the loop, ~0.3 s) and is then served. The control socket's server starts
    first: it runs the app's start-up; the edge's socket answers its lifespan itself."""
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
        await servers.start(_hypercorn, Listener(app, trusted=True), control, stop)
        await servers.start(_hypercorn, Listener(app, trusted=False), edge_socket, stop)


def _import_web() -> None:
    import hypercorn.trio  # noqa: F401

    import slum.web.create_app  # noqa: F401


async def _hypercorn(app: Any, sock: socket.socket, stop: trio.Event, *,
                     task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve as hyper_serve

    hc = HyperConfig()
    hc.bind = [f"fd://{sock.fileno()}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 1.0
    hc.keep_alive_timeout = 75.0
    await hyper_serve(app, hc, shutdown_trigger=stop.wait, task_status=task_status)


def _only_service(config: cfg.Config) -> str | None:
    if config.default_service:
        return config.default_service
    if len(config.services) == 1:
        return next(iter(config.services))
    return None
