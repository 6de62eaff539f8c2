"""Each instance in its own cgroup: limits set before the app runs, usage read exactly, OOM kills
counted, and every process of the instance found again (a process that left its process group
cannot leave its cgroup).

slum makes one subtree per owner below the cgroup it runs in, in every hierarchy it uses:
`<own cgroup>/slum-<database key>-<pid>/<service>.<id>`. Instances are siblings (not grouped per
service) so that cpu_shares compare instance with instance. Below slum's own cgroup, so a slum
that is itself limited (a container, a systemd unit with Delegate=yes) keeps its children inside
its own limits. The owner in the name lets a later slum on the same database clean up after one
that was SIGKILLed without touching the subtree of a slum that is still alive.

Two layouts: cgroup v2 (one hierarchy, `memory.max`, `cpu.weight`, `pids.max`) and v1 (one
hierarchy per controller: `memory.limit_in_bytes`, `cpu.shares`, `pids.max`; CPU usage from
`cpuacct`). A controller comes from v2 where the unified hierarchy has it, else from v1.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT_ENV = "SLUM_CGROUP_ROOT"
DEFAULT_ROOT = Path("/sys/fs/cgroup")
V1_NAMES = ("memory", "cpu", "cpuacct", "pids")
MB = 1024 * 1024
KILL_ROUNDS = 200
DEFAULT_WEIGHT = 100  # cgroup v2's default cpu.weight; cpu_shares is in the same unit
V1_SHARES_PER_WEIGHT = 1024 / DEFAULT_WEIGHT  # v1's default cpu.shares is 1024

# The child joins its cgroups itself, between fork and exec of the app: spawning stays a vfork
# (no preexec_fn), and the app's first instruction already runs under its limits.
JOIN_SCRIPT = ('for f do [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; shift; done; '
               'shift; exec "$@"')


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


def owner_key(database: str | os.PathLike[str]) -> str:
    return hashlib.sha256(os.fsencode(os.path.abspath(database))).hexdigest()[:10]


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _own_paths() -> dict[str, str]:
    """/proc/self/cgroup: hierarchy ("0" is v2, else each v1 controller name) -> our path."""
    out: dict[str, str] = {}
    text = _read(Path("/proc/self/cgroup")) or ""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        ident, names, path = parts
        if ident == "0" and not names:
            out["0"] = path
        for name in names.split(","):
            if name:
                out[name] = path
    return out


@dataclass
class Hierarchy:
    """Where one controller lives: the directory of slum's subtree in its hierarchy."""

    controller: str
    version: int
    base: Path  # slum's own subtree (slum-<owner>), created on first use
    parent: Path  # the cgroup slum runs in, or the hierarchy's root


