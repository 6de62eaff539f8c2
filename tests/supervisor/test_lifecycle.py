"""Spawn, exit, restart policy, backoff and failure of real child processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import trio

from slum.config import Settings
from slum.supervisor import State
from slum.supervisor.runner import backoff_s
from tests.supervisor.harness import (
    child,
    environ_of,
    http_get,
    same_group,
    service,
    states_seen,
    supervised,
    transition_time,
    wait_state,
    wait_until,
    web,
)


async def test_spawn_becomes_healthy_through_the_health_path(tmp_path: Path) -> None:
    async with supervised(tmp_path, web()) as h:
        inst = await h.sup.spawn("web", "a")
        assert inst.state is State.HEALTHY and inst.health == "healthy"
        assert inst.pid is not None and inst.port is not None
        assert await http_get(inst.port, "/pid") == (200, str(inst.pid).encode())
        # Readiness asked the health path itself, not just for a TCP connect.
        await h.logs.wait_for(lambda: h.logs.count("web:a", "GET /health") >= 1)
        assert [(s.instance_id, s.pid) for s in h.journal.started] == [("web:a", inst.pid)]
        assert h.journal.known == ["web:a"]


async def test_child_gets_port_env_data_dir_and_its_own_process_group(tmp_path: Path) -> None:
    async with supervised(tmp_path, web()) as h:
        inst = await h.sup.spawn("web", "a")
        assert inst.pid is not None
        env = environ_of(inst.pid)
        data_dir = h.data_dir / "web" / "a"
        assert env["PORT"] == str(inst.port)
        assert env["SLUM_INSTANCE"] == "web:a"
        assert env["SLUM_DATA_DIR"] == str(data_dir)
        assert data_dir.is_dir()
        # Its own session and group: a signal to the group reaches it and not the test runner.
        assert same_group(inst.pid)
        assert os.getpgid(inst.pid) != os.getpgid(0)


async def test_exit_is_noticed_at_once_not_by_health_checks(tmp_path: Path) -> None:
    # With checks 30 s apart, only the process watch can notice the death within seconds.
    async with supervised(tmp_path, web(), health_check_interval=30) as h:
        inst = await h.sup.spawn("web", "a")
        first = inst.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await wait_until(inst, lambda i: not i.serving, within=5)
        assert inst.state in (State.BACKOFF, State.STARTING)
        await wait_until(inst, lambda i: i.state is State.HEALTHY and i.pid != first)
        assert inst.restarts == 1
        assert ("backoff", "killed by signal 9") in [(t.state, t.reason) for t in inst.history]


async def test_restart_waits_for_the_backoff_delay(tmp_path: Path) -> None:
    # backoff 400 ms, jittered to 200-400 ms for the first restart
    async with supervised(tmp_path, web(), backoff_base_ms=400, backoff_max_ms=400) as h:
        inst = await h.sup.spawn("web", "a")
        first = inst.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await wait_until(inst, lambda i: i.state is State.HEALTHY and i.pid != first)
        went_back = transition_time(inst, State.BACKOFF)
        restarted = transition_time(inst, State.STARTING, after=went_back)
        assert restarted - went_back >= 0.2 * 0.99
        announced = [line.message for line in h.logs.of("web:a", "system") if "restarting in" in line.message]
        assert len(announced) == 1
        delay = float(announced[0].rsplit("restarting in ", 1)[1].rstrip("s"))
        assert 0.2 <= delay <= 0.4


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    settings = Settings(data_dir=Path("."), backoff_base_ms=100, backoff_max_ms=1000)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = [backoff_s(settings, attempt) for _ in range(200)]
        assert all(ceiling * 0.5 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jitter: crash loops do not restart in lockstep


@pytest.mark.parametrize(
    ("policy", "code", "restarted"),
    [
        ("always", 0, True),
        ("on-failure", 1, True),
        ("on-failure", 0, False),
        ("never", 1, False),
        ("never", 0, False),
    ],
)
async def test_restart_policy_on_exit(tmp_path: Path, policy: str, code: int, restarted: bool) -> None:
    svc = web(restart=policy, env={"EXIT_AFTER": "0.3", "EXIT_CODE": str(code)})
    async with supervised(tmp_path, svc, backoff_max_ms=50) as h:
        inst = await h.sup.spawn("web", "a")
        if restarted:
            await wait_until(inst, lambda _: len(h.journal.pids("web:a")) >= 2)
            assert ("backoff", f"exited with code {code}") in [(t.state, t.reason) for t in inst.history]
            assert inst.restarts >= 1
        else:
            await wait_until(inst, lambda i: i.state is State.STOPPED and i.pid is None)
            assert inst.reason == f"exited with code {code}"
            assert inst.last_exit == code
            assert not inst.want_running
            # Well past the longest backoff: still stopped, never started again.
            await trio.sleep(0.3)
            assert inst.state is State.STOPPED
            assert len(h.journal.pids("web:a")) == 1


@pytest.mark.parametrize("health", ["/health", None])
async def test_crash_on_start_ends_failed_after_max_restarts(tmp_path: Path, health: str | None) -> None:
    keys = {"health": health} if health else {}
    services = web("steady") + service("crash", child("crash.py"), startup_timeout=5, **keys)
    async with supervised(tmp_path, services, max_restarts=2) as h:
        steady = await h.sup.spawn("steady", "s")
        crash = await h.sup.spawn("crash", "x")
        await wait_state(crash, State.FAILED, within=15)
        assert crash.reason is not None
        assert "exited with code 3" in crash.reason
        assert "gave up after 2 restarts within 60s" in crash.reason
        assert states_seen(crash) == ["starting", "backoff", "starting", "backoff", "starting", "failed"]
        assert len(h.journal.pids("crash:x")) == 3 and crash.restarts == 2
        assert not crash.want_running and crash.pid is None
        # What it said before dying was read, as a warning (stderr).
        await h.logs.wait_for(lambda: h.logs.count("crash:x", "crashing on purpose", "stderr") == 3)
        assert {line.level for line in h.logs.of("crash:x", "stderr")} == {"warn"}
        await h.logs.wait_for(
            lambda: any(
                line.level == "error" and "gave up" in line.message for line in h.logs.of("crash:x", "system")
            )
        )
        assert steady.state is State.HEALTHY
        assert h.journal.pids("steady:s") == [steady.pid]


async def test_one_instance_backoff_never_delays_another(tmp_path: Path) -> None:
    # The crasher's first delay is 5-10 s: everything below happens while it waits.
    services = web("steady") + service("crash", child("crash.py"))
    async with supervised(tmp_path, services, backoff_base_ms=10_000, backoff_max_ms=10_000) as h:
        steady = await h.sup.spawn("steady", "s")
        crash = await h.sup.spawn("crash", "x")
        assert crash.state is State.BACKOFF
        checks = h.logs.count("steady:s", "GET /health")
        # Another instance starts, and the steady one keeps being health-checked.
        other = await h.sup.spawn("steady", "o")
        assert other.state is State.HEALTHY
        await h.logs.wait_for(lambda: h.logs.count("steady:s", "GET /health") >= checks + 3)
        assert steady.state is State.HEALTHY
        assert crash.state is State.BACKOFF
        # A stop during the delay ends it at once.
        with trio.fail_after(2):
            await h.sup.stop("crash:x")
        assert crash.state is State.STOPPED and crash.reason == "stopped"
        assert len(h.journal.pids("crash:x")) == 1


@pytest.mark.parametrize("kind", ["missing", "not executable"])
async def test_command_that_cannot_run_fails_at_once(tmp_path: Path, kind: str) -> None:
    program = tmp_path / "bin" / "ghost"
    if kind == "not executable":
        program.parent.mkdir()
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o644)
    async with supervised(tmp_path, service("ghost", [str(program)])) as h:
        with trio.fail_after(3):
            inst = await h.sup.spawn("ghost", "a")
        assert inst.state is State.FAILED
        assert inst.reason is not None and inst.reason.startswith("cannot start")
        assert str(program) in inst.reason
        expected = "No such file or directory" if kind == "missing" else "Permission denied"
        assert expected in inst.reason
        assert states_seen(inst) == ["starting", "failed"]
        assert h.journal.started == [] and inst.port is None
        await h.logs.wait_for(
            lambda: any(
                line.level == "error" and expected in line.message for line in h.logs.of("ghost:a", "system")
            )
        )
