"""slum/tasks.py: a background task's error is counted, logged once per episode, and retried after
a capped exponential backoff; it never ends the nursery, and cancellation still ends the task."""

from __future__ import annotations

import logging
from functools import partial

import pytest
import trio
import trio.testing

from slum.tasks import Backoff, Tasks, run_contained, run_periodic


class Flaky:
    """Fails `failures` times (recording when), then works."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[float] = []
        self.done = trio.Event()

    async def __call__(self) -> None:
        self.calls.append(trio.current_time())
        if len(self.calls) <= self.failures:
            raise OSError(24, "Too many open files")
        self.done.set()


async def test_errors_are_counted_backed_off_and_the_task_goes_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "slum.tasks")
    tasks = Tasks()
    tick = Flaky(failures=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_periodic, tasks, "sampler", tick, 1.0)
        await tick.done.wait()
        nursery.cancel_scope.cancel()
    gaps = [round(b - a, 3) for a, b in zip(tick.calls, tick.calls[1:], strict=False)]
    assert gaps == [1.0, 2.0, 4.0, 8.0, 16.0]  # exponential from 1 s
    state = tasks.states["sampler"]
    assert state.errors == 5 and state.episodes == 1 and not state.failing
    assert "OSError" in (state.last_error or "")
    failed = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1 and "sampler" in failed[0].getMessage()
    assert any("works again" in r.getMessage() for r in caplog.records)
    assert tasks.to_dict()["sampler"]["errors"] == 5


async def test_backoff_is_capped(autojump_clock: trio.testing.MockClock) -> None:
    tasks = Tasks()
    tick = Flaky(failures=8)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(run_periodic, tasks, "history", tick, 60.0, backoff=Backoff(0.5, 3.0)))
        await tick.done.wait()
        nursery.cancel_scope.cancel()
    gaps = [round(b - a, 3) for a, b in zip(tick.calls, tick.calls[1:], strict=False)]
    assert gaps == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0]


async def test_a_new_episode_is_logged_again(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "slum.tasks")
    tasks = Tasks()
    outcomes = iter([True, False, False, True, False, True])  # False: fail
    seen = trio.Event()

    async def tick() -> None:
        ok = next(outcomes, None)
        if ok is None:
            seen.set()
            return
        if not ok:
            raise RuntimeError("disk is full")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_periodic, tasks, "retention", tick, 1.0)
        await seen.wait()
        nursery.cancel_scope.cancel()
    assert tasks.states["retention"].errors == 3
    assert tasks.states["retention"].episodes == 2
    assert len([r for r in caplog.records if "failed, retrying" in r.getMessage()]) == 2


async def test_a_contained_loop_is_restarted_and_cancellation_still_ends_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    tasks = Tasks()
    runs = 0
    forever = trio.Event()

    async def loop() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise ValueError("bad stored row")
        await forever.wait()

    with trio.move_on_after(100) as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(run_contained, tasks, "routes", loop)
            await trio.sleep(50)
            assert runs == 3 and tasks.states["routes"].errors == 2
            nursery.cancel_scope.cancel()
    assert not scope.cancelled_caught
    assert runs == 3


async def test_what_is_not_an_exception_is_not_contained() -> None:
    tasks = Tasks()

    async def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await run_periodic(tasks, "sampler", interrupted, 1.0)
    assert tasks.states["sampler"].errors == 0
