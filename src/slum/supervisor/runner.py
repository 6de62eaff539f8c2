"""One task per instance: start the process, watch it, restart it per policy, stop it politely.

The task awaits the process itself, so an exit is noticed at once (not after failed health
checks), and one instance's backoff delay never holds up another's checks or idle stop.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Protocol

import trio

from slum.config import Settings
from slum.events import Hub, OutputStream
from slum.supervisor import health, isolation
from slum.supervisor.cgroups import Cgroups
from slum.supervisor.instance import Instance
from slum.supervisor.limits import InstanceCgroup, LimitError, Limits
from slum.supervisor.process import ChildProcess, spawn
from slum.supervisor.states import State

DEGRADED_AFTER = 1
UNHEALTHY_AFTER = 3
RESTART_AFTER = 5
DRAIN_S = 0.5
DRAIN_MAX_S = 10.0
READ_CHUNK = 32 * 1024  # with the hub's per-pipe queue, what a SIGKILL of slum can lose
OOM_POLL_S = 2.0


class Cause(Enum):
    """Why a run of the process ended: what the restart policy decides on (the words people
    read are Ending.why)."""

    NO_PORT = "no free port"  # slum's own shortage: a failed start under the restart policy
    CANNOT_START = "cannot start"  # the command, its cgroup or isolation: will not fix itself
    EXITED = "exited"  # on its own, or killed by a signal from outside
    OUT_OF_MEMORY = "out of memory"  # the kernel's OOM killer, told by the cgroup's counter
    NOT_READY = "not ready"  # no readiness within startup_timeout
    UNHEALTHY = "unhealthy"  # RESTART_AFTER failed health checks in a row
    ASKED = "asked"  # a stop, an idle stop or a restart


@dataclass(frozen=True, slots=True)
class Ending:
    cause: Cause
    why: str
    code: int | None = None  # the exit code; None if there was no process

    @property
    def asked(self) -> bool:
        return self.cause is Cause.ASKED


class Journal(Protocol):
    """Where the supervisor writes down what must survive a crash of slum (on the store:
    store/processes.py: StoreJournal; the supervisor does not import the store)."""

    async def process_started(self, inst: Instance, pid: int, started_at: float) -> None: ...

    async def process_exited(self, inst: Instance, pid: int) -> None: ...


class Ports:
    """Free ports on 127.0.0.1 within [settings] port_range, checked with the OS (a bind), never
    handed to two instances at once. Ports outside the OS's ephemeral range come first: one
    inside it can be taken by an outgoing connection (slum's own, to an instance) between the
    check and the app's bind, and the app then dies with EADDRINUSE (seen under load with
    tenement's default 30000-40000, which overlaps Linux's 32768-60999)."""

    def __init__(self, low: int = 30000, high: int = 40000) -> None:
        self._taken: set[int] = set()
        self.low, self.high = low, high
        eph_low, eph_high = ephemeral_range()
        every = range(low, high + 1)
        self._quiet = [p for p in every if not eph_low <= p <= eph_high]
        self._busy = [p for p in every if eph_low <= p <= eph_high]

    def take(self) -> int:
        for ports in (self._quiet, self._busy):
            port = self._take_from(ports)
            if port is not None:
                return port
        raise OSError(f"no free port on 127.0.0.1 in {self.low}-{self.high} ([settings] port_range)")

    def _take_from(self, ports: list[int]) -> int | None:
        # Random picks find a free port at once in a mostly free range; a scan covers the rest.
        if not ports:
            return None
        start = random.randrange(len(ports))
        n = len(ports)
        # Made as they are tried: a list of the whole range cost every start 0.4 ms.
        picks = (random.choice(ports) for _ in range(min(n, 32)))
        scan = (ports[(start + i) % n] for i in range(n))
        for port in itertools.chain(picks, scan):
            if port in self._taken:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            self._taken.add(port)
            return port
        return None

    def release(self, port: int | None) -> None:
        self._taken.discard(port)  # type: ignore[arg-type]


def ephemeral_range() -> tuple[int, int]:
    """The ports the OS picks for outgoing connections (Linux's default when unreadable)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def child_environ() -> dict[str, str]:
    """The environment a child starts from: slum's own, minus what a frozen slum adds, so a Python
    app runs with the system's Python and libraries, not the ones unpacked with slum."""
    env = dict(os.environ)
    if getattr(sys, "frozen", False):
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        if original is not None:
            env["LD_LIBRARY_PATH"] = original
        else:
            env.pop("LD_LIBRARY_PATH", None)
    for key in list(env):
        if key.startswith(("_PYI_", "_MEIPASS", "PYINSTALLER_")):
            del env[key]
    return env


@dataclass
class Context:
    settings: Settings
    hub: Hub
    journal: Journal
    ports: Ports
    cgroups: Cgroups | None = None


def backoff_s(settings: Settings, attempt: int) -> float:
    """Exponential with jitter: base * 2^(attempt-1), capped, then a random 50-100% of it."""
    delay_ms = min(settings.backoff_base_ms * 2.0 ** max(attempt - 1, 0), settings.backoff_max_ms)
    return delay_ms * random.uniform(0.5, 1.0) / 1000


async def supervise(inst: Instance, ctx: Context) -> None:
    while True:
        if not inst.want_running:
            if inst.stop_requested:
                inst.stop_requested = False
                if inst.state in (State.FAILED, State.SLEEPING):
                    # FAILED -> STOPPED, SLEEPING -> STOPPED (an operator's stop of one at rest)
                    inst.move(State.STOPPED, "stopped")
            await inst.wait_wanted()
            continue
        ending = await run_once(inst, ctx)
        why = ending.why
        if ending.cause is Cause.CANNOT_START:
            inst.want_running = False
            # STARTING -> FAILED: a missing or non-executable command will not fix itself
            inst.move(State.FAILED, why)
            continue
        if not inst.want_running:
            if inst.reason == "idle":
                # STOPPING -> SLEEPING (idle: the next request wakes it)
                inst.move(State.SLEEPING, "idle")
            elif inst.state is not State.STOPPED:
                # STOPPING -> STOPPED (stop asked, shutdown)
                inst.move(State.STOPPED, "stopped")
            await _forget_storage(inst, ctx)
            continue
        if inst.restart_requested or ending.asked:
            # A restart, or a stop that was wanted undone before the process was gone (a request
            # woke it during an idle stop): start again at once. It did not fail, so neither the
            # restart policy nor a backoff applies.
            if inst.restart_requested:
                inst.restarts += 1
            inst.restart_requested = False
            continue
        policy = inst.service.restart
        if policy == "never" or (
            policy == "on-failure" and ending.cause is Cause.EXITED and ending.code == 0
        ):
            inst.want_running = False
            # RUNNING -> STOPPED (exited, and the policy says leave it)
            inst.move(State.STOPPED, why)
            await _forget_storage(inst, ctx)
            continue
        window = ctx.settings.restart_window
        now = time.monotonic()
        while inst.recent_restarts and inst.recent_restarts[0] < now - window:
            inst.recent_restarts.popleft()
        if len(inst.recent_restarts) >= ctx.settings.max_restarts:
            inst.want_running = False
            reason = f"{why}; gave up after {len(inst.recent_restarts)} restarts within {window:g}s"
            # BACKOFF -> FAILED (too many restarts): an operator must act
            inst.move(State.FAILED, reason)
            ctx.hub.system(inst.id, f"failed: {reason}", "error")
            continue
        delay = backoff_s(ctx.settings, len(inst.recent_restarts) + 1)
        inst.move(State.BACKOFF, why)
        ctx.hub.system(inst.id, f"{why}; restarting in {delay:.2f}s", "warn")
        with trio.move_on_after(delay):
            while inst.want_running:
                await inst.wait_wanted()
        if not inst.want_running:
            inst.move(State.STOPPED, "stopped")
            continue
        inst.recent_restarts.append(time.monotonic())
        inst.restarts += 1


async def _forget_storage(inst: Instance, ctx: Context) -> None:
    """storage_persist = false: the instance's data dir lives only as long as its process."""
    if inst.service.storage_persist:
        return
    data_dir = ctx.settings.data_dir / inst.service.name / inst.name
    with trio.CancelScope(shield=True):
        await trio.to_thread.run_sync(lambda: shutil.rmtree(data_dir, ignore_errors=True))
    inst.storage_bytes = None
    ctx.hub.system(inst.id, f"deleted its data dir {data_dir} (storage_persist = false)")


def _prepare_socket(path: str) -> None:
    """The app binds SOCKET_PATH itself: give it a private parent and no stale file to trip on."""
    parent = os.path.dirname(path)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


async def run_once(inst: Instance, ctx: Context) -> Ending:
    """Start the process and return when it is gone, with why it ended."""
    svc = inst.service
    try:
        port = ctx.ports.take()
    except OSError as e:
        # Out of descriptors (EMFILE) is passing: a failed start under the restart policy and
        # its backoff, never an error that ends the supervisor.
        why = f"no free port: {e.strerror or e}"
        ctx.hub.system(inst.id, why, "error")
        return Ending(Cause.NO_PORT, why)
    inst.port, inst.health, inst.last_exit = port, "unknown", None
    inst.move(State.STARTING, None)
    data_dir = ctx.settings.data_dir / svc.name / inst.name
    env = child_environ()
    root = ctx.settings.data_dir
    env.update(svc.environment(instance_id=inst.name, port=port, data_dir=root))
    sock = svc.socket_path(inst.name, root)
    env["PORT"] = str(port)
    env["SOCKET_PATH"] = sock
    env["SLUM_INSTANCE"] = inst.id
    env["SLUM_DATA_DIR"] = str(data_dir)
    cgroup: InstanceCgroup | None = None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        _prepare_socket(sock)
        stage = root / ".slum-ns"
        if svc.isolation == "namespace":
            stage.mkdir(exist_ok=True)
        prefix = isolation.prefix(
            svc.isolation,
            tmp_mb=svc.memory_limit_mb,
            keep=(root, svc.workdir, Path(sock).parent),
            stage=stage,
        )
        cgroup = await _make_cgroup(inst, ctx)
        if cgroup is not None:
            prefix = [*cgroup.join_argv(), *prefix]
        child = await spawn(
            svc.argv(instance_id=inst.name, port=port, data_dir=root),
            cwd=str(svc.workdir),
            env=env,
            prefix=prefix,
        )
    except (OSError, LimitError, isolation.IsolationError) as e:
        ctx.ports.release(port)
        inst.port = None
        if cgroup is not None:
            await trio.to_thread.run_sync(_dispose, cgroup)
        why = (
            f"cannot start: {e}"
            if not isinstance(e, OSError)
            else f"cannot start {svc.command[0]!r}: {e.strerror or e}"
        )
        ctx.hub.system(inst.id, why, "error")
        return Ending(Cause.CANNOT_START, why)
    inst.cgroup = cgroup
    inst.pid, inst.started_at = child.pid, time.time()
    inst.touch()
    ctx.hub.system(inst.id, f"started pid {child.pid} on port {port}")
    cause, why = Cause.EXITED, "exited"
    try:
        readers = (_Reader(), _Reader())
        async with trio.open_nursery() as pumps:
            # Beside readiness polling, not before it: the database write can wait behind a log
            # batch, and a wake should cost little more than the app's own start.
            pumps.start_soon(_journal_started, inst, ctx, child)
            budget = LogBudget(ctx.settings.log_rate_kb * 1024, partial(_throttled, inst, ctx))
            pumps.start_soon(_pump, ctx.hub.output(inst.id, "stdout"), child.stdout, readers[0], budget)
            pumps.start_soon(_pump, ctx.hub.output(inst.id, "stderr"), child.stderr, readers[1], budget)
            try:
                cause, why = await _watch(inst, ctx, child)
            finally:
                # Also at shutdown (a cancel): stop the process, then read its pipes to the end,
                # so what it said last (a SIGTERM handler's goodbye) is stored.
                with trio.CancelScope(shield=True):
                    # A stop is bounded by stop_grace_s: what the app says while it stops (and
                    # what is left in its pipes) is read at once, not at log_rate_kb, so its
                    # goodbye is not cut short by a SIGKILL.
                    budget.lift()
                    await _end(inst, ctx, child)
                    if cgroup is not None:
                        # What left the process group is still in the cgroup, holding the pipes
                        # open.
                        await trio.to_thread.run_sync(cgroup.kill)
                    if not await _drain(readers):
                        ctx.hub.system(
                            inst.id,
                            "output pipes still open after the process group "
                            "ended (a process left the group?): stopped reading them",
                            "warn",
                        )
                    for reader in readers:
                        reader.scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await _end(inst, ctx, child)
            ooms = 0
            if cgroup is not None:
                ooms = await trio.to_thread.run_sync(_dispose, cgroup)
                inst.cgroup = None
            ctx.ports.release(port)
            inst.pid, inst.port, inst.health, inst.unix_path = None, None, "unknown", None
            with contextlib.suppress(OSError):
                os.unlink(sock)
            await ctx.journal.process_exited(inst, child.pid)
    code = child.returncode
    inst.last_exit = code
    if ooms:
        _tell_oom(inst, ctx, ooms)
    if (
        cause is Cause.EXITED
        and cgroup is not None
        and cgroup.oom_counted
        and (ooms or code in (-signal.SIGKILL, 128 + signal.SIGKILL))
    ):
        # The kernel's own counter, not a guess from the signal: an OOM kill at the end (or a
        # SIGKILL in a run with OOM kills; 137 from a namespace's init) is what ended it. A
        # worker killed earlier, told by _oom_watch, does not name a later exit of another cause.
        cause, why = Cause.OUT_OF_MEMORY, f"killed: out of memory ({_limit_words(inst)})"
    if cause is Cause.EXITED:
        why = (
            f"exited with code {code}"
            if code is not None and code >= 0
            else (f"killed by signal {-code}" if code is not None else "exited")
        )
    ctx.hub.system(inst.id, f"pid {child.pid} {why}", "info" if code == 0 else "warn")
    return Ending(cause, why, code)


def _limits(inst: Instance) -> Limits:
    svc = inst.service
    return Limits(svc.memory_limit_mb, svc.memory_swap_max, svc.cpu_shares, svc.pids_max)


async def _make_cgroup(inst: Instance, ctx: Context) -> InstanceCgroup | None:
    """The instance's cgroup with its limits set; a limit that cannot be applied refuses the
    start (never a run without it)."""
    limits = _limits(inst)
    if ctx.cgroups is None:
        wanted = limits.wanted()
        if wanted:
            raise LimitError(f"{sorted(wanted)[0]} cannot be applied: no cgroup support here")
        return None
    # In the loop, not a worker thread: a few mkdirs and writes in cgroupfs (memory, no disk)
    # take 0.2 ms, the hop to a thread and back took 1 ms of every wake.
    return ctx.cgroups.create(inst.service.name, inst.name, limits)


def _limit_words(inst: Instance) -> str:
    mb = inst.service.memory_limit_mb
    return f"limit {mb} MB" if mb else "no limit of its own"


def _tell_oom(inst: Instance, ctx: Context, kills: int) -> None:
    inst.oom_kills += kills
    ctx.hub.system(
        inst.id,
        f"out of memory: the kernel killed {kills} process"
        f"{'es' if kills > 1 else ''} of this instance ({_limit_words(inst)})",
        "error",
    )


async def _oom_watch(inst: Instance, ctx: Context, cgroup: InstanceCgroup) -> None:
    """A worker killed at the limit while the app runs on is told within OOM_POLL_S, not at the
    app's exit."""
    while True:
        await trio.sleep(OOM_POLL_S)
        kills = await trio.to_thread.run_sync(cgroup.new_oom_kills)
        if kills:
            _tell_oom(inst, ctx, kills)


def _dispose(cgroup: InstanceCgroup) -> int:
    """After the process group ended: kill what is left in the cgroup and remove it. Returns the
    OOM kills of this run not told yet."""
    ooms = cgroup.new_oom_kills()
    cgroup.kill()
    cgroup.remove()
    return ooms


async def _journal_started(inst: Instance, ctx: Context, child: ChildProcess) -> None:
    with trio.CancelScope(shield=True):
        await ctx.journal.process_started(inst, child.pid, child.started_at)


async def _end(inst: Instance, ctx: Context, child: ChildProcess) -> None:
    if child.returncode is None:
        if inst.state is not State.STOPPING:
            inst.move(State.STOPPING, inst.reason)
        await child.stop(ctx.settings.stop_grace_s)
    else:
        child.signal_group(9)  # grandchildren of a process that exited on its own


async def _watch(inst: Instance, ctx: Context, child: ChildProcess) -> tuple[Cause, str]:
    """Race the process's exit against readiness, health, idleness and operator requests.
    Returns why the process is to end."""
    outcome = (Cause.EXITED, "exited")
    async with trio.open_nursery() as n:

        def end(cause: Cause, why: str) -> None:
            nonlocal outcome
            outcome = (cause, why)
            n.cancel_scope.cancel()

        async def exit_watch() -> None:
            await child.wait()
            end(Cause.EXITED, "exited")

        async def health_watch() -> None:
            svc = inst.service
            with trio.move_on_after(svc.startup_timeout) as scope:
                inst.unix_path = await health.wait_ready(
                    inst.port or 0, svc.health, unix=svc.socket_path(inst.name, ctx.settings.data_dir)
                )
            if scope.cancelled_caught:
                end(Cause.NOT_READY, f"not ready within startup_timeout ({svc.startup_timeout:g}s)")
                return
            inst.health = "healthy"
            # STARTING -> HEALTHY
            inst.move(State.HEALTHY, None)
            ctx.hub.system(inst.id, "healthy")
            failures = 0
            while True:
                await trio.sleep(ctx.settings.health_check_interval)
                ok = await health.check(inst.port or 0, svc.health, inst.unix_path)
                failures = 0 if ok else failures + 1
                new = (
                    State.HEALTHY
                    if ok
                    else State.UNHEALTHY
                    if failures >= UNHEALTHY_AFTER
                    else State.DEGRADED
                )
                inst.health = "healthy" if ok else "unhealthy"
                if new is not inst.state:
                    inst.move(new, None if ok else f"{failures} failed health checks")
                    ctx.hub.system(inst.id, f"health: {new.value}", "info" if ok else "warn")
                if failures >= RESTART_AFTER:
                    end(Cause.UNHEALTHY, f"unhealthy: {failures} failed health checks")
                    return

        async def control_watch() -> None:
            while inst.want_running and not inst.restart_requested:
                await inst.wait_wanted()
            end(Cause.ASKED, "restart requested" if inst.want_running else (inst.reason or "stop requested"))

        async def idle_watch() -> None:
            timeout = inst.service.idle_timeout
            # Starting is not idling: a start slower than idle_timeout would be stopped before it
            # ever served. Count from readiness (or from the last activity, if later).
            while not inst.serving:
                await inst.wait_changed()
            ready_at = trio.current_time()
            while True:
                idle_for = trio.current_time() - max(inst.last_activity, ready_at)
                if inst.streams == 0 and idle_for >= timeout and inst.held == 0:
                    break
                await trio.sleep(max(timeout - idle_for, 0.05) if inst.streams == 0 else 0.5)
            ctx.hub.system(inst.id, f"idle for {timeout:g}s, stopping")
            inst.reason = "idle"
            inst.want(False)
            # End the run here rather than through control_watch: a wake between the two would
            # undo the want and leave this process running with no idle watch at all.
            end(Cause.ASKED, "idle")

        n.start_soon(exit_watch)
        if inst.cgroup is not None and inst.cgroup.dirs:
            n.start_soon(_oom_watch, inst, ctx, inst.cgroup)
        n.start_soon(health_watch)
        n.start_soon(control_watch)
        if inst.service.idle_timeout > 0:
            n.start_soon(idle_watch)
    return outcome


class _Reader:
    """How far one pump got: at EOF, or since when it has waited on an empty pipe."""

    def __init__(self) -> None:
        self.eof = trio.Event()
        self.waiting_since: float | None = None
        # Shielded: a pump outlives a cancel of its instance's task until _drain is done with it.
        self.scope = trio.CancelScope(shield=True)


async def _drain(readers: tuple[_Reader, ...]) -> bool:
    """After the process group ended, let the pumps read its pipes to the end: a child that
    wrote fast and exited can leave a pipe full, and a slow consumer (back-pressure) a lot more
    behind it. Give up on a pipe that stays empty for DRAIN_S (a process that left the group holds
    it open), and after DRAIN_MAX_S in all. Returns whether every pipe reached EOF."""
    start = trio.current_time()
    with trio.move_on_after(DRAIN_MAX_S):
        for reader in readers:
            while not reader.eof.is_set():
                since = reader.waiting_since
                # A pump that waited long on a quiet process may not have seen the EOF yet.
                left = DRAIN_S if since is None else max(since, start) + DRAIN_S - trio.current_time()
                if left <= 0:
                    return False
                with trio.move_on_after(left):
                    await reader.eof.wait()
        return True
    return False


class LogBudget:
    """What one instance may write to stdout and stderr together: `log_rate_kb` a second, with
    BURST_S seconds of it at once (a long stack trace, a start-up banner). Past it the pumps
    wait before their next read, the pipes fill, and the app's own writes block until slum has
    taken in what came before: a flooding app slows itself, not the edge or the others, and no
    line is dropped."""

    BURST_S = 4.0

    def __init__(self, rate: float, on_throttle: Callable[[], None] | None = None) -> None:
        self.rate = rate
        self.tokens = self.capacity = rate * self.BURST_S
        self.at = trio.current_time()
        self.on_throttle = on_throttle
        self._lifted = trio.Event()

    async def take(self, size: int) -> None:
        if not self.rate:
            return
        now = trio.current_time()
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate) - size
        self.at = now
        if self.tokens < 0:
            if self.on_throttle is not None:
                self.on_throttle()
                self.on_throttle = None  # told once a run
            with trio.move_on_after(-self.tokens / self.rate):
                await self._lifted.wait()

    def lift(self) -> None:
        """No limit from now on, waiting readers included."""
        self.rate = 0
        self._lifted.set()


