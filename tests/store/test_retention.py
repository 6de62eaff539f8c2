from __future__ import annotations

import time
from pathlib import Path

import pytest

from slum.events import LogLine
from slum.store import connect, retention
from slum.store import logs as logstore
from slum.store.db import Store
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


def test_each_transaction_deletes_at_most_one_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "BATCH", 1000)
    conn = connect(tmp_path / "slum.db")
    fill(conn, 4500, time.time() - 10 * 86400, "ancient")
    fill(conn, 100, time.time(), "fresh")
    assert [retention.age_batch(conn, 7) for _ in range(6)] == [1000, 1000, 1000, 1000, 500, 0]
    assert retention.size_batch(conn, 5000) == 100  # what is left, not more than asked
    assert search(conn, "fresh") == 0


async def test_the_servers_pass_in_batches_keeps_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "BATCH", 2000)
    store = Store(tmp_path / "slum.db")
    try:
        store.write_sync(lambda c: fill(c, 20_000, time.time(), "older", size=300))
        store.write_sync(lambda c: fill(c, 2_000, time.time(), "newest", size=300))
        result = await retention.retain(store, max_age_days=7, max_bytes=2 * 1024 * 1024)
        assert result.deleted_by_size > 2000  # several batches
        assert result.used_bytes <= 2 * 1024 * 1024
        assert await store.read(lambda c: search(c, "newest")) == 2000
    finally:
        store.close()
