"""What `serve` does once, before and after the nursery: the config, the sockets, the reap of what a
killed slum left, the one line a failed start becomes, and waiting for the signal to stop."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import trio

from slum import config as cfg
from slum.errors import SlumError
from slum.events import Hub
from slum.proxy.edge import Edge, EdgeOptions
from slum.proxy.trust import RouterTrust
from slum.store import processes
from slum.store.db import Store, describe_error
from slum.supervisor import Supervisor
from slum.supervisor.cgroups import Cgroups, owner_key
from slum.supervisor.process import owner_alive, reap_leftovers
from slum.supervisor.watchdog import Watchdog
from slum.tasks import Tasks
from slum.telemetry.requests import RequestMetrics
from slum.telemetry.sampler import Sampler

log = logging.getLogger("slum")
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
    registry: str | None = None  # overrides [settings] registry: etcd://HOST:PORT[,...]


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


class StartupError(SlumError):
    """slum could not start: one line on stderr and exit 1 (a bad config or usage exits 2)."""


def load_config(path: str | None, strict: bool = False, data_dir: str | None = None) -> cfg.Config:
    found = path if path is not None else cfg.find_config()
    if found is not None:
        return cfg.load(found, strict=strict, data_dir=data_dir)
    return cfg.empty_config(Path(data_dir).absolute() if data_dir else None)


def default_instance(config: cfg.Config) -> str | None:
    """What the bare domain serves: the default service's first instance."""
    service = config.default_service
    if service is None:
        return None
    names = config.instances.get(service)
    return f"{service}:{names[0] if names else 'default'}"


def edge_options(
    settings: cfg.Settings,
    config: cfg.Config,
    trust_router: RouterTrust,
    trusted_proxy: Callable[[str], bool],
) -> EdgeOptions:
    return EdgeOptions(
        max_body=settings.max_body_mb * 1024 * 1024,
        default_instance=default_instance(config),
        connect_timeout_s=settings.connect_timeout_s,
        response_timeout_s=settings.response_timeout_s,
        idle_timeout_s=settings.upstream_idle_timeout_s,
        trust_router=trust_router,
        trusted_proxy=trusted_proxy,
        header_timeout_s=settings.header_timeout,
        keepalive_timeout_s=settings.keepalive_timeout,
        body_timeout_s=settings.body_timeout,
        max_connections=settings.max_connections,
    )


def reap(store: Store) -> int:
    """Kill what a SIGKILLed slum left, and forget it. Only groups whose recorded owner is dead:
    a live slum (say, one serving the database this one was copied from) keeps its children."""
    orphans = [
        r for r in store.write_sync(processes.processes) if not owner_alive(r.owner_pid, r.owner_started)
    ]
    reaped = reap_leftovers([(r.pid, r.pgid, r.started_at) for r in orphans])
    store.write_sync(lambda c: processes.forget_processes(c, orphans))
    if reaped:
        log.warning("reaped %d processes left by a slum that did not stop cleanly", reaped)
    return reaped


# --- sockets ---
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
        directory = Path(
            tempfile.mkdtemp(prefix="slum-", dir=runtime if runtime and Path(runtime).is_dir() else None)
        )
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
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700


@dataclass
class Sockets:
    """The web app's two unix sockets: the operator's control socket, the edge's own."""

    control: socket.socket
    control_path: Path
    edge: socket.socket
    edge_dir: Path

    @classmethod
    def bind(cls, control_path: Path) -> Sockets:
        # First, before anything is reaped or started: is another slum serving this database?
        with starting(f"cannot bind the control socket {control_path}"):
            control = bind_control_socket(control_path)
        try:
            with starting(f"cannot bind the edge's socket beside {control_path}"):
                edge_dir, edge = bind_edge_socket(control_path)
        except BaseException:
            _close_control_socket(control, control_path, control_path.stat().st_ino)
            raise
        return cls(control, control_path, edge, edge_dir)

    @property
    def edge_path(self) -> str:
        return str(self.edge_dir / EDGE_SOCKET)

    @contextlib.contextmanager
    def held(self) -> Iterator[Sockets]:
        """Closes (and removes) both on the way out, whatever ended the run."""
        inode = self.control_path.stat().st_ino
        try:
            yield self
        finally:
            _close_control_socket(self.control, self.control_path, inode)
            # Hypercorn may have closed the edge's socket already: each step on its own.
            for step in (self.edge.close, lambda: shutil.rmtree(self.edge_dir)):
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


# --- the one line a failed start becomes ---
def leaf_error(e: BaseException) -> BaseException | None:
    """The one error that matters in what a nursery raised (cancellations are consequences)."""
    if not isinstance(e, BaseExceptionGroup):
        return e
    leaves = [leaf for sub in e.exceptions if (leaf := leaf_error(sub)) is not None]
    real = [leaf for leaf in leaves if not isinstance(leaf, trio.Cancelled)]
    chosen = real or leaves
    return chosen[0] if chosen else None


def startup_failure(e: BaseException, database: str) -> SlumError | None:
    """What a failure before slum is up becomes: one SlumError, or None to let it go on (a
    cancellation, an interrupt, a bug)."""
    leaf = leaf_error(e)
    if leaf is None or isinstance(leaf, trio.Cancelled | KeyboardInterrupt):
        return None
    if isinstance(leaf, SlumError):
        return leaf
    if isinstance(leaf, apsw.Error):
        return StartupError(describe_error(database, leaf))
    if isinstance(leaf, OSError):
        return StartupError(f"cannot start: {leaf}")
    return None


@contextlib.contextmanager
def starting(what: str) -> Iterator[None]:
    try:
        yield
    except BaseException as e:
        leaf = leaf_error(e)
        if isinstance(leaf, OSError):
            raise StartupError(f"{what}: {leaf.strerror or leaf}") from None
        raise


# --- running ---
async def wait_for_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def serve_web(
    app: Any,
    sock: socket.socket,
    stop: trio.Event,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The web app (Quart under Hypercorn) on one of its unix sockets, until `stop` is set."""
    from hypercorn.config import Config as HyperConfig
    from hypercorn.trio import serve as hyper_serve

    hc = HyperConfig()
    hc.bind = [f"fd://{sock.fileno()}"]
    hc.accesslog = None
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.graceful_timeout = 1.0
    hc.keep_alive_timeout = 75.0
    await hyper_serve(app, hc, shutdown_trigger=stop.wait, task_status=task_status)


async def process_guards(database: str, config: cfg.Config) -> tuple[Cgroups, Watchdog]:
    """The cgroups instances run in (what a killed slum left in them is killed first) and the
    watchdog that kills the children if slum dies; neither is started without services."""
    cgroups = Cgroups.detect(owner_key(database))
    watchdog = Watchdog()
    if config.services:
        log.info("%s", cgroups.describe())
        killed = await trio.to_thread.run_sync(cgroups.reap_leftovers)
        if killed:
            log.warning("killed %d processes left in the cgroups of a slum that was killed", killed)
        watchdog.start()
    return cgroups, watchdog
