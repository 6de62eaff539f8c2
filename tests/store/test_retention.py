from __future__ import annotations

import time
from pathlib import Path

from slum.events import LogLine
from slum.store import connect, retention
from slum.store import logs as logstore
from slum.store.ingest import insert_batch


def fill(conn, n: int, ts: float, word: str, size: int = 200) -> None:  # type: ignore[no-untyped-def]
    lines = [LogLine(ts, "web:a", "a", "stdout", "info", f"{word} {i} " + "x" * size) for i in range(n)]
    with conn:
        for i in range(0, n, 2000):
            insert_batch(conn, lines[i : i + 2000])


def search(conn, word: str) -> int:  # type: ignore[no-untyped-def]
    return len(logstore.query(conn, logstore.LogQuery(search=word, limit=5000)))


def test_age_limit_deletes_old_lines_and_their_index(tmp_path: Path) -> None:
    conn = connect(tmp_path / "slum.db")
    fill(conn, 300, time.time() - 10 * 86400, "ancient")
    fill(conn, 200, time.time(), "fresh")
    result = retention.enforce(conn, max_age_days=7, max_bytes=1 << 40)
    assert result.deleted_by_age == 300
    assert search(conn, "ancient") == 0 and search(conn, "fresh") == 200
    assert next(conn.execute("SELECT count(*) FROM logs"))[0] == 200


def test_size_limit_keeps_the_newest(tmp_path: Path) -> None:
    conn = connect(tmp_path / "slum.db")
    now = time.time()
    fill(conn, 20_000, now, "older", size=300)
    fill(conn, 2_000, now, "newest", size=300)
    before = retention.used_bytes(conn)
    assert before > 4 * 1024 * 1024
    result = retention.enforce(conn, max_age_days=7, max_bytes=2 * 1024 * 1024)
    assert result.deleted_by_size > 0
    assert result.used_bytes <= 2 * 1024 * 1024
    assert search(conn, "newest") == 2000  # the newest survive, searchable
    (left,) = next(conn.execute("SELECT count(*) FROM logs"))
    assert search(conn, "older") == left - 2000  # index and table agree
