"""Limits that hold, with real hostile children: a memory hog, a fork bomb, CPU burners, an app in
its own namespaces. They need root and the cgroup controllers (CI has both); without them they
skip with the reason. Every limit is set before the hostile child runs, with small numbers, and
whatever is left in its cgroup is killed in `finally`, also when the test fails."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio

from slum.supervisor import Instance, State
from slum.supervisor.cgroups import Cgroups
from slum.supervisor.limits import InstanceCgroup
from tests.conftest import PYTHON
from tests.supervisor.harness import (
    child,
    gone,
    http_get,
    identity,
    service,
    supervised,
    wait_gone,
    wait_state,
    web,
)

HOST = Cgroups.detect("probe")
ROOT = os.geteuid() == 0


def needs(*controllers: str) -> pytest.MarkDecorator:
    missing = [c for c in controllers if c not in HOST.hierarchies]
    why = (
        "needs root to make cgroups"
        if not ROOT
        else f"no {', '.join(missing)} cgroup controller on this host"
        if missing
        else ""
    )
    return pytest.mark.skipif(bool(why), reason=why or "available")


@contextmanager
def killing_leftovers(insts: list[Instance]) -> Iterator[list[InstanceCgroup]]:
    """Remember the instances' cgroups as they appear; kill all that is in them at the end,
    whatever happened (the supervisor does it too: this is the belt to its braces)."""
    seen: list[InstanceCgroup] = []
    try:
        yield seen
    finally:
        for inst in insts:
            if inst.cgroup is not None and inst.cgroup not in seen:
                seen.append(inst.cgroup)
        for cg in seen:
            cg.kill()


async def wait_file(path: Path, within: float = 20) -> str:
    with trio.fail_after(within):
        while not await trio.Path(path).exists():  # noqa: ASYNC110
            await trio.sleep(0.05)
    return await trio.Path(path).read_text()


@needs("memory")
async def test_memory_hog_is_killed_at_its_limit_and_named_while_a_neighbour_runs_on(tmp_path: Path) -> None:
    services = (
        service("hog", child("memhog.py"), memory_limit_mb=64, restart="never", env={"HOG_MB": "200"}) + web()
    )
    async with supervised(tmp_path, services) as h:
        neighbour = await h.sup.spawn("web", "n")
        before = identity(neighbour.pid or 0)
        hog = h.sup.instances.get("hog:a") or await h.sup.spawn("hog", "a")
        with killing_leftovers([hog]):
            assert hog.cgroup is not None
            limit = (
                hog.cgroup.dirs["memory"] / "memory.limit_in_bytes"
                if "memory" in hog.cgroup.dirs
                else hog.cgroup.dirs["unified"] / "memory.max"
            )
            assert int(limit.read_text()) == 64 * 1024 * 1024
            await wait_state(hog, State.STOPPED, within=30)
            assert hog.reason == "killed: out of memory (limit 64 MB)"
            assert hog.oom_kills == 1
            await h.logs.wait_for(lambda: h.logs.count("hog:a", "out of memory", "system") >= 1)
            # It got close to its limit and no further.
            held = [
                int(line.message.split()[1])
                for line in h.logs.of("hog:a", "stdout")
                if line.message.startswith("holding")
            ]
            assert held and 32 <= max(held) <= 64
            # The neighbour never noticed.
            assert neighbour.state is State.HEALTHY and identity(neighbour.pid or 0) == before
            assert (await http_get(neighbour.port or 0, "/health"))[0] == 200
            # Its cgroup went with it.
            assert hog.cgroup is None


@needs("memory")
async def test_a_worker_killed_at_the_limit_is_told_while_the_app_runs_on(tmp_path: Path) -> None:
    script = f"PORT=0 HOG_MB=200 {PYTHON} {child('memhog.py')[1]} & exec {PYTHON} {child('web.py')[1]}"
    services = service("app", ["/bin/sh", "-c", script], health="/health", memory_limit_mb=64)
    async with supervised(tmp_path, services) as h:
        inst = await h.sup.spawn("app", "a")
        with killing_leftovers([inst]):
            pid = identity(inst.pid or 0)
            await h.logs.wait_for(lambda: h.logs.count("app:a", "out of memory", "system") >= 1, within=30)
            assert inst.oom_kills == 1
            # The app itself goes on, under the same pid, and is not renamed as killed.
            assert inst.state is State.HEALTHY and identity(inst.pid or 0) == pid
            assert (await http_get(inst.port or 0, "/health"))[0] == 200
            await h.sup.stop("app:a")
            assert inst.reason == "stopped" and inst.oom_kills == 1


@needs("pids")
async def test_fork_bomb_stops_at_pids_max(tmp_path: Path) -> None:
    services = service("bomb", child("forkbomb.py"), pids_max=20, env={"BOMB_CAP": "200"})
    async with supervised(tmp_path, services) as h:
        bomb = await h.sup.spawn("bomb", "a")
        with killing_leftovers([bomb]) as seen:
            assert bomb.cgroup is not None
            seen.append(bomb.cgroup)
            made = int(await wait_file(h.data_dir / "bomb" / "a" / "forks"))
            assert 5 <= made < 20  # the app itself and the forks share the 20
            assert len(bomb.cgroup.pids()) <= 20
            await h.logs.wait_for(lambda: h.logs.count("bomb:a", "fork failed") == 1)
            members = [identity(pid) for pid in bomb.cgroup.pids()]
            assert len(members) == made + 1
            await h.sup.stop("bomb:a")
            for member in members:
                await wait_gone(member)
            assert bomb.cgroup is None
            cgroup_dir = seen[0].dirs.get("pids") or seen[0].dirs["unified"]
            assert not cgroup_dir.exists()


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@needs("cpu")
@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset (util-linux)")
async def test_two_cpu_burners_on_one_core_share_it_by_cpu_shares(tmp_path: Path) -> None:
    core = str(max(os.sched_getaffinity(0)))
    burn = ["taskset", "-c", core, PYTHON, str(child("burner.py")[1])]
    services = service("light", burn, cpu_shares=100) + service("heavy", burn, cpu_shares=300)
    async with supervised(tmp_path, services) as h:
        light = await h.sup.spawn("light", "a")
        heavy = await h.sup.spawn("heavy", "a")
        with killing_leftovers([light, heavy]):
            assert light.pid and heavy.pid
            await trio.sleep(1)  # both at full speed
            start = cpu_seconds(light.pid), cpu_seconds(heavy.pid)
            await trio.sleep(6)
            used = cpu_seconds(light.pid) - start[0], cpu_seconds(heavy.pid) - start[1]
            ratio = used[1] / max(used[0], 1e-6)
            print(
                f"cpu_shares 100 vs 300 on core {core}: {used[0]:.2f}s vs {used[1]:.2f}s, ratio {ratio:.2f}"
            )
            assert 2 <= ratio <= 4.5


def services_socket_dir(h: Any, service: str, name: str) -> str:
    svc = h.sup.config.services[service]
    return str(Path(svc.socket_path(name, h.data_dir)).parent)


@needs("memory")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
async def test_namespaced_instance_sees_its_init_and_none_of_the_others(tmp_path: Path) -> None:
    services = service("ns", child("nsview.py"), isolation="namespace") + web()
    async with supervised(tmp_path, services) as h:
        other = await h.sup.spawn("web", "o")
        ns = await h.sup.spawn("ns", "a")
        with killing_leftovers([ns]):
            assert ns.state is State.HEALTHY
            view = json.loads(await wait_file(h.data_dir / "ns" / "a" / "view.json"))
            marker = trio.Path(view["tmp_marker"])
            try:
                # A child of a tiny init that is pid 1, and nothing else: not the neighbour, not
                # slum, not the host.
                assert view["ppid"] == 1 and 1 in view["pids"]
                assert set(view["pids"]) <= {1, view["pid"]}
                assert other.pid not in view["pids"] or other.pid == view["pid"]
                assert len(view["pids"]) == 2
                # Its /tmp is its own: what it wrote there is not in the host's /tmp, and of the
                # host's it sees only the way to its own workdir and data (pytest's tmp_path).
                assert not await marker.exists()
                # ...and the way to its own unix socket's directory (SOCKET_PATH), no other.
                kept = {
                    p.relative_to("/tmp").parts[0]
                    for p in (tmp_path, Path(services_socket_dir(h, "ns", "a")))
                    if p.is_relative_to("/tmp")
                }
                assert set(view["tmp_entries"]) == {marker.name, *kept}
                # Outside, the app is a real process in slum's process group, so a stop reaches it.
                outside = psutil.Process(ns.pid or 0).children(recursive=True)
                assert any("nsview.py" in " ".join(p.cmdline()) for p in outside)
                members = [identity(p.pid) for p in outside]
            finally:
                await marker.unlink(missing_ok=True)
            await h.sup.stop("ns:a")
            for member in members:
                await wait_gone(member)
            assert other.state is State.HEALTHY


@needs("memory")
async def test_a_process_that_left_the_group_dies_with_the_instance(tmp_path: Path) -> None:
    # setsid puts the sleep outside slum's process group: only the cgroup still knows it.
    script = 'setsid sleep 1000 & echo $! > "$SLUM_DATA_DIR/escaped"; exec ' + " ".join(
        [PYTHON, str(child("web.py")[1])]
    )
    services = service("esc", ["/bin/sh", "-c", script], health="/health")
    async with supervised(tmp_path, services) as h:
        inst = await h.sup.spawn("esc", "a")
        with killing_leftovers([inst]):
            pid = int(await wait_file(h.data_dir / "esc" / "a" / "escaped"))
            escaped = identity(pid)
            assert os.getpgid(pid) != inst.pid
            await h.sup.stop("esc:a")
            await wait_gone(escaped)


async def test_a_limit_that_cannot_be_applied_refuses_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No cgroup controllers where slum is told to look: never run it unlimited.
    empty = tmp_path / "no-cgroups"
    empty.mkdir()
    monkeypatch.setenv("SLUM_CGROUP_ROOT", str(empty))
    services = service("capped", child("crash.py"), memory_limit_mb=64) + web()
    async with supervised(tmp_path, services) as h:
        inst = await h.sup.spawn("capped", "a")
        assert inst.state is State.FAILED and inst.pid is None
        assert inst.reason == (
            f"cannot start: memory_limit_mb cannot be applied: no memory controller under {empty}"
        )
        assert h.journal.started == []
        await h.logs.wait_for(lambda: h.logs.count("capped:a", "memory_limit_mb", "system") >= 1)
        # An instance that asks for no limit runs as before.
        plain = await h.sup.spawn("web", "a")
        assert plain.state is State.HEALTHY and plain.cgroup is None


async def test_sandbox_without_runsc_is_refused_with_the_reason(tmp_path: Path) -> None:
    if shutil.which("runsc"):
        pytest.skip("runsc is installed here")
    async with supervised(tmp_path, web(isolation="sandbox")) as h:
        inst = await h.sup.spawn("web", "a")
        assert inst.state is State.FAILED
        assert inst.reason == (
            'cannot start: isolation = "sandbox" cannot be applied: gVisor\'s runsc is not installed'
        )


@needs("memory", "pids")
async def test_stopped_instances_leave_no_cgroup_and_the_subtree_goes_at_the_end(tmp_path: Path) -> None:
    async with supervised(tmp_path, web(pids_max=50, memory_limit_mb=200)) as h:
        inst = await h.sup.spawn("web", "a")
        assert inst.cgroup is not None
        dirs = list(inst.cgroup.dirs.values())
        assert all(d.is_dir() for d in dirs)
        await h.sup.stop("web:a")
        assert not any(d.exists() for d in dirs)
        bases = {d.parent for d in dirs}
        assert all(b.is_dir() for b in bases)
    assert not any(b.exists() for b in bases)


@needs("memory", "pids")
async def test_the_app_and_what_it_forks_run_in_every_cgroup_of_the_instance(tmp_path: Path) -> None:
    # Under v1 the child moves only its own thread (0 into `tasks`) before exec: the app and
    # every thread it starts must still be in each cgroup, and so must what it forks.
    script = 'sleep 1000 & echo $! > "$SLUM_DATA_DIR/forked"; exec ' + " ".join(
        [PYTHON, str(child("web.py")[1])]
    )
    services = service("web", ["/bin/sh", "-c", script], health="/health", pids_max=50)
    async with supervised(tmp_path, services) as h:
        inst = await h.sup.spawn("web", "a")
        with killing_leftovers([inst]):
            assert inst.cgroup is not None and inst.pid is not None
            forked = int(await wait_file(h.data_dir / "web" / "a" / "forked"))
            for d in inst.cgroup.dirs.values():
                procs = {int(p) for p in (d / "cgroup.procs").read_text().split()}
                assert {inst.pid, forked} <= procs, d
            threads = {int(t) for t in os.listdir(f"/proc/{inst.pid}/task")}
            for d in inst.cgroup.dirs.values():
                if (d / "tasks").exists():
                    assert threads <= {int(t) for t in (d / "tasks").read_text().split()}, d


def test_leftovers_of_a_dead_owner_are_killed_and_removed_but_not_a_live_ones(tmp_path: Path) -> None:
    if not ROOT or "pids" not in HOST.hierarchies:
        pytest.skip("needs root and the pids controller")
    parent = HOST.hierarchies["pids"].parent
    dead = parent / "slum-leftovertest-999999999"  # a pid above pid_max: never alive
    live = parent / f"slum-leftovertest-{os.getpid()}"
    sleeper = None
    try:
        (dead / "web.a").mkdir(parents=True)
        (live / "web.a").mkdir(parents=True)
        import subprocess

        sleeper = subprocess.Popen(["sleep", "1000"])
        (dead / "web.a" / "cgroup.procs").write_text(str(sleeper.pid))
        who = identity(sleeper.pid)
        cg = Cgroups.detect("leftovertest")
        assert cg.reap_leftovers() >= 1
        sleeper.wait(10)
        assert gone(who)
        assert not dead.exists()
        assert (live / "web.a").is_dir()
    finally:
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        for d in (dead / "web.a", dead, live / "web.a", live):
            if d.exists():
                d.rmdir()
