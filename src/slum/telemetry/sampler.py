"""Every second: CPU, memory, open files and threads of each instance's whole process group
(workers it forked included), of slum itself, and of the host. psutil reads /proc, which blocks,
so a tick runs in a worker thread; the results land in per-second rings for the last hour."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import trio

from slum.supervisor import Supervisor
from slum.supervisor.limits import InstanceCgroup
from slum.telemetry.requests import RequestMetrics, Ring

INTERVAL_S = 1.0
RESCAN_TICKS = 10
SETTLE_TICKS = 5


@dataclass(frozen=True, slots=True)
class GroupStats:
    cpu_percent: float
    rss_bytes: int
    open_fds: int
    threads: int
    processes: int


@dataclass
class Rings:
    cpu: Ring = field(default_factory=Ring)
    rss: Ring = field(default_factory=Ring)


@dataclass
class SamplerStatistics:
    ticks: int = 0
    last_tick_ms: float = 0.0
    busy_s: float = 0.0


class Sampler:
    def __init__(self, supervisor: Supervisor | None, data_dir: Path) -> None:
        self.supervisor = supervisor
        self.data_dir = data_dir
        self.instances: dict[str, GroupStats] = {}
        self.own: GroupStats | None = None
        self.host: dict[str, float] = {}
        self.rings: dict[str, Rings] = {}
        self.stats = SamplerStatistics()
        self._cpu_prev: dict[int, tuple[float, float]] = {}
        self._procs: dict[int, psutil.Process] = {}
        self._members: dict[int, list[psutil.Process]] = {}
        self._scanned: set[int] = set()
        self._rescan_in = 0
        self._settle = 0
        self._cg_prev: dict[str, tuple[float, float]] = {}
        self._cg_slow: dict[str, tuple[int, int, int]] = {}
        self._cg_rescan_in = 0

    def _cpu(self, proc: psutil.Process, now: float) -> tuple[float, psutil.Process]:
        cached = self._procs.get(proc.pid)
        if cached is None or cached.create_time() != proc.create_time():
            cached = self._procs[proc.pid] = proc
        times = cached.cpu_times()
        used = times.user + times.system
        prev = self._cpu_prev.get(proc.pid)
        self._cpu_prev[proc.pid] = (used, now)
        if prev is None or now <= prev[1]:
            return 0.0, cached
        return max(0.0, (used - prev[0]) / (now - prev[1]) * 100), cached

    def _group(self, members: list[psutil.Process], now: float) -> GroupStats:
        cpu = 0.0
        rss = fds = threads = 0
        for proc in members:
            try:
                percent, cached = self._cpu(proc, now)
                with cached.oneshot():
                    rss += cached.memory_info().rss
                    fds += cached.num_fds()
                    threads += cached.num_threads()
                cpu += percent
            except psutil.Error:
                continue
        return GroupStats(round(cpu, 1), rss, fds, threads, len(members))

    def cgroup_sample(
        self,
        cgroups: dict[str, InstanceCgroup],
        now: float,
    ) -> dict[str, GroupStats]:
        """Instances in a cgroup of their own: the kernel's counters for the whole tree, two small
        file reads each for CPU and memory, instead of reading every process. Processes, threads
        and open files change slowly and cost a read per process: every RESCAN_TICKS ticks."""
        out: dict[str, GroupStats] = {}
        rescan = self._cg_rescan_in <= 0
        self._cg_rescan_in = RESCAN_TICKS if rescan else self._cg_rescan_in - 1
        for name, cg in cgroups.items():
            cpu_s, mem = cg.usage()
            slow = self._cg_slow.get(name)
            if slow is None or rescan:
                pids = cg.pids()
                fds = 0
                for pid in pids:
                    try:
                        fds += len(os.listdir(f"/proc/{pid}/fd"))
                    except OSError:
                        continue
                tasks = cg.tasks()
                slow = self._cg_slow[name] = (fds, tasks if tasks is not None else len(pids), len(pids))
            percent = 0.0
            if cpu_s is not None:
                prev = self._cg_prev.get(name)
                self._cg_prev[name] = (cpu_s, now)
                if prev is not None and now > prev[1]:
                    percent = max(0.0, (cpu_s - prev[0]) / (now - prev[1]) * 100)
            out[name] = GroupStats(round(percent, 1), mem or 0, *slow)
        for gone in [n for n in self._cg_slow if n not in cgroups]:
            self._cg_slow.pop(gone, None)
            self._cg_prev.pop(gone, None)
        return out

    def tick_sync(
        self, groups: dict[int, str], cgroups: dict[str, InstanceCgroup] | None = None
    ) -> dict[str, GroupStats]:
        """One sample (in a worker thread): every process, matched to its instance by group;
        instances with a cgroup from the cgroup."""
        now = time.monotonic()
        if set(groups) != self._scanned:
            self._settle = SETTLE_TICKS  # a new process forks its workers in its first seconds
        if self._settle > 0 or self._rescan_in <= 0:
            # Walking every process costs a syscall each: only every RESCAN_TICKS ticks, and
            # for a few ticks after an instance (re)started. Later forks show up at the next.
            self._settle -= 1
            by_group: dict[int, list[psutil.Process]] = {pgid: [] for pgid in groups}
            if groups:
                for proc in psutil.process_iter():
                    try:
                        pgid = os.getpgid(proc.pid)
                    except (ProcessLookupError, PermissionError):
                        continue
                    if pgid in by_group:
                        by_group[pgid].append(proc)
            self._members, self._scanned, self._rescan_in = by_group, set(groups), RESCAN_TICKS
        else:
            self._rescan_in -= 1
        members = {
            groups[pgid]: [p for p in procs if p.is_running()]
            for pgid, procs in self._members.items()
            if pgid in groups
        }
        result = {name: self._group(procs, now) for name, procs in members.items()}
        result.update(self.cgroup_sample(cgroups or {}, now))
        self.own = self._group([psutil.Process()], now)
        load1, load5, _ = os.getloadavg()
        memory = psutil.virtual_memory()
        try:
            disk = psutil.disk_usage(str(self.data_dir if self.data_dir.exists() else Path(".")))
            disk_free, disk_total = float(disk.free), float(disk.total)
        except OSError:
            disk_free = disk_total = 0.0
        self.host = {
            "load1": load1,
            "load5": load5,
            "cpus": float(os.cpu_count() or 1),
            "memory_total_bytes": float(memory.total),
            "memory_available_bytes": float(memory.available),
            "disk_free_bytes": disk_free,
            "disk_total_bytes": disk_total,
        }
        alive = {p.pid for procs in members.values() for p in procs} | {os.getpid()}
        for pid in list(self._cpu_prev):
            if pid not in alive:
                self._cpu_prev.pop(pid, None)
                self._procs.pop(pid, None)
        return result

    async def tick(self) -> None:
        insts = self.supervisor.instances if self.supervisor else {}
        groups = {i.pid: i.id for i in insts.values() if i.pid and i.cgroup is None}
        cgroups = {i.id: i.cgroup for i in insts.values() if i.pid and i.cgroup is not None}
        started = time.perf_counter()
        result = await trio.to_thread.run_sync(self.tick_sync, groups, cgroups)
        elapsed = time.perf_counter() - started
        self.stats.ticks += 1
        self.stats.last_tick_ms = round(elapsed * 1000, 2)
        self.stats.busy_s += elapsed
        second = int(time.time())
        self.instances = result
        for inst_id, stats in result.items():
            if inst_id not in insts:  # removed by a reload while the tick ran
                continue
            rings = self.rings.setdefault(inst_id, Rings())
            rings.cpu.set(second, stats.cpu_percent)
            rings.rss.set(second, stats.rss_bytes)
        if self.own is not None:
            rings = self.rings.setdefault("slum", Rings())
            rings.cpu.set(second, self.own.cpu_percent)
            rings.rss.set(second, self.own.rss_bytes)

    async def run(
        self, interval_s: float = INTERVAL_S, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await self.tick()
            await trio.sleep(interval_s)

    def of(self, instance_id: str) -> GroupStats | None:
        """The instance's process group at the last tick (None if it had no process then)."""
        return self.instances.get(instance_id)

    def snapshot(self) -> list[dict[str, Any]]:
        now_ms = int(time.time() * 1000)
        out: list[dict[str, Any]] = []
        for name, stats in self.instances.items():
            labels = {"instance": name}
            for metric, value in (
                ("cpu_percent", stats.cpu_percent),
                ("rss_bytes", stats.rss_bytes),
                ("open_fds", stats.open_fds),
                ("threads", stats.threads),
                ("processes", stats.processes),
            ):
                out.append(
                    {"name": f"instance_{metric}", "value": value, "labels": labels, "timestamp": now_ms}
                )
        if self.own is not None:
            for metric, value in (
                ("cpu_percent", self.own.cpu_percent),
                ("rss_bytes", self.own.rss_bytes),
                ("open_fds", self.own.open_fds),
                ("threads", self.own.threads),
            ):
                out.append({"name": f"slum_{metric}", "value": value, "labels": {}, "timestamp": now_ms})
        for metric, value in self.host.items():
            out.append({"name": f"host_{metric}", "value": value, "labels": {}, "timestamp": now_ms})
        return out


