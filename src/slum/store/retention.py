"""Keep the logs (and metrics history) within their age and size limits, on start and on a timer.

Rows are deleted oldest first by id, from the table and from the FTS index in the same
transaction, so search never finds a line that is gone. Size is the database's used pages, so
the limit holds for what is actually on disk, index included.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from functools import partial

import apsw
import trio

from slum.store.db import Store

log = logging.getLogger("slum.retention")
INTERVAL_S = 300.0
CHUNK_MIN = 1000
BATCH = 20_000  # lines deleted in one transaction
ROUNDS = 20  # measure, delete, measure again: at most this often a pass


@dataclass
class RetentionResult:
    deleted_by_age: int = 0
    deleted_by_size: int = 0
    used_bytes: int = 0


def used_bytes(conn: apsw.Connection) -> int:
    (pages,) = next(conn.execute("PRAGMA page_count"))
    (free,) = next(conn.execute("PRAGMA freelist_count"))
    (size,) = next(conn.execute("PRAGMA page_size"))
    return int((pages - free) * size)


def _delete_through(conn: apsw.Connection, last_id: int) -> int:
    (count,) = next(conn.execute("SELECT count(*) FROM logs WHERE id <= ?", (last_id,)))
    conn.execute("DELETE FROM logs_fts WHERE rowid <= ?", (last_id,))
    conn.execute("DELETE FROM logs WHERE id <= ?", (last_id,))
    return int(count)


def age_batch(conn: apsw.Connection, max_age_days: float, now: float | None = None) -> int:
    """One transaction: up to BATCH of the oldest lines past the age limit (0: none left), and
    the metrics history past it."""
    now = time.time() if now is None else now
    cutoff = int((now - max_age_days * 86400) * 1_000_000)
    deleted = 0
    with conn:
        conn.execute("DELETE FROM metrics_history WHERE ts < ?", (int(now - max_age_days * 86400),))
        (first,) = next(conn.execute("SELECT min(id) FROM logs"))
        if first is not None:
            # A range of the primary key, so that a batch never scans the whole table.
            (last,) = next(
                conn.execute("SELECT max(id) FROM logs WHERE id < ? AND ts_us < ?", (first + BATCH, cutoff))
            )
            if last is not None:
                deleted = _delete_through(conn, last)
    return deleted


def size_goal(conn: apsw.Connection, max_bytes: int) -> int:
    """How many of the oldest lines to delete for the database to use at most max_bytes (a
    tenth under it, so that the next pass does not start at once)."""
    used = used_bytes(conn)
    if used <= max_bytes:
        return 0
    (first, last) = next(conn.execute("SELECT min(id), max(id) FROM logs"))
    if first is None:
        return 0
    count = last - first + 1  # ids grow by one a line, and only the oldest are ever deleted
    share = (used - max_bytes * 0.9) / used
    return int(min(count, max(CHUNK_MIN, math.ceil(count * share))))


def size_batch(conn: apsw.Connection, goal: int) -> int:
    """One transaction: the oldest min(goal, BATCH) lines."""
    deleted = 0
    with conn:
        (first,) = next(conn.execute("SELECT min(id) FROM logs"))
        if first is not None:
            deleted = _delete_through(conn, first + min(goal, BATCH) - 1)
            # Let FTS5 fold the deletions into its segments so their pages become free.
            conn.execute("INSERT INTO logs_fts(logs_fts, rank) VALUES ('merge', 500)")
    return deleted


def enforce(conn: apsw.Connection, max_age_days: float, max_bytes: int) -> RetentionResult:
    """One pass, all at once (tests and tools; the server's `retain` runs the same batches)."""
    result = RetentionResult()
    while n := age_batch(conn, max_age_days):
        result.deleted_by_age += n
    for _ in range(ROUNDS):
        goal = size_goal(conn, max_bytes)
        if not goal:
            break
        while goal > 0 and (n := size_batch(conn, goal)):
            result.deleted_by_size += n
            goal -= n
    result.used_bytes = used_bytes(conn)
    return result


async def retain(store: Store, max_age_days: float, max_bytes: int) -> RetentionResult:
    """One pass (app.py runs it every INTERVAL_S under run_periodic, which contains errors), one
    batch per write: a flood's backlog never becomes one long transaction that holds the log
    writer's commits, or a SIGTERM, behind it; a cancel lands between two batches."""
    result = RetentionResult()
    while n := await store.write_raw(partial(age_batch, max_age_days=max_age_days)):
        result.deleted_by_age += n
    for _ in range(ROUNDS):
        goal = await store.write_raw(partial(size_goal, max_bytes=max_bytes))
        if not goal:
            break
        while goal > 0 and (n := await store.write_raw(partial(size_batch, goal=goal))):
            result.deleted_by_size += n
            goal -= n
    result.used_bytes = await store.write_raw(used_bytes)
    if result.deleted_by_age or result.deleted_by_size:
        log.info(
            "retention: deleted %d lines by age, %d by size; %.1f MB used",
            result.deleted_by_age,
            result.deleted_by_size,
            result.used_bytes / 1e6,
        )
    return result


async def run_retention(
    store: Store,
    max_age_days: float,
    max_bytes: int,
    *,
    interval_s: float = INTERVAL_S,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    task_status.started()
    while True:
        await retain(store, max_age_days, max_bytes)
        await trio.sleep(interval_s)