def _throttled(inst: Instance, ctx: Context) -> None:
    ctx.hub.system(
        inst.id,
        f"output over log_rate_kb ({ctx.settings.log_rate_kb} KiB/s): its writes wait "
        "until slum has taken in what came before (nothing is dropped)",
        "warn",
    )


async def _pump(
    out: OutputStream, stream: trio.lowlevel.FdStream, reader: _Reader, budget: LogBudget | None = None
) -> None:
    """Move bytes from a pipe to the hub, nothing more: lines, levels and stack traces are made
    in ingestion's thread, so a flooding child costs the event loop one wake-up per read."""
    try:
        with reader.scope:
            await _pump_until_eof(out, stream, reader, budget)
    except (trio.ClosedResourceError, trio.BrokenResourceError):
        return
    finally:
        out.close()
        with trio.CancelScope(shield=True):
            await stream.aclose()


async def _pump_until_eof(
    out: OutputStream, stream: trio.lowlevel.FdStream, reader: _Reader, budget: LogBudget | None
) -> None:
    while True:
        reader.waiting_since = trio.current_time()
        chunk = await stream.receive_some(READ_CHUNK)
        reader.waiting_since = None
        if not chunk:
            reader.eof.set()
            return
        await out.send(chunk)
        if budget is not None:
            await budget.take(len(chunk))
