"""What slum knows about one instance: its service, its state and the counters people read."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from slum.config import Service
from slum.supervisor.limits import InstanceCgroup
from slum.supervisor.states import SERVING, State, can_move

# Failures within restart_window that make a loop: the second crash in a row is a loop, one crash
# is an accident. A process that then stays up this long has left the loop.
CRASH_LOOP_FAILURES = 2
CRASH_LOOP_SETTLE_S = 30.0
CRASH_LOOPING = "crash-looping"


@dataclass(frozen=True, slots=True)
class Transition:
    ts: float
    state: str
    reason: str | None


class Instance:
    def __init__(self, service: Service, name: str) -> None:
        self.service = service
        self.name = name
        self.id = f"{service.name}:{name}"
        self.state = State.STOPPED
        self.want_running = False
        self.reason: str | None = None
        self.health = "unknown"
        self.port: int | None = None
        # Set when the app listens on its unix socket (SOCKET_PATH) rather than on PORT.
        self.unix_path: str | None = None
        # Share of `{service}.{domain}` traffic (tenement's 0-100; 0 = none).
        self.weight = 100
        self.storage_bytes: int | None = None
        self.pid: int | None = None
        self.started_at: float | None = None
        self.restarts = 0
        self.recent_restarts: deque[float] = deque()
        self.wakes = 0
        self.held = 0
        self._last_exit: int | None = None
        # The last known exit code survives the next start (last_exit is reset then), so the
        # dashboard can say why a restarted instance went down.
        self.last_exit_code: int | None = None
        self.previous_status = self.state.value
        self.last_reason: str | None = None  # survives the next start, like last_exit_code
        # Activity, in trio time: the idle timer reads these; a request's lease writes them.
        self.last_activity = 0.0
        self.streams = 0
        self.history: deque[Transition] = deque(maxlen=50)
        self._changed = trio.Event()
        self._wanted = trio.Event()
        self.restart_requested = False
        # An operator's stop of an instance at rest (failed, sleeping): its runner moves it.
        self.stop_requested = False
        # The running process's cgroup (the sampler reads it), and the kernel's OOM kills in all
        # of this instance's runs (read from the cgroup's event counter at each exit).
        self.cgroup: InstanceCgroup | None = None
        self.oom_kills = 0
        self.on_change: Callable[[Instance, State, State], None] | None = None

    @property
    def serving(self) -> bool:
        return self.state in SERVING

    @property
    def last_exit(self) -> int | None:
        return self._last_exit

    @last_exit.setter
    def last_exit(self, code: int | None) -> None:
        self._last_exit = code
        if code is not None:
            self.last_exit_code = code

    @property
    def crash_looping(self) -> bool:
        """Derived, not a state of the machine: the runner prunes recent_restarts to the
        restart_window at each crash, so a backoff with one restart behind it is the second
        failure in the window; the loop ends when the process stays up CRASH_LOOP_SETTLE_S."""
        if self.state not in SERVING and self.state not in (State.BACKOFF, State.STARTING):
            return False
        failures = len(self.recent_restarts) + (1 if self.state is State.BACKOFF else 0)
        if failures < CRASH_LOOP_FAILURES:
            return False
        if self.state in SERVING and self.started_at is not None:
            return time.time() - self.started_at < CRASH_LOOP_SETTLE_S
        return True

    @property
    def status(self) -> str:
        """The state people read: the machine's state, or crash-looping while it loops."""
        return CRASH_LOOPING if self.crash_looping else self.state.value

    def move(self, new: State, reason: str | None = None) -> State:
        old = self.state
        self.previous_status = self.status
        if not can_move(old, new):
            raise RuntimeError(f"{self.id}: illegal transition {old} -> {new}")
        self.state = new
        self.reason = reason
        if reason:
            self.last_reason = reason
        self.history.append(Transition(time.time(), new.value, reason))
        changed, self._changed = self._changed, trio.Event()
        changed.set()
        if self.on_change is not None:
            self.on_change(self, old, new)
        return old

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def want(self, running: bool) -> None:
        self.want_running = running
        wanted, self._wanted = self._wanted, trio.Event()
        wanted.set()

    async def wait_wanted(self) -> None:
        await self._wanted.wait()

    def touch(self) -> None:
        self.last_activity = trio.current_time()

    def storage(self) -> dict[str, Any]:
        """Data dir usage against storage_quota_mb: a warning past 80% and past 100%."""
        quota_mb = self.service.storage_quota_mb
        quota = quota_mb * 1024 * 1024 if quota_mb else None
        used = self.storage_bytes
        warning = None
        if quota and used is not None:
            if used >= quota:
                warning = f"storage over quota: {used / 2**20:.1f} of {quota_mb} MB"
            elif used >= quota * 0.8:
                warning = f"storage at {used * 100 // quota}% of {quota_mb} MB"
        return {"storage_bytes": used, "storage_quota_bytes": quota, "storage_warning": warning}
