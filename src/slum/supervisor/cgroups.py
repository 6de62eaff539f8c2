"""Where instances' cgroups live: what this host offers (detected at start, described in one log
line), slum's own subtree in it, and the cleanup of subtrees a killed slum left. An instance's
own cgroup (limits, join, usage, OOM kills, kill) is limits.py.

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
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from slum.supervisor.limits import (
    InstanceCgroup,
    LimitError,
    Limits,
    kill_all,
    read_file,
    remove_dir,
    write_file,
)

ROOT_ENV = "SLUM_CGROUP_ROOT"
DEFAULT_ROOT = Path("/sys/fs/cgroup")
V1_NAMES = ("memory", "cpu", "cpuacct", "pids")


def owner_key(database: str | os.PathLike[str]) -> str:
    return hashlib.sha256(os.fsencode(os.path.abspath(database))).hexdigest()[:10]


def _own_paths() -> dict[str, str]:
    """/proc/self/cgroup: hierarchy ("0" is v2, else each v1 controller name) -> our path."""
    out: dict[str, str] = {}
    text = read_file(Path("/proc/self/cgroup")) or ""
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

        unified = next((p for p in (root, root / "unified") if (p / "cgroup.controllers").exists()), None)
        v2_parent = place(unified, own.get("0")) if unified else None
        # What slum's own cgroup was given (a delegated subtree may have fewer than the root).
        v2 = set((read_file(v2_parent / "cgroup.controllers") or "").split()) if v2_parent else set()
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
        for ctrl, key in (("memory", "memory_limit_mb"), ("cpu", "cpu_shares"), ("pids", "pids_max")):
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
            write_file(h.base / "cgroup.subtree_control", " ".join(f"+{c}" for c in self._v2_controllers()))
        elif h.controller == "memory":
            # Older v1 kernels count a child's memory in its parent only when asked to.
            with contextlib.suppress(OSError):
                write_file(h.base / "memory.use_hierarchy", "1")
        self._made.add(h.base)

    def _controllers_of(self, h: Hierarchy) -> set[str]:
        return {c for c, o in self.hierarchies.items() if o.base == h.base}

    def _v2_controllers(self) -> list[str]:
        return sorted(
            {h.controller for h in self.hierarchies.values() if h.version == 2 and h.controller != "cpuacct"}
        )

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
            raise LimitError(
                "memory_swap_max cannot be applied: this host has no swap accounting in its memory cgroup"
            )
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
                raise LimitError(
                    f"{keys[0]} cannot be applied: cannot create a cgroup under "
                    f"{e.filename or h.parent}: {e.strerror or e}"
                ) from None
            cg.dirs[h.controller if h.version == 1 else "unified"] = d
        if not cg.dirs:
            return None
        try:
            cg.apply()
        except OSError as e:
            cg.remove()
            raise LimitError(f"{cg.failed_key} cannot be applied: {e.strerror or e} ({e.filename})") from None
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
                    killed += kill_all([child])
                    remove_dir(child)
                remove_dir(entry)
        return killed

    def close(self) -> None:
        """On stop: remove slum's subtree (empty by then; what is not stays for the next start)."""
        for h in self._distinct():
            for child in _children(h.base):
                remove_dir(child)
            remove_dir(h.base)
        self._made.clear()


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def _enable_v2(parent: Path, controllers: list[str]) -> None:
    want = " ".join(f"+{c}" for c in controllers)
    try:
        write_file(parent / "cgroup.subtree_control", want)
    except OSError as e:
        if e.errno != errno.EBUSY:
            raise
        # "No internal processes": a non-root v2 cgroup that holds processes cannot hand
        # controllers to children. If it holds only slum and its own helpers (the watchdog),
        # move them one level down.
        me = os.getpid()
        procs = [int(p) for p in (read_file(parent / "cgroup.procs") or "").split()]
        ours = [p for p in procs if p == me or _parent_of(p) == me]
        if len(ours) != len(procs):
            raise OSError(
                e.errno,
                "slum's cgroup holds other processes; start slum in a "
                "cgroup of its own (systemd: Delegate=yes)",
                str(parent),
            ) from None
        leaf = parent / "slum-main"
        leaf.mkdir(exist_ok=True)
        for pid in ours:
            write_file(leaf / "cgroup.procs", str(pid))
        write_file(parent / "cgroup.subtree_control", want)


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
