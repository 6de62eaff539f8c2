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

import apsw
import trio

from slum.store.db import Store

log = logging.getLogger("slum.retention")
INTERVAL_S = 300.0
CHUNK_MIN = 1000


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


def by_age(conn: apsw.Connection, max_age_days: float, now: float | None = None) -> int:
    cutoff = int(((now or time.time()) - max_age_days * 86400) * 1_000_000)
    (last,) = next(conn.execute("SELECT max(id) FROM logs WHERE ts_us < ?", (cutoff,)))
    deleted = _delete_through(conn, last) if last is not None else 0
    metrics_cutoff = int((now or time.time()) - max_age_days * 86400)
    conn.execute("DELETE FROM metrics_history WHERE ts < ?", (metrics_cutoff,))
    return deleted


def by_size(conn: apsw.Connection, max_bytes: int) -> int:
    """Delete the oldest lines until the database uses at most max_bytes (or no logs are left)."""
    deleted = 0
    for _ in range(20):
        used = used_bytes(conn)
        if used <= max_bytes:
            break
        (count, _first) = next(conn.execute("SELECT count(*), min(id) FROM logs"))
        if not count:
            break
        share = (used - max_bytes * 0.9) / used
        n = min(count, max(CHUNK_MIN, math.ceil(count * share)))
        (last,) = next(conn.execute("SELECT id FROM logs ORDER BY id LIMIT 1 OFFSET ?", (n - 1,)))
        deleted += _delete_through(conn, last)
        # Let FTS5 fold the deletions into its segments so their pages become free.
        conn.execute("INSERT INTO logs_fts(logs_fts, rank) VALUES ('merge', 500)")
    return deleted


def enforce(conn: apsw.Connection, max_age_days: float, max_bytes: int) -> RetentionResult:
    result = RetentionResult()
    with conn:
        result.deleted_by_age = by_age(conn, max_age_days)
    with conn:
        result.deleted_by_size = by_size(conn, max_bytes)
    result.used_bytes = used_bytes(conn)
    return result


async def retain(store: Store, max_age_days: float, max_bytes: int) -> RetentionResult:
    """One pass (app.py runs it every INTERVAL_S under run_periodic, which contains errors)."""
    result = await store.write_raw(lambda c: enforce(c, max_age_days, max_bytes))
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
