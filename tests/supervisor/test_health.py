"""Health checks after readiness: degraded, unhealthy, restarted, recovered."""

from __future__ import annotations

from pathlib import Path

from slum.supervisor import State
from slum.supervisor.runner import RESTART_AFTER, UNHEALTHY_AFTER
from tests.supervisor.harness import (
    child,
    http_get,
    service,
    states_seen,
    supervised,
    wait_state,
    wait_until,
    web,
)


async def test_failing_health_degrades_then_restarts(tmp_path: Path) -> None:
    failing = tmp_path / "fail"
    async with supervised(tmp_path, web(env={"HEALTH_FAIL_FILE": str(failing)})) as h:
        inst = await h.sup.spawn("web", "a")
        first = inst.pid
        failing.touch()
        await wait_state(inst, State.DEGRADED)
        assert inst.reason == "1 failed health checks" and inst.health == "unhealthy"
        await wait_state(inst, State.UNHEALTHY)
        assert inst.reason == f"{UNHEALTHY_AFTER} failed health checks"
        # Still served while unhealthy, until the restart.
        await wait_until(inst, lambda i: i.pid != first)
        failing.unlink()
        await wait_until(inst, lambda i: i.state is State.HEALTHY and i.pid is not None)
        assert inst.pid != first and inst.restarts == 1
        seen = states_seen(inst)
        assert seen == [
            "starting",
            "healthy",
            "degraded",
            "unhealthy",
            "stopping",
            "backoff",
            "starting",
            "healthy",
        ]
        assert any(
            t.state == "backoff" and t.reason == f"unhealthy: {RESTART_AFTER} failed health checks"
            for t in inst.history
        )


async def test_health_recovers_when_checks_pass_again(tmp_path: Path) -> None:
    failing = tmp_path / "fail"
    async with supervised(tmp_path, web(env={"HEALTH_FAIL_FILE": str(failing)})) as h:
        inst = await h.sup.spawn("web", "a")
        pid = inst.pid
        failing.touch()
        await wait_state(inst, State.DEGRADED)
        failing.unlink()
        await wait_state(inst, State.HEALTHY)
        assert inst.pid == pid and inst.restarts == 0
        assert inst.health == "healthy" and inst.reason is None


async def test_tcp_only_health_follows_the_listening_socket(tmp_path: Path) -> None:
    # No health path: a TCP connect is the check. unlisten.py stops listening on request.
    async with supervised(tmp_path, service("tcp", child("unlisten.py"))) as h:
        inst = await h.sup.spawn("tcp", "a")
        assert inst.state is State.HEALTHY and inst.port is not None
        first = inst.pid
        assert await http_get(inst.port, "/unlisten") == (200, b"bye")
        await wait_state(inst, State.DEGRADED)
        await wait_until(inst, lambda i: i.state is State.HEALTHY and i.pid != first)
        assert inst.restarts == 1