def _stats(values: list[float | None]) -> tuple[float, float, float] | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return sum(present) / len(present), min(present), max(present)


def minute_rows(
    minute: int,
    sampler: Sampler,
    requests: RequestMetrics,
) -> list[tuple[int, str, dict[str, str], float, float, float]]:
    """What the minute starting at `minute` adds to metrics_history: min/avg/max per series."""
    end = minute + 59
    rows: list[tuple[int, str, dict[str, str], float, float, float]] = []
    for name, rings in sampler.rings.items():
        labels = {"instance": name}
        for metric, ring in (("cpu_percent", rings.cpu), ("rss_bytes", rings.rss)):
            stats = _stats(ring.series(60, end))
            if stats is not None:
                rows.append((minute, metric, labels, *stats))
    requests.settle()
    for target, series in requests.series.items():
        labels = {"target": target}
        counts = series.requests.series(60, end, fill=0.0)
        if not any(counts):
            continue
        rows.append((minute, "requests_per_s", labels, *_stats(counts)))  # type: ignore[misc]
        rows.append((minute, "errors_per_s", labels, *_stats(series.errors.series(60, end, fill=0.0))))  # type: ignore[misc]
        hist = (
            series.minute
            if series.minute_start == minute
            else series.last_minute
            if series.minute_start == minute + 60
            else None
        )
        if hist is not None and hist.count:
            rows.append((minute, "latency_p99_ms", labels, hist.quantile(0.99), hist.quantile(0.5), hist.max))
    if sampler.host:
        for metric in ("load1", "memory_available_bytes", "disk_free_bytes"):
            value = sampler.host[metric]
            rows.append((minute, f"host_{metric}", {}, value, value, value))
    return rows
