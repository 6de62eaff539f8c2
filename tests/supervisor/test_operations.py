"""What operators do: spawn, stop, restart, and what each does to an instance in each state."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import trio

from slum.errors import BadRequest, Conflict, NotFound
from slum.supervisor import State
from tests.conftest import CHILDREN, PYTHON
from tests.supervisor.harness import (
    child,
    gone,
    http_get,
    identity,
    reaped,
    service,
    supervised,
    wait_gone,
    web,
)


async def test_spawn_of_a_running_instance_is_a_no_op(tmp_path: Path) -> None:
    # tenement's scripts spawn before they use: a second spawn must succeed and change nothing.
    async with supervised(tmp_path, web()) as h:
        inst = await h.sup.spawn("web", "a")
        pid = inst.pid
        assert await h.sup.spawn("web", "a") is inst
        assert inst.state is State.HEALTHY and inst.pid == pid
        assert len(h.journal.started) == 1


async def test_unknown_instances_and_services_are_not_found(tmp_path: Path) -> None:
    async with supervised(tmp_path, web()) as h:
        with pytest.raises(NotFound):
            await h.sup.stop("web:nobody")
        with pytest.raises(NotFound):
            await h.sup.restart("nothere:a")
        with pytest.raises(NotFound):
            await h.sup.spawn("nothere", "a")
        with pytest.raises(BadRequest):
            await h.sup.spawn("web", "Not_A_Label")
        assert h.sup.instances == {}


async def test_restart_of_a_never_spawned_id_of_a_configured_service_starts_it(tmp_path: Path) -> None:
    async with supervised(tmp_path, web()) as h:
        inst = await h.sup.restart("web:fresh")
        assert inst.serving and inst.id == "web:fresh"


async def test_stop_ends_the_process_and_a_second_stop_is_a_conflict(tmp_path: Path) -> None:
    async with supervised(tmp_path, web()) as h:
        inst = await h.sup.spawn("web", "a")
        assert inst.pid is not None
        proc = identity(inst.pid)
        await h.sup.stop("web:a")
        assert inst.state is State.STOPPED and inst.reason == "stopped"
        assert inst.pid is None and inst.port is None
        assert inst.last_exit == -15  # it obeyed SIGTERM
        assert gone(proc)
        assert h.journal.exited == ["web:a"]
        # Its output was read to the end, not cut off.
        await h.logs.wait_for(
            lambda: any(f"pid {proc[0]} " in line.message for line in h.logs.of("web:a", "system"))
        )
        assert not any("stopped reading" in line.message for line in h.logs.lines)
        with pytest.raises(Conflict):
            await h.sup.stop("web:a")


async def test_restart_gives_a_new_process(tmp_path: Path) -> None:
    async with supervised(tmp_path, web()) as h:
        inst = await h.sup.spawn("web", "a")
        assert inst.pid is not None
        old = identity(inst.pid)
        await h.sup.restart("web:a")
        assert inst.state is State.HEALTHY
        assert inst.pid is not None and inst.pid != old[0]
        assert inst.restarts == 1
        assert gone(old)
        assert inst.port is not None
        assert await http_get(inst.port, "/pid") == (200, str(inst.pid).encode())
        assert h.journal.pids("web:a") == [old[0], inst.pid]


async def test_restart_of_a_stopped_instance_starts_it(tmp_path: Path) -> None:
    async with supervised(tmp_path, web()) as h:
        await h.sup.spawn("web", "a")
        inst = await h.sup.stop("web:a")
        await h.sup.restart("web:a")
        assert inst.state is State.HEALTHY and inst.pid is not None


async def test_stop_of_a_failed_instance_makes_it_stopped(tmp_path: Path) -> None:
    async with supervised(tmp_path, service("crash", child("crash.py")), max_restarts=0) as h:
        inst = await h.sup.spawn("crash", "x")
        assert inst.state is State.FAILED
        with trio.fail_after(1):
            await h.sup.stop("crash:x")
        assert inst.state is State.STOPPED and inst.reason == "stopped"
        assert len(h.journal.started) == 1


async def test_spawn_of_a_failed_instance_starts_it_again(tmp_path: Path) -> None:
    # The program does not exist at first (failed); an operator installs it and spawns again.
    program = tmp_path / "app"
    async with supervised(tmp_path, service("app", [str(program)], health="/health")) as h:
        inst = await h.sup.spawn("app", "a")
        assert inst.state is State.FAILED
        program.write_text(f"#!/bin/sh\nexec {shlex.quote(PYTHON)} {shlex.quote(str(CHILDREN / 'web.py'))}\n")
        program.chmod(0o755)
        again = await h.sup.spawn("app", "a")
        assert again is inst
        assert inst.state is State.HEALTHY and inst.reason is None
        assert inst.pid is not None and inst.port is not None
        assert await http_get(inst.port, "/pid") == (200, str(inst.pid).encode())


async def test_configured_instances_start_and_known_ones_wait(tmp_path: Path) -> None:
    async with supervised(tmp_path, web(), instances={"web": ["one"]}, known=[("web", "two")]) as h:
        one = h.sup.get("web:one")
        two = h.sup.get("web:two")
        with trio.fail_after(10):
            while one.state is not State.HEALTHY:
                await one.wait_changed()
        assert two.state is State.STOPPED and two.pid is None
        assert [s.instance_id for s in h.journal.started] == ["web:one"]
        assert [i.id for i in h.sup.list()] == ["web:one", "web:two"]


async def test_shutdown_stops_every_child(tmp_path: Path) -> None:
    async with supervised(tmp_path, web()) as h:
        procs = []
        for name in ("a", "b", "c"):
            inst = await h.sup.spawn("web", name)
            assert inst.pid is not None
            procs.append(identity(inst.pid))
    # The supervisor's nursery is gone: its children with it, reaped (no zombies left to us).
    for proc in procs:
        assert gone(proc)
        await wait_gone(proc, within=1)
        assert reaped(proc[0])
