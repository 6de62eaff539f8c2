"""The Hub: how output and state changes travel from the supervisor to the store and live streams.

Two paths, on purpose. A child's output goes to the ingest task as raw pipe reads: the event loop
only moves bytes, and ingestion (in its thread) splits them into lines, groups stack traces and
reads levels. Each pipe may have at most OUTPUT_QUEUE_BYTES waiting: beyond that its reader waits,
the pipe fills and that child blocks on write (back-pressure, no loss), while every other pipe
keeps flowing. Live events fan out to subscribers with bounded queues: a slow subscriber is told
how much it missed, and never slows the publisher down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import trio

LEVELS = ("debug", "info", "warn", "error")
# Per pipe: what its reader may have read that ingestion has not taken yet. Small, because it is
# what a SIGKILL of slum loses (with the pipe itself and the batch being written).
OUTPUT_QUEUE_BYTES = 32 * 1024
SYSTEM_QUEUE = 4096  # slum's own lines waiting for ingestion; beyond it they are counted dropped


class LogLine(NamedTuple):
    """One entry of output (or a system event), before it has a store id. A NamedTuple: it is
    made per line under a flood, and a frozen dataclass costs several times more to build."""

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
    # The state machine's own new state: `new` is the status people see, which reads
    # crash-looping over a healthy process until it has stayed up a while.
    state: str = ""


@dataclass(frozen=True, slots=True)
class HubStatistics:
    log_queue: int  # reads and system lines waiting for ingestion
    log_queue_max: int  # system lines; output is bounded per pipe (queue_bytes_max)
    subscribers: int
    dropped_logs: int
    queue_bytes: int
    queue_bytes_max: int  # per pipe


class OutputStream:
    """One pipe of one child, as its reader hands it to the hub."""

    __slots__ = ("_hub", "_room", "instance_id", "queued", "stream", "tenant_id")

    def __init__(self, hub: Hub, instance_id: str, tenant_id: str | None, stream: str) -> None:
        self._hub = hub
        self.instance_id = instance_id
        self.tenant_id = tenant_id
        self.stream = stream
        self.queued = 0
        self._room: trio.Event | None = None

    async def send(self, data: bytes) -> None:
        """Queue one read; wait while this pipe has OUTPUT_QUEUE_BYTES queued (back-pressure)."""
        self._hub._append((self, time.time(), data))
        self.queued += len(data)
        while self.queued >= OUTPUT_QUEUE_BYTES and not self._hub.closed:
            self._room = room = trio.Event()
            await room.wait()

    def close(self) -> None:
        """End of stream: ingestion emits what is left of the last line."""
        self._hub._append((self, time.time(), b""))

    def _taken(self, size: int) -> None:
        self.queued -= size
        if self._room is not None and self.queued < OUTPUT_QUEUE_BYTES:
            self._room.set()
            self._room = None


class Subscription:
    def __init__(
        self, hub: Hub, maxsize: int, only: type | None = None, keep: Callable[[Any], bool] | None = None
    ) -> None:
        self._hub = hub
        self.only = only
        self.keep = keep
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
    def __init__(self, system_queue: int = SYSTEM_QUEUE) -> None:
        # LogLines and (OutputStream, read time, bytes) in arrival order; the loop appends, the
        # ingest task takes (both on the loop), ingestion's thread parses what was taken.
        self._items: list[Any] = []
        self._system = 0
        self._system_max = system_queue
        self._bytes = 0
        self._ready = trio.Event()
        self._subscribers: set[Subscription] = set()
        self.dropped_logs = 0
        self.closed = False

    def output(self, instance_id: str, stream: str) -> OutputStream:
        return OutputStream(self, instance_id, instance_id.partition(":")[2] or None, stream)

    def _append(self, item: Any) -> None:
        self._items.append(item)
        self._bytes += len(item[2])
        self._ready.set()

    async def log(self, line: LogLine) -> None:
        """Queue a ready-made line (no back-pressure: these are few)."""
        self.log_nowait(line)

    def log_nowait(self, line: LogLine) -> None:
        """For slum's own events, which must never wait: a full queue counts a drop."""
        if self._system >= self._system_max:
            self.dropped_logs += 1
            return
        self._system += 1
        self._items.append(line)
        self._ready.set()

    def system(self, instance_id: str | None, message: str, level: str = "info") -> None:
        tenant = instance_id.partition(":")[2] if instance_id else None
        self.log_nowait(LogLine(time.time(), instance_id, tenant, "system", level, message))

    @property
    def pending(self) -> bool:
        return bool(self._items)

    async def wait_pending(self, until: float | None = None) -> None:
        """Until something is queued or the hub is closed, or (if given) until wall time `until`."""
        if self._items or self.closed:
            return
        if until is None:
            await self._ready.wait()
            return
        left = until - time.time()
        if left > 0:
            with trio.move_on_after(left):
                await self._ready.wait()

    def take(self, max_bytes: int) -> list[Any]:
        """What is queued, oldest first, up to about max_bytes of output; frees the pipes' room."""
        items = self._items
        if self._bytes > max_bytes:
            size = n = 0
            for n, item in enumerate(items, 1):  # noqa: B007
                if not isinstance(item, LogLine):
                    size += len(item[2])
                    if size >= max_bytes:
                        break
            items, self._items = items[:n], items[n:]
        else:
            self._items = []
        for item in items:
            if isinstance(item, LogLine):
                self._system -= 1
            else:
                size = len(item[2])
                self._bytes -= size
                item[0]._taken(size)
        if not self._items and not self.closed:
            self._ready = trio.Event()
        return items

    def publish(self, event: Any) -> None:
        for sub in self._subscribers:
            if (sub.only is None or isinstance(event, sub.only)) and (sub.keep is None or sub.keep(event)):
                sub._offer(event)

    @contextmanager
    def subscribe(
        self, maxsize: int = 1024, only: type | None = None, keep: Callable[[Any], bool] | None = None
    ) -> Iterator[Subscription]:
        """`only`: one kind of event; `keep`: the events this subscriber wants, asked before they
        are queued. Either way, what it does not want cannot fill its queue: one instance's log
        flood does not crowd out the state changes, or another instance's lines, it follows."""
        sub = Subscription(self, maxsize, only, keep)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)

    @property
    def subscribed(self) -> bool:
        return bool(self._subscribers)

    def statistics(self) -> HubStatistics:
        return HubStatistics(
            len(self._items),
            self._system_max,
            len(self._subscribers),
            self.dropped_logs,
            self._bytes,
            OUTPUT_QUEUE_BYTES,
        )

    def close(self) -> None:
        """No more output will come (every reader has ended): ingestion drains and returns."""
        self.closed = True
        self._ready.set()
        for item in self._items:
            if not isinstance(item, LogLine) and item[0]._room is not None:
                item[0]._room.set()
