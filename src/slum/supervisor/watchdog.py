"""A watchdog that kills slum's children when slum dies, however it dies.

slum starts one small process at start and tells it, over a pipe, each process group it starts
and stops ("+PGID", "-PGID"). When the pipe reaches end-of-file (slum exited, crashed or was
SIGKILLed: the kernel closes slum's end either way) the watchdog SIGKILLs every group still
listed, then exits. A clean shutdown stops the children first, so the list is empty by then.
It is single-threaded and ignores SIGINT/SIGTERM (it lives in its own session), so it outlasts
slum for exactly as long as that takes. The process groups recorded in the database stay the
second line of defence: reaped on the next start if even the watchdog was killed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import IO

log = logging.getLogger("slum.watchdog")
COMMAND = "_watchdog"


def run() -> None:
    """The watchdog itself (`slum _watchdog`): standard library only, nothing else imported."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        text = line.strip()
        if text[:1] == b"+":
            groups.add(int(text[1:]))
        elif text[:1] == b"-":
            groups.discard(int(text[1:]))
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Watchdog:
    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._pipe: IO[bytes] | None = None

    def start(self) -> None:
        if getattr(sys, "frozen", False):
            argv = [sys.executable, COMMAND]
            # A second copy of a one-file binary must unpack its own folder: the parent's is
            # removed when the parent exits, and this one must outlive it.
            env = {**os.environ, "PYINSTALLER_RESET_ENVIRONMENT": "1"}
        else:
            argv = [sys.executable, "-m", "slum", COMMAND]
            env = dict(os.environ)
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
        except OSError as e:
            log.warning("no watchdog (%s): children of a killed slum are reaped at next start", e)
            return
        self._pipe = self._proc.stdin
        # Fed from the event loop: a watchdog that stopped reading must not block slum. A full
        # pipe fails the write instead, and the reap at the next start is the fallback.
        if self._pipe is not None:
            os.set_blocking(self._pipe.fileno(), False)

    def _send(self, message: str) -> None:
        if self._pipe is None:
            return
        try:
            self._pipe.write(message.encode())
            self._pipe.flush()
        except OSError:
            log.warning("the watchdog is gone: children of a killed slum are reaped at next start")
            self._pipe = None

    def watch(self, pgid: int) -> None:
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        self._send(f"-{pgid}\n")

    def close(self) -> None:
        """After a clean shutdown: nothing is left to kill; let it go."""
        if self._pipe is not None:
            try:
                self._pipe.close()
            except OSError:
                pass
            self._pipe = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