@dataclass
class Cgroups:
    """What this host offers, detected at start, and slum's subtree in it."""

    root: Path
    key: str
    owner: str
    hierarchies: dict[str, Hierarchy] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    swap: bool = False
    _made: set[Path] = field(default_factory=set)

    @classmethod
    def detect(cls, key: str, root: Path | None = None) -> Cgroups:
        """`key` names the owner (e.g. owner_key(database)); this process's pid is added."""
        env_root = os.environ.get(ROOT_ENV)
        root = root or (Path(env_root) if env_root else DEFAULT_ROOT)
        self = cls(root, key, f"{key}-{os.getpid()}")
        own = _own_paths() if root == DEFAULT_ROOT else {}
        name = f"slum-{self.owner}"

        def place(mount: Path, rel: str | None) -> Path:
            here = mount / rel.lstrip("/") if rel else mount
            return here if here.is_dir() else mount

        unified = next((p for p in (root, root / "unified") if (p / "cgroup.controllers").exists()),
                       None)
        v2_parent = place(unified, own.get("0")) if unified else None
        # What slum's own cgroup was given (a delegated subtree may have fewer than the root).
        v2 = set((_read(v2_parent / "cgroup.controllers") or "").split()) if v2_parent else set()
        for ctrl in V1_NAMES:
            if v2_parent is not None and (ctrl in v2 or (ctrl == "cpuacct" and "cpu" in v2)):
                self.hierarchies[ctrl] = Hierarchy(ctrl, 2, v2_parent / name, v2_parent)
                continue
            mount = root / ctrl
            if (mount / "cgroup.procs").exists():
                parent = place(mount, own.get(ctrl))
                self.hierarchies[ctrl] = Hierarchy(ctrl, 1, parent / name, parent)
            else:
                self.missing[ctrl] = f"no {ctrl} controller under {root}"
        mem = self.hierarchies.get("memory")
        if mem is not None and mem.version == 1:
            self.swap = (mem.parent / "memory.memsw.limit_in_bytes").exists()
        elif mem is not None:
            # The root of a v2 hierarchy has no memory files: assume the kernel's default there
            # and let the write refuse the spawn where the host turned swap accounting off.
            self.swap = (mem.parent / "memory.swap.max").exists() or mem.parent == unified
        return self

    def describe(self) -> str:
        """One line for the start log: which limits this host can enforce, and how."""
        if not self.hierarchies:
            return f"limits: none (no cgroup controllers under {self.root})"
        parts = []
        for ctrl, key in (("memory", "memory_limit_mb"), ("cpu", "cpu_shares"),
                          ("pids", "pids_max")):
            h = self.hierarchies.get(ctrl)
            parts.append(f"{key} via cgroup v{h.version} {ctrl}" if h else f"{key}: unavailable")
        parts.append("memory_swap_max: " + ("yes" if self.swap else "unavailable"))
        ns = "namespace: " + ("unshare" if _which("unshare") else "unavailable")
        sandbox = "sandbox: " + ("runsc" if _which("runsc") else "unavailable")
        return f"limits: {', '.join(parts)}; {ns}; {sandbox}; subtree slum-{self.owner}"

    def _ensure_base(self, h: Hierarchy) -> None:
        if h.base in self._made:
            return
        if h.version == 2:
            _enable_v2(h.parent, self._v2_controllers())
        h.base.mkdir(exist_ok=True)
        if h.version == 2:
            _write(h.base / "cgroup.subtree_control",
                   " ".join(f"+{c}" for c in self._v2_controllers()))
        elif h.controller == "memory":
            # Older v1 kernels count a child's memory in its parent only when asked to.
            with contextlib.suppress(OSError):
                _write(h.base / "memory.use_hierarchy", "1")
        self._made.add(h.base)

    def _controllers_of(self, h: Hierarchy) -> set[str]:
        return {c for c, o in self.hierarchies.items() if o.base == h.base}

    def _v2_controllers(self) -> list[str]:
        return sorted({h.controller for h in self.hierarchies.values()
                       if h.version == 2 and h.controller != "cpuacct"})

    def _distinct(self) -> list[Hierarchy]:
        seen: set[Path] = set()
        out = []
        for h in self.hierarchies.values():
            if h.base not in seen:
                seen.add(h.base)
                out.append(h)
        return out

    def check(self, limits: Limits) -> None:
        """Refuse, naming the key, a limit this host cannot apply at all."""
        for key, ctrl in limits.wanted().items():
            if ctrl not in self.hierarchies:
                raise LimitError(f"{key} cannot be applied: {self.missing.get(ctrl, ctrl)}")
        if limits.swap_mb is not None and not self.swap:
            raise LimitError("memory_swap_max cannot be applied: this host has no swap "
                             "accounting in its memory cgroup")
        mem = self.hierarchies.get("memory")
        if limits.swap_mb is not None and not limits.memory_mb and mem and mem.version == 1:
            raise LimitError("memory_swap_max needs memory_limit_mb on cgroup v1")

    def create(self, service: str, name: str, limits: Limits) -> InstanceCgroup | None:
        """The instance's cgroup with its limits written, or None where the host has none and
        no limit asks for one. Raises LimitError (naming the key) where a limit cannot apply."""
        self.check(limits)
        if not self.hierarchies:
            return None
        wanted = limits.wanted()
        cg = InstanceCgroup({}, limits)
        for h in self._distinct():
            d = h.base / f"{service}.{name}"
            try:
                self._ensure_base(h)
                with contextlib.suppress(FileExistsError):
                    d.mkdir()
            except OSError as e:
                ctrls = self._controllers_of(h)
                keys = sorted(k for k, c in wanted.items() if c in ctrls)
                if not keys:
                    continue  # nothing asked of this controller: do without it
                cg.remove()
                raise LimitError(f"{keys[0]} cannot be applied: cannot create a cgroup under "
                                 f"{e.filename or h.parent}: {e.strerror or e}") from None
            cg.dirs[h.controller if h.version == 1 else "unified"] = d
        if not cg.dirs:
            return None
        try:
            cg.apply()
        except OSError as e:
            cg.remove()
            raise LimitError(f"{cg.failed_key} cannot be applied: {e.strerror or e} "
                             f"({e.filename})") from None
        # A cgroup left by an earlier run (busy when it was to be removed) keeps its counters.
        cg.oom_base = cg.oom_kills()
        return cg

    def reap_leftovers(self) -> int:
        """Kill what is left in the subtrees of dead slums on the same database, and remove
        them. Returns the number of processes killed."""
        killed = 0
        prefix = f"slum-{self.key}-"
        for h in self._distinct():
            try:
                entries = list(h.parent.iterdir())
            except OSError:
                continue
            for entry in entries:
                if not entry.name.startswith(prefix) or entry == h.base or _alive(entry):
                    continue
                for child in _children(entry):
                    killed += _kill_all([child])
                    _rmdir(child)
                _rmdir(entry)
        return killed

    def close(self) -> None:
        """On stop: remove slum's subtree (empty by then; what is not stays for the next start)."""
        for h in self._distinct():
            for child in _children(h.base):
                _rmdir(child)
            _rmdir(h.base)
        self._made.clear()


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def _enable_v2(parent: Path, controllers: list[str]) -> None:
    want = " ".join(f"+{c}" for c in controllers)
    try:
        _write(parent / "cgroup.subtree_control", want)
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
        # "No internal processes": a non-root v2 cgroup that holds processes cannot hand
        # controllers to children. If it holds only slum and its own helpers (the watchdog),
        # move them one level down.
        me = os.getpid()
        procs = [int(p) for p in (_read(parent / "cgroup.procs") or "").split()]
        ours = [p for p in procs if p == me or _parent_of(p) == me]
        if len(ours) != len(procs):
            raise OSError(e.errno, "slum's cgroup holds other processes; start slum in a "
                          "cgroup of its own (systemd: Delegate=yes)", str(parent)) from None
        leaf = parent / "slum-main"
        leaf.mkdir(exist_ok=True)
        for pid in ours:
            _write(leaf / "cgroup.procs", str(pid))
        _write(parent / "cgroup.subtree_control", want)


