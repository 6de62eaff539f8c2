"""One instance's limits and its cgroup: the limits written in the kernel's files (v1 or v2),
the wrapper that puts the child in the cgroup before the app runs, and what is read back (usage,
OOM kills) or done to the whole tree (kill, remove). Where the cgroups come from: cgroups.py."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MB = 1024 * 1024
KILL_ROUNDS = 200
DEFAULT_WEIGHT = 100  # cgroup v2's default cpu.weight; cpu_shares is in the same unit
V1_SHARES_PER_WEIGHT = 1024 / DEFAULT_WEIGHT  # v1's default cpu.shares is 1024

# The child joins its cgroups itself, between fork and exec of the app: spawning stays a vfork
# (no preexec_fn), and the app's first instruction already runs under its limits.
# Under cgroup v1 it writes 0 into each `tasks` file: the kernel moves the calling thread (the
# shell has one) without taking the global lock that a move of a whole process (a pid written
# into cgroup.procs) takes, and waiting for that lock's RCU grace period cost each start 6-20 ms
# on a quiet host. cgroup v2 moves only whole processes between cgroups: its cgroup.procs.
JOIN_SCRIPT = (
    'for f do [ "$f" = -- ] && break; case $f in */tasks) v=0;; *) v=$$;; esac; '
    'echo $v > "$f" || exit 125; shift; done; shift; exec "$@"'
)


class LimitError(Exception):
    """A configured limit that this host cannot apply; the message names the key."""


@dataclass(frozen=True)
class Limits:
    memory_mb: int | None = None
    swap_mb: int | None = None
    cpu_shares: int | None = None
    pids_max: int | None = None

    def wanted(self) -> dict[str, str]:
        """Key -> controller, for each limit that is set."""
        out: dict[str, str] = {}
        if self.memory_mb:
            out["memory_limit_mb"] = "memory"
        if self.swap_mb is not None:
            out["memory_swap_max"] = "memory"
        if self.cpu_shares is not None:
            out["cpu_shares"] = "cpu"
        if self.pids_max is not None:
            out["pids_max"] = "pids"
        return out


def cpu_weight(shares: int) -> int:
    """cpu_shares -> cgroup v2 cpu.weight: the same unit, clamped to the kernel's 1..10000."""
    return max(1, min(10000, shares))


def v1_shares(shares: int) -> int:
    """cpu_shares -> cgroup v1 cpu.shares, scaled so that the defaults of both agree."""
    return max(2, round(cpu_weight(shares) * V1_SHARES_PER_WEIGHT))


