"""A child's output reaches the hub: every line, once, in order, with a level."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from slum.supervisor import State
from tests.supervisor.harness import child, http_get, service, supervised, wait_state, web


async def test_stdout_and_stderr_lines_arrive_with_levels(tmp_path: Path) -> None:
    async with supervised(tmp_path, web()) as h:
        inst = await h.sup.spawn("web", "a")
        await h.logs.wait_for(lambda: h.logs.count("web:a", "a warning on stderr", "stderr") == 1)
        out = [line for line in h.logs.of("web:a", "stdout") if "listening on" in line.message]
        assert [line.message for line in out] == [f"listening on {inst.port}"]
        assert out[0].level == "info" and out[0].tenant_id == "a"
        err = h.logs.of("web:a", "stderr")
        assert [(line.message, line.level) for line in err] == [("a warning on stderr", "warn")]


@pytest.mark.parametrize(("consumer", "lines"), [("fast", 50_000), ("slow", 30_000)])
async def test_flood_arrives_whole_and_in_order(tmp_path: Path, consumer: str, lines: int) -> None:
    # The slow consumer pauses like a store writing batches (~12k lines/s): the child outruns
    # it, is back-pressured, and exits with thousands of lines still in its pipe.
    slow = (250, 0.02) if consumer == "slow" else (0, 0.0)
    svc = service("flood", child("flood.py"), restart="never", env={"LINES": str(lines)})
    async with supervised(tmp_path, svc, slow_drain=slow) as h:
        inst = await h.sup.spawn("flood", "a")
        await wait_state(inst, State.STOPPED, within=30)
        assert inst.reason == "exited with code 0"
        # Stopped means its output was read to the end; the consumer may still be catching up.
        await h.logs.wait_for(lambda: h.logs.counts["flood:a", "stdout"] >= lines, within=30)
        got = [line.message for line in h.logs.of("flood:a", "stdout")]
        assert got == [f"line {i}" for i in range(lines)]


async def test_a_flood_over_log_rate_kb_waits_on_its_pipe_and_loses_nothing(tmp_path: Path) -> None:
    # 120,000 lines are ~1.3 MiB: 512 KiB pass at once (4 s of 128 KiB/s), the rest at 128 KiB/s
    # until the child has written its last line (what is still in the pipe then is read at once),
    # so the child is held for ~5 s where it would take ~0.3 s. A neighbour answers meanwhile.
    lines = 120_000
    svc = service("flood", child("flood.py"), restart="never", env={"LINES": str(lines)}) + web()
    async with supervised(tmp_path, svc, log_rate_kb=128) as h:
        other = await h.sup.spawn("web", "a")
        assert other.port is not None
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(h.sup.spawn, "flood", "a")
            await trio.sleep(1)
            inst = h.sup.instances["flood:a"]
            assert inst.pid is not None  # held on its pipe
            assert await http_get(other.port, "/health") == (200, b"ok")
        await wait_state(inst, State.STOPPED, within=30)
        held = trio.current_time() - started
        assert 2.0 < held < 20, held
        await h.logs.wait_for(lambda: h.logs.count("flood:a", "log_rate_kb (128 KiB/s)", "system") == 1)
        await h.logs.wait_for(lambda: h.logs.counts["flood:a", "stdout"] >= lines, within=30)
        got = [line.message for line in h.logs.of("flood:a", "stdout")]
        assert got == [f"line {i}" for i in range(lines)]


async def test_what_a_throttled_app_says_while_it_stops_is_read_at_once(tmp_path: Path) -> None:
    # At 16 KiB/s its 20,000-line goodbye (~250 KB) would take ~12 s to be read, far past
    # stop_grace_s (1 s here): the stop lifts the limit, so the goodbye arrives whole, in time.
    svc = service("bye", child("goodbye.py"), restart="never", env={"GOODBYE_LINES": "20000"})
    async with supervised(tmp_path, svc, log_rate_kb=16) as h:
        inst = await h.sup.spawn("bye", "a")
        await h.logs.wait_for(lambda: h.logs.count("bye:a", "ready", "stdout") == 1)
        started = trio.current_time()
        await h.sup.stop("bye:a")
        assert trio.current_time() - started < 5
        assert inst.reason == "stopped"
        await h.logs.wait_for(lambda: h.logs.count("bye:a", "goodbye done", "stdout") == 1, within=20)
        assert h.logs.counts["bye:a", "stdout"] == 1 + 20_000 + 1
