"""storage_quota_mb: how much each instance's data dir holds, measured off the event loop.

A walk of a big tree takes long, so it runs in a worker thread, once a minute, one instance at a
time, and only for services that set a quota (or when asked for one instance)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import trio

from slum.supervisor.instance import Instance

MEASURE_EVERY_S = 60.0


def disk_usage(root: Path) -> int:
    """Bytes in files under root, like `du -sb` (symlinks not followed, each inode once)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for directory, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                continue  # removed while we walked
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1:
                if key in seen:
                    continue
                seen.add(key)
            total += st.st_size
    return total


async def measure(inst: Instance, data_dir: Path) -> int:
    path = data_dir / inst.service.name / inst.name
    used = await trio.to_thread.run_sync(disk_usage, path, abandon_on_cancel=True)
    inst.storage_bytes = used
    return used


async def run_measurements(
    instances: Callable[[], Iterable[Instance]],
    data_dir: Path,
    warn: Callable[[Instance, str], None],
    every_s: float = MEASURE_EVERY_S,
) -> None:
    """Measure each instance with a quota every `every_s`; say so once when it crosses 80% or
    100% (and again after it went back under)."""
    warned: dict[str, str | None] = {}
    while True:
        for inst in list(instances()):
            if not inst.service.storage_quota_mb:
                continue
            try:
                await measure(inst, data_dir)
            except OSError:
                continue
            warning = inst.storage()["storage_warning"]
            level = warning.split(":")[0] if warning else None
            if level != warned.get(inst.id):
                warned[inst.id] = level
                if warning:
                    warn(inst, warning)
        await trio.sleep(every_s)
