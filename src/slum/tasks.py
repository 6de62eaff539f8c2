"""Background tasks that never end the nursery.

slum runs in one trio nursery, where an exception that escapes any task ends every task, and so
every tenant. A background task (node checker, sampler, history flush, retention, route watch,
ingestion...) therefore runs under `run_periodic` or `run_contained`: an error is logged with the
task's name, counted, and the task goes on after a backoff (exponential, capped). A run of
failures is one *episode*: it is logged once when it starts (its traceback at debug level) and once
when it ends, so a disk that stays full for an hour is two lines, not 3,600. Counts are kept in
`Tasks`, which `slum status` and /_/metrics read.

Only `Exception` is contained: cancellation and KeyboardInterrupt still end the task, which is
how slum shuts down.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

log = logging.getLogger("slum.tasks")
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0


@dataclass
class TaskState:
    errors: int = 0
    episodes: int = 0
    failing: bool = False
    last_error: str | None = None
    last_error_at: float | None = None
    _delay_s: float = 0.0


@dataclass(frozen=True)
class Backoff:
    base_s: float = BACKOFF_BASE_S
    max_s: float = BACKOFF_MAX_S

    def next(self, previous_s: float) -> float:
        return self.base_s if previous_s <= 0 else min(previous_s * 2, self.max_s)


@dataclass
class Tasks:
    """Every background task's state, by name."""

    states: dict[str, TaskState] = field(default_factory=dict)

    def state(self, name: str) -> TaskState:
        state = self.states.get(name)
        if state is None:
            state = self.states[name] = TaskState()
        return state

    def failed(self, name: str, error: BaseException, backoff: Backoff = Backoff()) -> float:
        """Count an error; log it if it starts an episode. Returns how long to wait."""
        state = self.state(name)
        state.errors += 1
        state.last_error = f"{type(error).__name__}: {error}"
        state.last_error_at = time.time()
        if not state.failing:
            state.failing = True
            state.episodes += 1
            log.error("task %s failed, retrying with backoff: %s", name, state.last_error)
            log.debug("task %s: the error that started the episode", name, exc_info=error)
        else:
            log.debug("task %s failed again: %s", name, state.last_error)
        state._delay_s = backoff.next(state._delay_s)
        return state._delay_s

    def succeeded(self, name: str) -> None:
        """The task did its work: an episode of errors, if any, is over."""
        state = self.states.get(name)
        if state is None or not state.failing:
            return
        state.failing = False
        state._delay_s = 0.0
        log.warning("task %s works again after %d errors in all", name, state.errors)

    def errors(self) -> dict[str, int]:
        return {name: s.errors for name, s in self.states.items()}

    def to_dict(self) -> dict[str, dict[str, object]]:
        return {
            name: {
                "errors": s.errors,
                "episodes": s.episodes,
                "failing": s.failing,
                "last_error": s.last_error,
                "last_error_at": s.last_error_at,
            }
            for name, s in sorted(self.states.items())
        }


async def run_periodic(
    tasks: Tasks,
    name: str,
    tick: Callable[[], Awaitable[object]],
    interval_s: float | Callable[[], float],
    *,
    first_delay: bool = False,
    backoff: Backoff = Backoff(),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call tick() every interval_s (a number, or a function giving the next wait); an error
    waits for the backoff instead, then tick() is tried again."""
    tasks.state(name)
    task_status.started()
    if first_delay:
        await trio.sleep(interval_s() if callable(interval_s) else interval_s)
    while True:
        try:
            await tick()
        except Exception as e:
            await trio.sleep(tasks.failed(name, e, backoff))
            continue
        tasks.succeeded(name)
        await trio.sleep(interval_s() if callable(interval_s) else interval_s)


async def run_contained(
    tasks: Tasks,
    name: str,
    fn: Callable[[], Awaitable[object]],
    *,
    backoff: Backoff = Backoff(),
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a long-lived loop fn(); if it raises, start it again after the backoff. It may call
    tasks.succeeded(name) when it has done work, to end an episode; a run that lasted longer
    than the longest backoff ends one too. If fn returns, so does this."""
    tasks.state(name)
    task_status.started()
    while True:
        started = trio.current_time()
        try:
            await fn()
            return
        except Exception as e:
            if trio.current_time() - started > backoff.max_s:
                tasks.succeeded(name)
            await trio.sleep(tasks.failed(name, e, backoff))
