"""Metrics history: one row per series per minute (min, avg, max), queried with a step that
fits the range, so a week of data comes back as a few hundred points."""

from __future__ import annotations

import json
import time
from functools import partial
from typing import Any

import apsw

from slum.errors import BadRequest
from slum.store.db import Store
from slum.telemetry.requests import RequestMetrics
from slum.telemetry.sampler import Sampler, minute_rows

STEPS = (60, 300, 900, 3600, 21600, 86400)
MAX_POINTS = 500
MAX_SECONDS = 2**40  # beyond any real time; keeps every bound and bucket inside SQLite's integers


def labels_key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


def write_history(
    conn: apsw.Connection, rows: list[tuple[int, str, dict[str, str], float, float, float]]
) -> None:
    """rows: (minute ts, name, labels, avg, min, max)."""
    conn.executemany(
        "INSERT INTO metrics_history (ts, name, labels, value, min, max) VALUES (?, ?, ?, ?, ?, ?)",
        [(ts, name, labels_key(labels), avg, low, high) for ts, name, labels, avg, low, high in rows],
    )


def choose_step(since: int, until: int, step: int | None) -> int:
    if step is not None:
        if step < 60:
            raise BadRequest("step must be at least 60 seconds (history is per minute)")
        return step
    span = max(until - since, 60)
    for candidate in STEPS:
        if span / candidate <= MAX_POINTS:
            return candidate
    return STEPS[-1]


def query_history(
    conn: apsw.Connection,
    name: str,
    labels: dict[str, str] | None,
    since: int,
    until: int,
    step: int | None = None,
) -> dict[str, Any]:
    if not name:
        raise BadRequest("name is required")
    for label, value in (("since", since), ("until", until), ("step", step or 60)):
        if not -MAX_SECONDS <= value <= MAX_SECONDS:
            raise BadRequest(f"{label} is out of range")
    if until <= since:
        raise BadRequest("until must be after since")
    step = choose_step(since, until, step)
    where = "name = ? AND ts >= ? AND ts <= ?"
    args: list[Any] = [name, since, until]
    if labels:
        where += " AND labels = ?"
        args.append(labels_key(labels))
    rows = conn.execute(
        f"SELECT labels, (ts / {step}) * {step} AS bucket, avg(value), min(min), max(max) "
        f"FROM metrics_history WHERE {where} GROUP BY labels, bucket ORDER BY labels, bucket",
        args,
    )
    series: dict[str, list[list[float]]] = {}
    for key, bucket, avg, low, high in rows:
        series.setdefault(key, []).append([bucket * 1000, round(avg, 3), low, high])
    return {
        "name": name,
        "step": step,
        "since": since,
        "until": until,
        "series": [{"labels": json.loads(k), "points": pts} for k, pts in series.items()],
    }


def until_next_minute() -> float:
    """Seconds to just after the next minute begins (when the last minute's rows are complete)."""
    return 60.5 - time.time() % 60


async def flush_minute(store: Store, sampler: Sampler, requests: RequestMetrics) -> None:
    """Just after a minute ends: that minute's min/avg/max of every series (run once a minute
    by run_periodic; a retry after an error writes the same minute, once)."""
    now = int(time.time())
    minute = now - now % 60 - 60
    rows = minute_rows(minute, sampler, requests)
    if rows:
        await store.write(partial(write_history, rows=rows))
