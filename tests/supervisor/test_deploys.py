"""Deploys, weights and auto_spawn on a real Supervisor with real children."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from slum.errors import BadRequest, Conflict, NotFound, Unavailable
from slum.supervisor import State
from tests.supervisor.harness import child, service, supervised, web


async def test_deploy_waits_for_health_then_sets_the_weight(tmp_path: Path) -> None:
    async with supervised(tmp_path, web()) as h:
        seen: list[int] = []

        async def watch() -> None:
            inst = None
            while inst is None:
                inst = h.sup.instances.get("web:v2")
                await trio.sleep(0.01)
            while not inst.serving:
                seen.append(inst.weight)  # while it starts, it takes no traffic
                await inst.wait_changed()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            inst = await h.sup.deploy("web", "v2", weight=40)
        assert inst.serving and inst.weight == 40
        assert seen and set(seen) == {0}


async def test_a_deploy_that_cannot_start_fails_with_the_reason(tmp_path: Path) -> None:
    svc = service("bad", child("crash.py"), startup_timeout=2)
    async with supervised(tmp_path, web() + svc, max_restarts=1) as h:
        old = await h.sup.spawn("web", "v1")
        with pytest.raises(Unavailable, match=r"deploy of bad:v2 failed: .*exited with code 3"):
            await h.sup.deploy("bad", "v2", timeout_s=20)
        assert h.sup.get("bad:v2").state in (State.STOPPED, State.FAILED)
        assert old.weight == 100 and old.serving


async def test_route_moves_all_weight_at_once(tmp_path: Path) -> None:
    async with supervised(tmp_path, web()) as h:
        a = await h.sup.spawn("web", "a")
        b = await h.sup.spawn("web", "b", weight=0)
        await h.sup.route("web", "a", "b")
        assert (a.weight, b.weight) == (0, 100) and a.serving
        with pytest.raises(BadRequest):
            await h.sup.route("web", "a", "a")
        with pytest.raises(NotFound):
            await h.sup.route("web", "a", "nope")
        await h.sup.stop("web:a")
        with pytest.raises(Conflict, match="deploy it first"):
            await h.sup.route("web", "b", "a")
        with pytest.raises(BadRequest, match="0 to 100"):
            await h.sup.set_weight("web:b", 101)


async def test_auto_spawn_is_bounded_and_validated(tmp_path: Path) -> None:
    services = web("auto", auto_spawn=True, max_instances=3) + web("manual")
    async with supervised(tmp_path, services, auto_spawn_per_minute=2) as h:
        first = await h.sup.for_request("auto", "a")
        assert await h.sup.for_request("auto", "a") is first  # known now: no second spawn
        await h.sup.for_request("auto", "b")
        with pytest.raises(Unavailable, match="auto_spawn_per_minute"):
            await h.sup.for_request("auto", "c")
        assert sorted(h.journal.known) == ["auto:a", "auto:b"]
        with pytest.raises(NotFound, match="DNS labels"):
            await h.sup.for_request("auto", "x_y")
        with pytest.raises(NotFound, match=r"auto_spawn = true.*\[service.manual\]"):
            await h.sup.for_request("manual", "z")
        with pytest.raises(NotFound):
            await h.sup.for_request("nope", "z")


async def test_auto_spawn_stops_at_max_instances(tmp_path: Path) -> None:
    async with supervised(tmp_path, web("auto", auto_spawn=True, max_instances=1)) as h:
        await h.sup.for_request("auto", "a")
        with pytest.raises(Unavailable, match="max_instances = 1"):
            await h.sup.for_request("auto", "b")
