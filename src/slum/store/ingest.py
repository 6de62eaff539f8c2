"""The single writer of log entries. The event loop hands it raw pipe reads; in the store's writer
thread it turns them into entries (slum.logtext: lines, levels, stack traces) and inserts them in
the same transaction, then publishes the stored entries to live subscribers.

Each batch is one transaction of at most BATCH_BYTES of output, so a commit comes at least every
few tens of ms under a flood (bench/: ~50k lines/s per core), and a SIGKILL of slum loses at most
what specs/storage.md states. A write that fails (disk full, I/O error, a corrupt page) drops that
batch: its entries are counted, one warning goes to slum's log per episode, and a system line is
stored when writing works again. Ingestion itself never ends on an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import outcome
import trio

from slum.events import Hub, LogLine, StoredLog
from slum.logtext import Parser
from slum.store.db import Store

BATCH_BYTES = 128 * 1024
# The writer thread's nice value. Parsing and FTS-indexing a flood is a core's worth of work; at
# a lower priority it takes the CPU the edge leaves, and a flooding child is slowed (back-pressure)
# instead of every tenant's requests. Measured on a loaded 2-core machine (bench/logs.py
# --flood-only): edge req/s during a flood 597 at nice 0, 1,590 at nice 5, 2,143 at nice 15 (at
# rest ~2,100-2,600). Not lower than 5: CPU-bound tenant apps (nice 0) would then starve
# everyone's logging, and a child blocked on a full pipe stalls.
WRITER_NICE = 5
# The interpreter's switch interval once ingestion's thread runs (CPython's default is 5 ms). The
# event loop gives up the GIL at every socket call; when the writer holds it (parsing, binding
# rows), the loop waits for the next forced switch: with 5 ms, an edge request of a few syscalls
# waits several times that behind a flood. Measured (loop thread's wake-up lateness beside a
# real flood being ingested, medians of 3 runs on a loaded 2-core machine): p99 11.5 ms at 5 ms
# (3.98 with no flood), 7.4 ms at 1 ms (5.3 without), 5.5 ms at 0.5 ms (3.9 without); lines
# stored per second rose from 34k to 56-61k (the loop's pumps feed the writer sooner). 1 ms: a
# thousand hand-overs a second cost microseconds each.
SWITCH_INTERVAL_S = 0.001
RETRY_S = (0.05, 0.2, 1.0)  # pause after consecutive failed writes, so a broken disk is no busy loop
log = logging.getLogger("slum")
T = TypeVar("T")


@dataclass
class IngestStatistics:
    lines: int = 0  # entries stored this run (a stack trace is one)
    batches: int = 0
    last_batch: int = 0
    failed_batches: int = 0
    dropped: int = 0  # entries lost to failed writes (also counted in hub.dropped_logs)
    errors: int = 0  # failed batches, including failures of ingestion itself
    failing_since: float | None = None  # wall time a failing episode began, or None


def insert_batch(conn: Any, lines: list[LogLine]) -> int:
    """Insert lines (inside the caller's transaction); returns the id of the first."""
    rows = [
        (int(line.ts * 1_000_000), line.level, line.stream, line.instance_id, line.tenant_id, line.message)
        for line in lines
    ]
    conn.executemany(
        "INSERT INTO logs (ts_us, level, stream, instance_id, tenant_id, message) VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    last = conn.last_insert_rowid()
    first: int = last - len(rows) + 1
    conn.executemany(
        "INSERT INTO logs_fts (rowid, message) VALUES (?, ?)", [(first + i, r[5]) for i, r in enumerate(rows)]
    )
    return first


class _Batch:
    """One transaction's work, run in the writer thread: parse, then insert."""

    def __init__(self, parser: Parser, items: list[Any], final: bool) -> None:
        self.parser = parser
        self.items = items
        self.final = final
        self.entries: list[LogLine] = []

    def __call__(self, conn: Any) -> int:
        self.entries = self.parser.feed(self.items, time.time(), final=self.final)
        self.items = []
        return insert_batch(conn, self.entries) if self.entries else 0


async def run_ingest(
    hub: Hub,
    store: Store,
    stats: IngestStatistics,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Returns when the hub is closed and everything queued is stored (shutdown)."""
    parser = Parser()
    writer = WriterThread()
    failures = 0
    episode_dropped = 0
    task_status.started()
    try:
        while True:
            await hub.wait_pending(parser.hold_until())
            items = hub.take(BATCH_BYTES)
            final = hub.closed and not hub.pending
            if not items and parser.hold_until() is None:
                if final:
                    return
                continue
            batch = _Batch(parser, items, final)
            # Shielded: a batch taken from the hub is stored (or counted) even during shutdown.
            with trio.CancelScope(shield=True):
                try:
                    first_id = await store.write_on(writer.run, batch)
                except Exception as e:
                    lost = len(batch.entries) or _estimate(batch.items)
                    stats.failed_batches += 1
                    stats.errors += 1
                    stats.dropped += lost
                    hub.dropped_logs += lost
                    episode_dropped += lost
                    if stats.failing_since is None:
                        stats.failing_since = time.time()
                        cause = _cause(e)
                        log.warning(
                            "cannot store log lines (%s: %s): counting them as dropped "
                            "until writing works again",
                            type(cause).__name__,
                            cause,
                        )
                    if not final:
                        await trio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
                    failures += 1
                    continue
            if stats.failing_since is not None:
                message = (
                    f"log writes work again: {episode_dropped} lines dropped since "
                    f"{time.strftime('%H:%M:%S', time.localtime(stats.failing_since))}"
                )
                log.warning("%s", message)
                hub.system(None, message, "warn")
                stats.failing_since, episode_dropped = None, 0
            failures = 0
            entries = batch.entries
            if not entries:
                continue
            stats.lines += len(entries)
            stats.batches += 1
            stats.last_batch = len(entries)
            if hub.subscribed:
                for i, line in enumerate(entries):
                    hub.publish(StoredLog(first_id + i, line))
    finally:
        writer.close()


class WriterThread:
    """One thread of ingestion's own (not trio's shared worker threads: a nice value set on one
    of those would stay with it, and slow down whatever runs there next)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Callable[[Any], None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[[], T]) -> T:
        """Run fn in the thread; the caller is shielded (an abandoned job would still run)."""
        if self._thread is None:
            sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
            self._thread = threading.Thread(target=self._serve, name="slum ingest", daemon=True)
            self._thread.start()
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        box: list[outcome.Outcome[T]] = []

        def deliver(result: outcome.Outcome[T]) -> None:
            box.append(result)
            token.run_sync_soon(done.set)

        self._jobs.put((fn, deliver))
        await done.wait()
        return box[0].unwrap()

    def close(self) -> None:
        self._jobs.put(None)

    def _serve(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
        while (job := self._jobs.get()) is not None:
            fn, deliver = job
            deliver(outcome.capture(fn))


def _cause(e: BaseException) -> BaseException:
    """SQLite rolls a transaction back itself on SQLITE_FULL; the rollback that follows then fails
    and hides the cause. Name the cause."""
    while "no transaction is active" in str(e) and e.__context__ is not None:
        e = e.__context__
    return e


def _estimate(items: list[Any]) -> int:
    """Lines in what was taken, when the parse itself failed: one per newline, at least one."""
    return sum(1 if isinstance(i, LogLine) else max(i[2].count(b"\n"), 1) for i in items)