def read_file(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def write_file(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _procs(dirs: Iterable[Path]) -> set[int]:
    """Every process in the cgroups (several v1 hierarchies hold the same set: one is enough
    for a count; a kill reads them all)."""
    pids: set[int] = set()
    for d in dirs:
        pids.update(int(p) for p in (read_file(d / "cgroup.procs") or "").split())
    return pids


def kill_all(dirs: list[Path]) -> int:
    """SIGKILL every process in the cgroups until none is left (a fork between reading the list
    and the kill puts a new one in, so read again). Returns how many were killed."""
    killed = 0
    for d in dirs:
        if (d / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                write_file(d / "cgroup.kill", "1")
    for _ in range(KILL_ROUNDS):
        pids = _procs(dirs) - {os.getpid()}
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.005)
    return killed


def _read_bytes(path: str) -> bytes:
    if not path:
        return b""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return b""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _field(text: bytes, key: bytes) -> int:
    """The number after `key ` at the start of a line of a flat keyed file (memory.stat)."""
    at = text.find(b"\n" + key + b" ") + 1 if not text.startswith(key + b" ") else 0
    if at == 0 and not text.startswith(key + b" "):
        return 0
    end = text.find(b"\n", at)
    return int(text[at + len(key) + 1 : end if end >= 0 else None])


def remove_dir(d: Path) -> bool:
    # A cgroup stays busy for a moment after its last process died (until it is reaped).
    for _ in range(50):
        try:
            d.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as e:
            if e.errno != errno.EBUSY:
                return False
            time.sleep(0.01)
    return False


@dataclass
class InstanceCgroup:
    dirs: dict[str, Path]  # v1 controller name or "unified" -> the instance's cgroup
    limits: Limits
    failed_key: str = ""
    oom_base: int = 0  # the counter when this run began (a reused cgroup keeps its count)
    oom_counted: int = 0  # kills of this run already told
    _usage_files: tuple[str, str, str] | None = None

    def _dir(self, ctrl: str) -> Path | None:
        return self.dirs.get(ctrl) or self.dirs.get("unified")

    def apply(self) -> None:
        lim = self.limits
        unified = self.dirs.get("unified")
        mem, cpu, pids = self._dir("memory"), self._dir("cpu"), self._dir("pids")
        if lim.memory_mb and mem is not None:
            self.failed_key = "memory_limit_mb"
            limit = lim.memory_mb * MB
            if mem == unified:
                write_file(mem / "memory.max", str(limit))
                # Without a swap limit a hog would swap instead of being stopped at its limit.
                if (mem / "memory.swap.max").exists():
                    self.failed_key = "memory_swap_max"
                    write_file(mem / "memory.swap.max", str((lim.swap_mb or 0) * MB))
            else:
                write_file(mem / "memory.limit_in_bytes", str(limit))
                if (mem / "memory.memsw.limit_in_bytes").exists():
                    self.failed_key = "memory_swap_max"
                    write_file(mem / "memory.memsw.limit_in_bytes", str(limit + (lim.swap_mb or 0) * MB))
        elif lim.swap_mb is not None and mem is not None and mem == unified:
            self.failed_key = "memory_swap_max"
            write_file(mem / "memory.swap.max", str(lim.swap_mb * MB))
        if cpu is not None and lim.cpu_shares is not None:
            self.failed_key = "cpu_shares"
            if cpu == unified:
                write_file(cpu / "cpu.weight", str(cpu_weight(lim.cpu_shares)))
            else:
                write_file(cpu / "cpu.shares", str(v1_shares(lim.cpu_shares)))
        if pids is not None and lim.pids_max is not None:
            self.failed_key = "pids_max"
            write_file(pids / "pids.max", str(lim.pids_max))
        self.failed_key = ""

    def join_argv(self) -> list[str]:
        """The wrapper that puts the child in its cgroups and then execs the app."""
        files = [str(d / ("cgroup.procs" if c == "unified" else "tasks")) for c, d in self.dirs.items()]
        return ["/bin/sh", "-c", JOIN_SCRIPT, "slum-cgroup", *files, "--"]

    def new_oom_kills(self) -> int:
        """OOM kills of this run not told yet; they count as told from now on."""
        new = self.oom_kills() - self.oom_base - self.oom_counted
        self.oom_counted += max(new, 0)
        return max(new, 0)

    def oom_kills(self) -> int:
        """Processes the kernel's OOM killer killed in this cgroup (its own event counter)."""
        mem = self._dir("memory")
        if mem is None:
            return 0
        name = "memory.events" if mem == self.dirs.get("unified") else "memory.oom_control"
        for line in (read_file(mem / name) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def pids(self) -> set[int]:
        return _procs(list(self.dirs.values())[:1])

    def kill(self) -> int:
        return kill_all(list(self.dirs.values()))

    def remove(self) -> bool:
        results = [remove_dir(d) for d in self.dirs.values()]
        return all(results)

    def usage(self) -> tuple[float | None, int | None]:
        """(CPU seconds used, memory in use without reclaimable file cache) of the whole tree,
        from the kernel's own counters: two small reads on v1, three on v2; every tick, so the
        paths are made once and the bytes parsed by hand."""
        if self._usage_files is None:
            unified = self.dirs.get("unified")
            acct, mem = self._dir("cpuacct"), self._dir("memory")
            self._usage_files = (
                str(acct / ("cpu.stat" if acct == unified else "cpuacct.usage")) if acct else "",
                str(mem / "memory.stat") if mem else "",
                str(mem / "memory.current") if mem and mem == unified else "",
            )
        cpu_file, stat_file, current_file = self._usage_files
        cpu_s = mem_b = None
        raw = _read_bytes(cpu_file)
        if raw and current_file:
            cpu_s = _field(raw, b"usage_usec") / 1e6
        elif raw:
            cpu_s = int(raw) / 1e9
        stat = _read_bytes(stat_file)
        if stat and current_file:
            current = _read_bytes(current_file)
            if current:
                mem_b = max(0, int(current) - _field(stat, b"inactive_file"))
        elif stat:
            mem_b = max(
                0,
                _field(stat, b"total_rss")
                + _field(stat, b"total_cache")
                - _field(stat, b"total_inactive_file"),
            )
        return cpu_s, mem_b

    def tasks(self) -> int | None:
        """Processes and threads, as the pids controller counts them."""
        pids = self._dir("pids")
        raw = read_file(pids / "pids.current") if pids is not None else None
        return int(raw) if raw else None
