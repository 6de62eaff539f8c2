"""Stopping is graceful, then certain, and takes the whole process group along."""

from __future__ import annotations

import os
import shlex
import signal
from pathlib import Path

import pytest
import trio

from slum.supervisor import State
from tests.conftest import CHILDREN, PYTHON
from tests.supervisor.harness import (
    gone,
    identity,
    read_pid,
    service,
    supervised,
    wait_gone,
    wait_until,
    web,
)


async def test_child_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    grace = 1.0
    async with supervised(tmp_path, web(env={"IGNORE_TERM": "1"}), stop_grace_s=grace) as h:
        inst = await h.sup.spawn("web", "a")
        assert inst.pid is not None
        proc = identity(inst.pid)
        started = trio.current_time()
        await h.sup.stop("web:a")
        took = trio.current_time() - started
        assert grace <= took < grace + 1.5
        assert inst.last_exit == -signal.SIGKILL
        assert inst.state is State.STOPPED
        assert gone(proc)


async def test_child_obeying_sigterm_does_not_wait_for_the_grace(tmp_path: Path) -> None:
    async with supervised(tmp_path, web(), stop_grace_s=5) as h:
        inst = await h.sup.spawn("web", "a")
        started = trio.current_time()
        await h.sup.stop("web:a")
        assert trio.current_time() - started < 4
        assert inst.last_exit == -signal.SIGTERM


def _forking_service(how: str) -> str:
    if how == "GRANDCHILD=1":
        # web.py forks `sleep 1000` itself and writes its pid to $DATA_DIR/grandchild.pid.
        return web(restart="never", env={"GRANDCHILD": "1", "DATA_DIR": "{data_dir}/{name}/{id}"})
    # A shell wrapper: the sleep also holds the child's stdout and stderr pipes open.
    script = (
        f'sleep 1000 & echo $! > "$SLUM_DATA_DIR/grandchild.pid"; '
        f"exec {shlex.quote(PYTHON)} {shlex.quote(str(CHILDREN / 'web.py'))}"
    )
    return service("web", ["sh", "-c", script], health="/health", restart="never")


@pytest.mark.parametrize("how", ["GRANDCHILD=1", "sh -c"])
@pytest.mark.parametrize("end", ["stop", "crash"])
async def test_grandchildren_go_with_the_child(tmp_path: Path, how: str, end: str) -> None:
    async with supervised(tmp_path, _forking_service(how)) as h:
        inst = await h.sup.spawn("web", "a")
        assert inst.state is State.HEALTHY and inst.pid is not None
        grandchild = identity(await read_pid(h.data_dir / "web" / "a" / "grandchild.pid"))
        assert os.getpgid(grandchild[0]) == inst.pid
        if end == "stop":
            await h.sup.stop("web:a")
            assert inst.reason == "stopped"
        else:
            os.kill(inst.pid, signal.SIGKILL)  # the child dies on its own; the sleep does not
            await wait_until(inst, lambda i: i.state is State.STOPPED)
            assert inst.reason == "killed by signal 9"
        await wait_gone(grandchild)


async def test_a_process_that_left_the_group_does_not_hang_the_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `setsid sleep` escapes the group kill and keeps the child's output pipes open: reading them
    # is given up after a moment instead of waiting for an EOF that never comes. (Without
    # cgroups: in its cgroup the escaped process is killed; see test_limits.)
    monkeypatch.setenv("SLUM_CGROUP_ROOT", str(tmp_path / "no-cgroups"))
    script = (
        f'setsid sleep 1000 & echo $! > "$SLUM_DATA_DIR/escaped.pid"; '
        f"exec {shlex.quote(PYTHON)} {shlex.quote(str(CHILDREN / 'web.py'))}"
    )
    svc = service("web", ["sh", "-c", script], health="/health")
    async with supervised(tmp_path, svc) as h:
        inst = await h.sup.spawn("web", "a")
        escaped = identity(await read_pid(h.data_dir / "web" / "a" / "escaped.pid"))
        try:
            assert os.getpgid(escaped[0]) != inst.pid
            with trio.fail_after(5):
                await h.sup.stop("web:a")
            assert inst.state is State.STOPPED
            await h.logs.wait_for(
                lambda: any("stopped reading" in line.message for line in h.logs.of("web:a", "system"))
            )
        finally:
            if not gone(escaped):
                os.kill(escaped[0], signal.SIGKILL)
