"""Supervisor.lease: a request's hold on an instance (wake, stream count, touch, the one retry)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio
import trio.testing

from slum.config import parse
from slum.errors import Unavailable
from slum.events import Hub
from slum.supervisor import Instance, State, Supervisor
from slum.supervisor.lease import RACE_WINDOW_S, Endpoint
from tests.supervisor.harness import RecordingJournal, http_get, service, supervised, wait_state, web


async def _get_pid(at: Endpoint) -> int:
    status, body = await http_get(at.port, "/pid")
    assert status == 200
    return int(body)


def _refused(e: Exception) -> bool:
    return isinstance(e, ConnectionRefusedError)


async def test_a_lease_wakes_counts_and_touches(tmp_path: Path) -> None:
    async with supervised(tmp_path, web(idle_timeout=0.3)) as h:
        inst = await h.sup.spawn("web", "a")
        await wait_state(inst, State.SLEEPING, within=5)
        before = inst.last_activity
        async with h.sup.lease(inst) as lease:
            assert inst.serving and inst.streams == 1 and inst.wakes == 1
            assert inst.last_activity > before
            assert await lease.send(_get_pid, _refused) == inst.pid
        assert inst.streams == 0


async def test_a_failed_wake_gives_the_stream_back(tmp_path: Path) -> None:
    async with supervised(tmp_path, service("web", ["/nonexistent/app"])) as h:
        inst = await h.sup.spawn("web", "a")
        assert inst.state is State.FAILED
        with pytest.raises(Unavailable, match="has failed"):
            async with h.sup.lease(inst):
                raise AssertionError("a failed instance is not leased")
        assert inst.streams == 0


async def test_refused_by_a_process_that_just_died_is_sent_again(tmp_path: Path) -> None:
    async with supervised(tmp_path, web()) as h:
        inst = await h.sup.spawn("web", "a")
        first = inst.pid
        assert first is not None
        calls: list[int | None] = []

        async def call(at: Endpoint) -> int:
            calls.append(at.pid)
            if len(calls) == 1:
                # The process dies after the edge read its port, before the connect.
                os.kill(first, signal.SIGKILL)
                raise ConnectionRefusedError
            return await _get_pid(at)

        async with h.sup.lease(inst) as lease:
            second = await lease.send(call, _refused)
        assert calls == [first, second] and second != first


def _resting_instance(tmp_path: Path) -> tuple[Supervisor, Instance]:
    # A real Instance, moved by hand to HEALTHY: no runner and no process, so a refused call is
    # one the lease must not retry (the process is still the one that refused).
    config = parse(web(), tmp_path / "tenement.toml")
    sup = Supervisor(config, Hub(), RecordingJournal())
    inst = Instance(config.services["web"], "a")
    inst.move(State.STARTING)
    inst.move(State.HEALTHY)
    inst.pid = 1234
    return sup, inst


async def test_refused_by_a_live_process_is_raised_after_the_race_window(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    sup, inst = _resting_instance(tmp_path)
    calls = 0

    async def call(at: Endpoint) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError

    started = trio.current_time()
    async with sup.lease(inst) as lease:
        with pytest.raises(ConnectionRefusedError):
            await lease.send(call, _refused)
    assert calls == 1
    assert trio.current_time() - started == pytest.approx(RACE_WINDOW_S)


async def test_other_errors_are_never_retried(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    sup, inst = _resting_instance(tmp_path)
    started = trio.current_time()

    async def call(at: Endpoint) -> None:
        raise TimeoutError

    async with sup.lease(inst) as lease:
        with pytest.raises(TimeoutError):
            await lease.send(call, _refused)
    assert trio.current_time() == started  # no wait for a race that cannot be


async def test_a_wake_that_never_serves_gives_up_at_startup_timeout(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # No runner moves this instance: the wake waits for readiness that never comes.
    config = parse(web(startup_timeout=7), tmp_path / "tenement.toml")
    sup = Supervisor(config, Hub(), RecordingJournal())
    inst = Instance(config.services["web"], "a")
    started = trio.current_time()
    with pytest.raises(Unavailable, match="did not become ready within 7s"):
        async with sup.lease(inst):
            raise AssertionError("never served")
    assert trio.current_time() - started == pytest.approx(7)
    assert inst.streams == 0 and inst.held == 0 and inst.wakes == 1


async def test_waiting_requests_are_bounded(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    text = "[settings]\nmax_held_requests = 2\n" + web(startup_timeout=5)
    config = parse(text, tmp_path / "tenement.toml")
    sup = Supervisor(config, Hub(), RecordingJournal())
    inst = Instance(config.services["web"], "a")
    refused: list[str] = []

    async def request() -> None:
        try:
            async with sup.lease(inst):
                pass
        except Unavailable as e:
            refused.append(e.message)

    async with trio.open_nursery() as n:
        for _ in range(3):
            n.start_soon(request)
        await trio.sleep(1)
        # Two wait for the start; the third is refused at once, not held.
        assert refused == ["web:a is starting and too many requests are waiting"]
        assert inst.held == 2 and inst.streams == 2
    assert len(refused) == 3 and inst.held == 0 and inst.streams == 0
