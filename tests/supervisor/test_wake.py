"""wake(): how a request starts an instance and waits for it, shared and bounded."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from slum.errors import Unavailable
from slum.supervisor import Instance, State
from tests.supervisor.harness import child, http_get, service, supervised, wait_state, web


async def test_wake_starts_a_stopped_instance_and_returns_when_serving(tmp_path: Path) -> None:
    async with supervised(tmp_path, web(env={"START_DELAY": "0.3"}), known=[("web", "a")]) as h:
        inst = h.sup.get("web:a")
        assert inst.state is State.STOPPED and h.journal.started == []
        await h.sup.wake(inst)
        assert inst.serving and inst.wakes == 1 and inst.held == 0
        assert inst.port is not None
        assert await http_get(inst.port, "/pid") == (200, str(inst.pid).encode())


async def test_concurrent_wakes_share_one_spawn(tmp_path: Path) -> None:
    async with supervised(tmp_path, web(env={"START_DELAY": "0.3"})) as h:
        inst = h.sup.ensure_known("web", "a")
        assert inst is not None
        woken: list[int | None] = []

        async def request() -> None:
            await h.sup.wake(inst)
            woken.append(inst.pid)

        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(request)
        assert len(woken) == 50 and len(set(woken)) == 1
        assert h.journal.pids("web:a") == [woken[0]]
        assert inst.wakes == 1 and inst.held == 0 and inst.state is State.HEALTHY


async def test_wake_of_a_failed_instance_is_unavailable_at_once(tmp_path: Path) -> None:
    async with supervised(tmp_path, service("crash", child("crash.py")), max_restarts=0) as h:
        inst = await h.sup.spawn("crash", "x")
        assert inst.state is State.FAILED
        with trio.fail_after(0.5), pytest.raises(Unavailable, match="has failed"):
            await h.sup.wake(inst)
        assert inst.state is State.FAILED and inst.held == 0 and inst.wakes == 0


async def test_held_requests_are_capped(tmp_path: Path) -> None:
    async with supervised(tmp_path, web(env={"START_DELAY": "1"}), max_held_requests=3) as h:
        inst = h.sup.ensure_known("web", "a")
        assert inst is not None
        served = 0

        async def request(i: Instance) -> None:
            nonlocal served
            await h.sup.wake(i)
            served += 1

        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(request, inst)
            with trio.fail_after(5):
                while inst.held < 3:  # noqa: ASYNC110 (held is a plain counter)
                    await trio.sleep(0.005)
            with pytest.raises(Unavailable, match="too many requests"):
                await h.sup.wake(inst)
            assert inst.state is State.STARTING
        assert served == 3 and inst.held == 0 and inst.serving


async def test_wake_gives_up_after_startup_timeout(tmp_path: Path) -> None:
    svc = web(env={"START_DELAY": "5"}, startup_timeout=0.5)
    async with supervised(tmp_path, svc) as h:
        inst = h.sup.ensure_known("web", "a")
        assert inst is not None
        started = trio.current_time()
        with pytest.raises(Unavailable, match=r"did not become ready within 0\.5s"):
            await h.sup.wake(inst)
        assert 0.5 <= trio.current_time() - started < 2
        assert inst.held == 0
        # The slow process is not left running: it is killed and retried.
        await wait_state(inst, State.BACKOFF)
        assert inst.reason == "not ready within startup_timeout (0.5s)"


async def test_wake_during_an_idle_stop_starts_it_again(tmp_path: Path) -> None:
    # A request that arrives while the idle stop is under way (SIGTERM ignored: the stop takes
    # the whole grace) must get a fresh process, whatever the restart policy says about exits.
    svc = web(env={"IGNORE_TERM": "1"}, idle_timeout=0.5, restart="never")
    async with supervised(tmp_path, svc, stop_grace_s=1, backoff_base_ms=2000, backoff_max_ms=2000) as h:
        inst = await h.sup.spawn("web", "a")
        first = inst.pid
        await wait_state(inst, State.STOPPING)
        assert inst.reason == "idle"
        with trio.fail_after(5):
            await h.sup.wake(inst)
        assert inst.serving and inst.pid != first
        assert inst.restarts == 0 and inst.wakes == 1
        assert "backoff" not in [t.state for t in inst.history]


async def test_stop_returns_when_a_request_wakes_it_meanwhile(tmp_path: Path) -> None:
    # An operator stops it; a request arrives during the (slow) stop and wakes it again.
    async with supervised(tmp_path, web(env={"IGNORE_TERM": "1"}), stop_grace_s=1) as h:
        inst = await h.sup.spawn("web", "a")
        first = inst.pid
        stopped = trio.Event()

        async def operator() -> None:
            await h.sup.stop("web:a")
            stopped.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(operator)
            await wait_state(inst, State.STOPPING)
            with trio.fail_after(5):
                await h.sup.wake(inst)
                await stopped.wait()
        assert inst.serving and inst.pid != first and inst.wakes == 1
