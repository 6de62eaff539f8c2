"""The Hub: how output and state changes travel from the supervisor to the store and live streams.

Two paths, on purpose. Log lines go through one bounded channel to the ingest task: when it is full
the child's reader waits, the pipe fills and the child blocks on write (back-pressure, no loss).
Live events fan out to subscribers with bounded queues: a slow subscriber is told how much it
missed, and never slows the publisher down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

LEVELS = ("debug", "info", "warn", "error")


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of output (or a system event), before it has a store id."""

    ts: float
    instance_id: str | None
    tenant_id: str | None
    stream: str  # stdout | stderr | system
    level: str
    message: str


@dataclass(frozen=True, slots=True)
class StoredLog:
    """A LogLine after ingestion: it has the id that SSE clients resume from."""

    id: int
    line: LogLine


@dataclass(frozen=True, slots=True)
class StateChanged:
    instance_id: str
    old: str
    new: str
    reason: str | None
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class HubStatistics:
    log_queue: int
    log_queue_max: int
    subscribers: int
    dropped_logs: int


class Subscription:
    def __init__(self, hub: Hub, maxsize: int, only: type | None = None) -> None:
        self._hub = hub
        self.only = only
        self._send, self._recv = trio.open_memory_channel[Any](maxsize)
        self.missed = 0

    def _offer(self, event: Any) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.missed += 1

    async def receive(self) -> Any:
        return await self._recv.receive()

    def take_missed(self) -> int:
        missed, self.missed = self.missed, 0
        return missed


class Hub:
    def __init__(self, log_queue: int = 16384) -> None:
        self._log_send, self.log_receive = trio.open_memory_channel[LogLine](log_queue)
        self._log_queue_max = log_queue
        self._subscribers: set[Subscription] = set()
        self.dropped_logs = 0

    async def log(self, line: LogLine) -> None:
        """Queue a line for the store, waiting when ingestion is behind (back-pressure)."""
        await self._log_send.send(line)

    async def log_many(self, lines: list[LogLine]) -> None:
        """Queue a chunk's lines: no scheduling per line, waiting only when the queue is full."""
        send = self._log_send
        for line in lines:
            try:
                send.send_nowait(line)
            except trio.WouldBlock:
                await send.send(line)

    def log_nowait(self, line: LogLine) -> None:
        """For slum's own events, which must never wait: a full queue counts a drop."""
        try:
            self._log_send.send_nowait(line)
        except trio.WouldBlock:
            self.dropped_logs += 1

    def system(self, instance_id: str | None, message: str, level: str = "info") -> None:
        tenant = instance_id.partition(":")[2] if instance_id else None
        self.log_nowait(LogLine(time.time(), instance_id, tenant, "system", level, message))

    def publish(self, event: Any) -> None:
        for sub in self._subscribers:
            if sub.only is None or isinstance(event, sub.only):
                sub._offer(event)

    @contextmanager
    def subscribe(self, maxsize: int = 1024, only: type | None = None) -> Iterator[Subscription]:
        """`only`: one kind of event (a log flood does not crowd out state changes)."""
        sub = Subscription(self, maxsize, only)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    def statistics(self) -> HubStatistics:
        stats = self._log_send.statistics()
        return HubStatistics(stats.current_buffer_used, self._log_queue_max,
                             len(self._subscribers), self.dropped_logs)

    def close(self) -> None:
        self._log_send.close()
