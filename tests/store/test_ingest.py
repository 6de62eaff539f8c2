"""Ingestion against a real SQLite file: a full database drops lines, counted and warned once per
episode, and ingestion carries on when writing works again."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import trio

from slum.events import Hub
from slum.store import Store
from slum.store.ingest import IngestStatistics, run_ingest


def stored(store: Store, text: str) -> int:
    conn = store._writer
    return int(next(conn.execute("SELECT count(*) FROM logs WHERE message LIKE ?", (f"%{text}%",)))[0])


async def wait_for(predicate, within: float = 10) -> None:  # type: ignore[no-untyped-def]
    with trio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 (the state is in another thread and the db)
            await trio.sleep(0.01)


async def test_a_full_database_drops_counts_warns_once_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="slum")
    store = Store(tmp_path / "slum.db")
    hub = Hub()
    stats = IngestStatistics()
    out = hub.output("svc:a", "stdout")
    async with trio.open_nursery() as nursery:
        await nursery.start(run_ingest, hub, store, stats)
        await out.send(b"before the disk filled\n")
        await wait_for(lambda: stats.lines == 1)
        # SQLite's own "database or disk is full" (SQLITE_FULL): no room for one more page.
        pages = store.write_sync(lambda c: next(c.execute("PRAGMA page_count"))[0])
        store.write_sync(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))
        big = b"x" * 3000
        for i in range(30):
            await out.send(b"lost %d %s\n" % (i, big))
            await trio.sleep(0.02)
        await wait_for(lambda: stats.failed_batches >= 3)
        assert stats.dropped >= 3 and hub.dropped_logs == stats.dropped
        warnings = [r.getMessage() for r in caplog.records if "cannot store" in r.getMessage()]
        assert len(warnings) == 1 and "full" in warnings[0]  # one per episode, with the cause
        store.write_sync(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
        await out.send(b"after the disk has room\n")
        await wait_for(lambda: stored(store, "after the disk has room") == 1)
        await wait_for(lambda: stored(store, "log writes work again") == 1)
        assert any("work again" in r.getMessage() for r in caplog.records)
        assert stats.failing_since is None
        hub.close()
    # Ingestion never ended on the errors: it returned only when the hub closed.
    assert stored(store, "before the disk filled") == 1
    store.close()


async def test_the_loop_gets_the_gil_back_within_a_millisecond(tmp_path: Path) -> None:
    # Beside ingestion's thread, the event loop waits at most the switch interval for the GIL
    # after each socket call: CPython's 5 ms default made an edge request wait for the writer.
    store = Store(tmp_path / "slum.db")
    hub = Hub()
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_ingest, hub, store, IngestStatistics())
            await hub.output("svc:a", "stdout").send(b"one line\n")
            await wait_for(lambda: stored(store, "one line") == 1)
            assert sys.getswitchinterval() <= 0.001
            hub.close()
    finally:
        sys.setswitchinterval(before)
        store.close()
