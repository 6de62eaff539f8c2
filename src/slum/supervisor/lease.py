"""A request's hold on an instance: what the edge takes for each request it sends to one.

While a lease is held the instance counts one more stream (the idle timer does not stop it under
a long response) and its activity is touched at both ends. Entering wakes the instance if it
sleeps. `send` owns the one retry the edge may make: a connection refused by a process that has
just died, before the runner saw it exit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import trio

if TYPE_CHECKING:
    from slum.supervisor.instance import Instance
    from slum.supervisor.supervisor import Supervisor

T = TypeVar("T")
# How long a refused connection waits for the runner to notice that its process died.
RACE_WINDOW_S = 0.2


class Endpoint(NamedTuple):
    """Where the instance's process listens now; `pid` tells a new process on a reused port.
    A tuple, not a frozen dataclass: one is made per request, in about half the time."""

    port: int
    pid: int | None
    unix_path: str | None
    request_timeout: float | None  # None: the edge's own response timeout


class Lease:
    __slots__ = ("inst", "supervisor")

    def __init__(self, supervisor: Supervisor, inst: Instance) -> None:
        self.supervisor = supervisor
        self.inst = inst

    async def __aenter__(self) -> Lease:
        inst = self.inst
        inst.streams += 1
        inst.touch()
        if not inst.serving:
            try:
                await self.supervisor.wake(inst)
            except BaseException:
                self._release()
                raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._release()

    def _release(self) -> None:
        self.inst.streams -= 1
        self.inst.touch()

    async def send(self, call: Callable[[Endpoint], Awaitable[T]], refused: Callable[[Exception], bool]) -> T:
        """call(endpoint) on the serving process. If it fails with what `refused` says was
        refused before anything was sent, and the process turns out to have just died, wake the
        instance again and call once more."""
        inst = self.inst
        for attempt in (1, 2):
            if not inst.serving:
                await self.supervisor.wake(inst)
            pid = inst.pid
            try:
                return await call(Endpoint(inst.port or 0, pid, inst.unix_path, inst.service.request_timeout))
            except Exception as e:
                if attempt == 2 or not refused(e) or not await _died(inst, pid):
                    raise
        raise AssertionError("unreachable")


async def _died(inst: Instance, pid: int | None) -> bool:
    """Did the process `pid` end (or its state move) within RACE_WINDOW_S?"""
    with trio.move_on_after(RACE_WINDOW_S):
        while inst.serving and inst.pid == pid:
            await inst.wait_changed()
    return not (inst.serving and inst.pid == pid)
