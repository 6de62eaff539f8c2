"""Telemetry's background tasks: both listed from the start, the sampler sampling at once."""

from __future__ import annotations

from pathlib import Path

import trio

from slum.store.db import Store
from slum.tasks import Tasks
from slum.telemetry.tasks import Telemetry


async def test_run_starts_with_a_sample_and_keeps_the_request_switch(tmp_path: Path) -> None:
    telemetry = Telemetry.of(None, tmp_path, request_metrics=False)  # type: ignore[arg-type]
    assert not telemetry.requests.enabled
    store = Store(tmp_path / "slum.db")
    try:
        tasks = Tasks()
        async with trio.open_nursery() as nursery:
            await nursery.start(telemetry.run, tasks, store)
            assert set(tasks.to_dict()) == {"sampler", "history"}
            with trio.fail_after(10):
                while telemetry.sampler.stats.ticks == 0:  # noqa: ASYNC110 (no event to wait on)
                    await trio.sleep(0.01)
            assert telemetry.sampler.own is not None and telemetry.sampler.host["cpus"] >= 1
            nursery.cancel_scope.cancel()
    finally:
        store.close()
