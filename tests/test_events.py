"""The hub's live fan-out: what a subscriber does not want never takes room in its queue, so one
instance's flood cannot crowd out another instance's lines (or state changes) it follows."""

from __future__ import annotations

import trio

from slum.events import Hub, LogLine, StateChanged, StoredLog


def line(n: int, instance: str) -> StoredLog:
    return StoredLog(n, LogLine(0.0, instance, instance.partition(":")[2], "stdout", "info", f"line {n}"))


async def test_a_flood_of_another_instance_does_not_crowd_out_the_followed_one() -> None:
    hub = Hub()
    with hub.subscribe(
        16, keep=lambda e: isinstance(e, StoredLog) and e.line.instance_id == "web:quiet"
    ) as sub:
        for n in range(5000):  # far more than the queue holds, nobody reading
            hub.publish(line(n, "web:loud"))
        hub.publish(line(5000, "web:quiet"))
        got = await sub.receive()
        assert got.id == 5000 and sub.take_missed() == 0
        with trio.move_on_after(0.05):
            extra = await sub.receive()
            raise AssertionError(f"not followed, yet queued: {extra}")


async def test_without_keep_everything_is_offered_and_the_excess_counted() -> None:
    hub = Hub()
    with hub.subscribe(16) as sub:
        for n in range(100):
            hub.publish(line(n, "web:loud"))
        hub.publish(StateChanged("web:quiet", "starting", "healthy", None))
        assert sub.take_missed() == 85  # 16 queued, the rest (the state change too) missed
        assert (await sub.receive()).id == 0
