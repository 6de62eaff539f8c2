"""One child process: spawned in its own session, watched through a pidfd, stopped as a group.

Children are forked from one long-lived thread with PR_SET_PDEATHSIG set: the kernel delivers that
signal when the *thread* that forked the child exits, so forking from trio's short-lived worker
threads would kill healthy children a few seconds later; one thread that lives as long as slum
makes the signal mean "slum died". Grandchildren do not inherit it: the watchdog (watchdog.py)
kills their groups when slum dies, and slum records each group in the database and reaps what
is left of it on the next start (see reap_leftovers).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import outcome
import psutil
import trio

T = TypeVar("T")
PR_SET_PDEATHSIG = 1
_libc: Any = None


def _child_setup() -> None:
    # Runs in the child between fork and exec: only async-signal-safe work.
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _Forker:
    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Callable[[Any], None]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _loop(self) -> None:
        while True:
            job, deliver = self._jobs.get()
            deliver(outcome.capture(job))

    async def call(self, job: Callable[[], T]) -> T:
        global _libc
        with self._lock:
            if self._thread is None:
                _libc = ctypes.CDLL(None, use_errno=True)
                self._thread = threading.Thread(target=self._loop, name="slum-forker", daemon=True)
                self._thread.start()
        token = trio.lowlevel.current_trio_token()
        task = trio.lowlevel.current_task()

        def deliver(result: Any) -> None:
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        self._jobs.put((job, deliver))
        # Forking takes a few ms and cannot be undone halfway, so it is not cancellable.
        result = await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.FAILED)
        return result  # type: ignore[no-any-return]


_forker = _Forker()


@dataclass
class ChildProcess:
    popen: subprocess.Popen[bytes]
    stdout: trio.lowlevel.FdStream
    stderr: trio.lowlevel.FdStream
    started_at: float  # psutil create_time, to recognise this process later
    _pidfd: int

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    async def wait(self) -> int:
        """Wait for exit without blocking the loop, and reap."""
        if self.popen.returncode is None:
            await trio.lowlevel.wait_readable(self._pidfd)
            self.popen.wait()  # exited already: waitpid returns at once
            os.close(self._pidfd)
        return self.popen.returncode  # type: ignore[return-value]

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def stop(self, grace_s: float) -> int:
        """SIGTERM to the group, SIGKILL after the grace period; grandchildren included."""
        if self.popen.returncode is None:
            self.signal_group(signal.SIGTERM)
            with trio.move_on_after(grace_s):
                await self.wait()
        self.signal_group(signal.SIGKILL)
        return await self.wait()


# util-linux's setpriv sets PR_SET_PDEATHSIG itself and then execs the command, so Popen needs no
# preexec_fn and can use vfork: no copy of slum's page tables on every start (~5 ms for a 50 MB
# slum, a good part of what a wake costs on top of the app's own start).
SETPRIV = shutil.which("setpriv")


def _check_executable(argv0: str, cwd: str, env: dict[str, str]) -> None:
    """Raise what Popen would raise for a missing or non-executable command (setpriv would only
    exit 127, which reads as a crash rather than a command that cannot run)."""
    if "/" in argv0:
        path = os.path.join(cwd, argv0)
        if not os.path.exists(path):
            raise FileNotFoundError(2, "No such file or directory", argv0)
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise PermissionError(13, "Permission denied", argv0)
    elif shutil.which(argv0, path=env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(2, "No such file or directory", argv0)


async def spawn(
    argv: list[str], *, cwd: str, env: dict[str, str], prefix: Sequence[str] = ()
) -> ChildProcess:
    """Start argv in its own session. `prefix` (a cgroup join, a namespace) runs first and execs
    argv in the same process, so pid, process group and PDEATHSIG are the app's."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()

    def fork() -> subprocess.Popen[bytes]:
        try:
            if SETPRIV is not None or prefix:
                _check_executable(argv[0], cwd, env)
            if SETPRIV is not None:
                # No preexec_fn: Popen can vfork.
                cmd, setup = [SETPRIV, "--pdeathsig", "KILL", "--", *prefix, *argv], None
            else:
                cmd, setup = [*prefix, *argv], _child_setup
            return subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                start_new_session=True,
                close_fds=True,
                preexec_fn=setup,
            )
        finally:
            os.close(out_w)
            os.close(err_w)

    try:
        popen = await _forker.call(fork)
    except BaseException:
        os.close(out_r)
        os.close(err_r)
        raise
    pidfd = os.pidfd_open(popen.pid)
    try:
        started = psutil.Process(popen.pid).create_time()
    except psutil.Error:
        started = 0.0
    return ChildProcess(popen, trio.lowlevel.FdStream(out_r), trio.lowlevel.FdStream(err_r), started, pidfd)


def owner_alive(pid: int | None, started: float | None) -> bool:
    """Is the slum recorded as (pid, start time) still running? A row without an owner comes
    from a slum that did not record one: its owner counts as gone."""
    if not pid or not started:
        return False
    try:
        proc = psutil.Process(pid)
        return bool(abs(proc.create_time() - started) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def reap_leftovers(records: Iterable[tuple[int, int, float]]) -> int:
    """Kill what survives of process groups a previous slum recorded as (pid, pgid, started_at).

    A group member counts only if it was created at or after the recorded start, so a reused pid
    or group id of an unrelated process is never touched. Returns the number of processes killed.
    """
    wanted = {pgid: started for _pid, pgid, started in records}
    if not wanted:
        return 0
    killed = 0
    for proc in psutil.process_iter(["pid", "create_time"]):
        try:
            pgid = os.getpgid(proc.pid)
        except (ProcessLookupError, PermissionError):
            continue
        started = wanted.get(pgid)
        if started is None or proc.pid == os.getpid():
            continue
        created = proc.info["create_time"] or 0.0
        if created + 0.01 >= started:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc.pid, signal.SIGKILL)
                killed += 1
    return killed
