"""Telemetry's two background tasks, contained like every other (slum/tasks.py): the sampler
every second, and the history's flush just after each minute."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from slum.store.db import Store
from slum.supervisor import Supervisor
from slum.tasks import Tasks, run_periodic
from slum.telemetry.history import flush_minute, until_next_minute
from slum.telemetry.requests import RequestMetrics
from slum.telemetry.sampler import INTERVAL_S, Sampler


@dataclass
class Telemetry:
    requests: RequestMetrics
    sampler: Sampler

    @classmethod
    def of(cls, supervisor: Supervisor, data_dir: Path, *, request_metrics: bool) -> Telemetry:
        requests = RequestMetrics()
        requests.enabled = request_metrics
        return cls(requests, Sampler(supervisor, data_dir))

    async def run(
        self, tasks: Tasks, store: Store, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Started once both tasks are known to `tasks` (so `slum status` lists them at once)."""
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(run_periodic, tasks, "sampler", self.sampler.tick, INTERVAL_S))
            await nursery.start(
                partial(
                    run_periodic,
                    tasks,
                    "history",
                    partial(flush_minute, store, self.sampler, self.requests),
                    until_next_minute,
                    first_delay=True,
                )
            )
            task_status.started()
