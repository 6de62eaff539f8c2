"""The idle stop: no requests for idle_timeout, none in flight, none waiting."""

from __future__ import annotations

from pathlib import Path

import trio

from slum.supervisor import State
from tests.supervisor.harness import supervised, transition_time, wait_state, web

IDLE_S = 0.5


async def test_idle_instance_is_stopped(tmp_path: Path) -> None:
    async with supervised(tmp_path, web(idle_timeout=IDLE_S)) as h:
        inst = await h.sup.spawn("web", "a")
        await wait_state(inst, State.SLEEPING, within=5)
        assert inst.reason == "idle" and inst.pid is None
        assert not inst.want_running
        assert (transition_time(inst, State.STOPPING) - transition_time(inst, State.HEALTHY)) >= IDLE_S * 0.99


async def test_open_stream_keeps_it_running(tmp_path: Path) -> None:
    async with supervised(tmp_path, web(idle_timeout=IDLE_S)) as h:
        inst = await h.sup.spawn("web", "a")
        pid = inst.pid
        async with h.sup.lease(inst):  # what the edge holds while a response streams
            await trio.sleep(IDLE_S * 3)  # the assertion is that nothing happens
            assert inst.state is State.HEALTHY and inst.pid == pid
        closed = trio.current_time()
        await wait_state(inst, State.SLEEPING, within=5)
        assert inst.reason == "idle"
        assert trio.current_time() - closed >= IDLE_S


async def test_touch_resets_the_timer(tmp_path: Path) -> None:
    async with supervised(tmp_path, web(idle_timeout=IDLE_S)) as h:
        inst = await h.sup.spawn("web", "a")
        pid = inst.pid
        until = trio.current_time() + IDLE_S * 3
        while trio.current_time() < until:
            inst.touch()
            await trio.sleep(IDLE_S / 5)
        assert inst.state is State.HEALTHY and inst.pid == pid
        inst.touch()
        last = trio.current_time()
        await wait_state(inst, State.SLEEPING, within=5)
        assert trio.current_time() - last >= IDLE_S


async def test_slow_start_is_not_idle_time(tmp_path: Path) -> None:
    # Starting takes twice the idle timeout: the instance must come up before idling out.
    async with supervised(tmp_path, web(idle_timeout=IDLE_S, env={"START_DELAY": "1"})) as h:
        inst = await h.sup.spawn("web", "a")
        assert inst.state is State.HEALTHY
        await wait_state(inst, State.SLEEPING, within=5)
        assert inst.reason == "idle"


async def test_an_operator_stop_of_a_sleeping_instance_shows_as_stopped(tmp_path: Path) -> None:
    async with supervised(tmp_path, web(idle_timeout=IDLE_S)) as h:
        inst = await h.sup.spawn("web", "a")
        await wait_state(inst, State.SLEEPING, within=5)
        await h.sup.stop("web:a")
        assert inst.state is State.STOPPED and inst.reason == "stopped"