def _parent_of(pid: int) -> int | None:
    try:
        return int(psutil.Process(pid).ppid())
    except psutil.Error:
        return None


def _alive(base: Path) -> bool:
    """Whether the slum that owns subtree `slum-<key>-<pid>` still runs: a pid alive since before
    the subtree was made (a later process with a reused pid does not count)."""
    try:
        pid = int(base.name.rsplit("-", 1)[1])
        made = base.stat().st_mtime
        created: float = psutil.Process(pid).create_time()
        return created <= made + 1
    except (ValueError, IndexError, OSError, psutil.Error):
        return False


def _children(base: Path) -> list[Path]:
    try:
        return [p for p in base.iterdir() if p.is_dir()]
    except OSError:
        return []


def _procs(dirs: Iterable[Path]) -> set[int]:
    """Every process in the cgroups (several v1 hierarchies hold the same set: one is enough
    for a count; a kill reads them all)."""
    pids: set[int] = set()
    for d in dirs:
        pids.update(int(p) for p in (_read(d / "cgroup.procs") or "").split())
    return pids


def _kill_all(dirs: list[Path]) -> int:
    """SIGKILL every process in the cgroups until none is left (a fork between reading the list
    and the kill puts a new one in, so read again). Returns how many were killed."""
    killed = 0
    for d in dirs:
        if (d / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(d / "cgroup.kill", "1")
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
    return int(text[at + len(key) + 1:end if end >= 0 else None])


def _rmdir(d: Path) -> bool:
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
    oom_base: int = 0
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
                _write(mem / "memory.max", str(limit))
                # Without a swap limit a hog would swap instead of being stopped at its limit.
                if (mem / "memory.swap.max").exists():
                    self.failed_key = "memory_swap_max"
                    _write(mem / "memory.swap.max", str((lim.swap_mb or 0) * MB))
            else:
                _write(mem / "memory.limit_in_bytes", str(limit))
                if (mem / "memory.memsw.limit_in_bytes").exists():
                    self.failed_key = "memory_swap_max"
                    _write(mem / "memory.memsw.limit_in_bytes",
                           str(limit + (lim.swap_mb or 0) * MB))
        elif lim.swap_mb is not None and mem is not None and mem == unified:
            self.failed_key = "memory_swap_max"
            _write(mem / "memory.swap.max", str(lim.swap_mb * MB))
        if cpu is not None and lim.cpu_shares is not None:
            self.failed_key = "cpu_shares"
            if cpu == unified:
                _write(cpu / "cpu.weight", str(cpu_weight(lim.cpu_shares)))
            else:
                _write(cpu / "cpu.shares", str(v1_shares(lim.cpu_shares)))
        if pids is not None and lim.pids_max is not None:
            self.failed_key = "pids_max"
            _write(pids / "pids.max", str(lim.pids_max))
        self.failed_key = ""

    def join_argv(self) -> list[str]:
        """The wrapper that puts the child in its cgroups and then execs the app."""
        files = [str(d / "cgroup.procs") for d in self.dirs.values()]
        return ["/bin/sh", "-c", JOIN_SCRIPT, "slum-cgroup", *files, "--"]

    def oom_kills(self) -> int:
        """Processes the kernel's OOM killer killed in this cgroup (its own event counter)."""
        mem = self._dir("memory")
        if mem is None:
            return 0
        name = "memory.events" if mem == self.dirs.get("unified") else "memory.oom_control"
        for line in (_read(mem / name) or "").splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def pids(self) -> set[int]:
        return _procs(list(self.dirs.values())[:1])

    def kill(self) -> int:
        return _kill_all(list(self.dirs.values()))

    def remove(self) -> bool:
        results = [_rmdir(d) for d in self.dirs.values()]
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
                str(mem / "memory.current") if mem and mem == unified else "")
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
            mem_b = max(0, _field(stat, b"total_rss") + _field(stat, b"total_cache")
                        - _field(stat, b"total_inactive_file"))
        return cpu_s, mem_b

    def tasks(self) -> int | None:
        """Processes and threads, as the pids controller counts them."""
        pids = self._dir("pids")
        raw = _read(pids / "pids.current") if pids is not None else None
        return int(raw) if raw else None
