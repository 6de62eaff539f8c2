"""The process groups slum runs and the instances it ever spawned, in SQLite.

Process groups are written as they start and end, with slum's own pid and start time as their
owner, so the next slum can reap what a SIGKILLed one left (and spare a live one's). Instances
are written when first spawned (and with each weight change), so they are known after a restart
and woken by a request.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import apsw

from slum.tasks import Tasks


@dataclass(frozen=True, slots=True)
class ProcessRow:
    instance_id: str
    pid: int
    pgid: int
    started_at: float
    owner_pid: int | None
    owner_started: float | None


@dataclass(frozen=True, slots=True)
class InstanceRow:
    service: str
    name: str
    weight: int


def processes(conn: apsw.Connection) -> list[ProcessRow]:
    return [
        ProcessRow(
            str(r[0]),
            int(r[1]),
            int(r[2]),
            float(r[3]),
            None if r[4] is None else int(r[4]),
            None if r[5] is None else float(r[5]),
        )
        for r in conn.execute(
            "SELECT instance_id, pid, pgid, started_at, owner_pid, owner_started FROM processes"
        )
    ]


def forget_processes(conn: apsw.Connection, rows: list[ProcessRow]) -> None:
    conn.executemany(
        "DELETE FROM processes WHERE instance_id = ? AND pid = ?", [(r.instance_id, r.pid) for r in rows]
    )


def process_started(
    conn: apsw.Connection, instance_id: str, pid: int, started_at: float, owner: tuple[int, float]
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO processes (instance_id, pid, pgid, started_at, "
        "owner_pid, owner_started) VALUES (?, ?, ?, ?, ?, ?)",
        (instance_id, pid, pid, started_at, *owner),
    )


def process_exited(conn: apsw.Connection, instance_id: str) -> None:
    conn.execute("DELETE FROM processes WHERE instance_id = ?", (instance_id,))


def instances(conn: apsw.Connection) -> list[InstanceRow]:
    return [
        InstanceRow(str(r[0]), str(r[1]), int(r[2]))
        for r in conn.execute("SELECT service, name, weight FROM instances")
    ]


def instance_known(conn: apsw.Connection, instance_id: str, service: str, name: str) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO instances (id, service, name) VALUES (?, ?, ?)", (instance_id, service, name)
    )


def instance_weight(conn: apsw.Connection, instance_id: str, service: str, name: str, weight: int) -> None:
    conn.execute(
        "INSERT INTO instances (id, service, name, weight) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET weight = excluded.weight",
        (instance_id, service, name, weight),
    )


def own_identity() -> tuple[int, float]:
    """slum's pid and start time: together they name this process, even after pid reuse."""
    import psutil

    return os.getpid(), psutil.Process().create_time()


class _Named(Protocol):
    @property
    def name(self) -> str: ...


class JournaledInstance(Protocol):
    """What the journal reads of a supervisor's Instance (the store does not import it)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def weight(self) -> int: ...
    @property
    def service(self) -> _Named: ...


class Watched(Protocol):
    def watch(self, pgid: int) -> None: ...
    def forget(self, pgid: int) -> None: ...


Write = Callable[[Callable[[apsw.Connection], None]], Awaitable[None]]


class StoreJournal:
    """The supervisor's Journal on the store: what must survive slum (process groups, for the
    watchdog and for the reap at the next start; the instances ever spawned).

    A failed write here (a full disk) must not end the instance's runner: it is counted under
    the task name "journal" and the instance runs on; only the reap after a SIGKILL loses it."""

    def __init__(self, write: Write, watchdog: Watched, tasks: Tasks) -> None:
        self.write = write
        self.watchdog = watchdog
        self.tasks = tasks
        self.owner = own_identity()

    async def _write(self, fn: Callable[[apsw.Connection], None]) -> None:
        try:
            await self.write(fn)
        except Exception as e:
            self.tasks.failed("journal", e)
        else:
            self.tasks.succeeded("journal")

    def _feed(self, started: bool, pid: int) -> None:
        try:
            (self.watchdog.watch if started else self.watchdog.forget)(pid)
        except Exception as e:
            self.tasks.failed("watchdog feeder", e)

    async def process_started(self, inst: JournaledInstance, pid: int, started_at: float) -> None:
        self._feed(True, pid)
        await self._write(lambda c: process_started(c, inst.id, pid, started_at, self.owner))

    async def process_exited(self, inst: JournaledInstance, pid: int) -> None:
        self._feed(False, pid)
        await self._write(lambda c: process_exited(c, inst.id))

    async def instance_weight(self, inst: JournaledInstance) -> None:
        await self._write(lambda c: instance_weight(c, inst.id, inst.service.name, inst.name, inst.weight))

    async def instance_known(self, inst: JournaledInstance) -> None:
        await self._write(lambda c: instance_known(c, inst.id, inst.service.name, inst.name))
