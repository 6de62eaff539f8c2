"""How far an instance is kept from the others: `process` (its own process group and cgroup),
`namespace` (also its own PID and mount namespaces and a private /tmp) or `sandbox` (gVisor).

Each mode is a prefix to the app's argv, so spawning stays one vfork + exec (see process.py).
In `namespace` mode util-linux's `unshare --fork` stays outside as the parent (it waits and
passes on the exit status; it keeps running through SIGTERM) and a small shell is pid 1 inside:
an app that is pid 1 would ignore SIGTERM unless it installs a handler (the kernel protects a
namespace's init), so a plain app could only be stopped by SIGKILL. The shell runs the app in
the foreground, reaps orphans, and ignores SIGTERM itself; the app gets the signal directly, as
it is in slum's process group like in `process` mode. When pid 1 exits the kernel kills what is
left in the namespace, and `--kill-child` ties pid 1 to unshare, which setpriv ties to slum.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

MODES = ("process", "namespace", "sandbox")

# The private /tmp is made aside (on a staging directory outside it), given back the paths under
# /tmp the app needs (its workdir, the data dir), then moved over /tmp. The trailing `exit`
# keeps the shell from exec'ing the app in its place (the app would become pid 1).
NAMESPACE_INIT = (
    'o=$1 s=$2; shift 2; mount -t tmpfs -o "mode=1777,nosuid,nodev$o" slum-tmp "$s" || exit 125; '
    'while [ "$1" != -- ]; do d="$s/${1#/tmp/}"; mkdir -p "$d" && mount --bind "$1" "$d" '
    '|| exit 125; shift; done; shift; mount --move "$s" /tmp || exit 125; "$@"; exit $?'
)


class IsolationError(Exception):
    """The isolation asked for cannot be had on this host; the message says why."""


def available() -> dict[str, str | None]:
    """Mode -> None where it can run here, else why not."""
    root = os.geteuid() == 0
    return {
        "process": None,
        "namespace": None
        if shutil.which("unshare") and root
        else ("needs util-linux's unshare" if root else "needs root (CAP_SYS_ADMIN)"),
        "sandbox": None if shutil.which("runsc") else "gVisor's runsc is not installed",
    }


def prefix(
    mode: str, *, tmp_mb: int | None = None, keep: Sequence[Path] = (), stage: Path | None = None
) -> list[str]:
    """The argv that runs an app in `mode`, to be followed by the app's argv. `keep`: paths the
    app needs that may lie under /tmp; `stage`: an existing empty directory outside /tmp, or
    under it but not below a kept path (the private /tmp is made there first)."""
    if mode == "process":
        return []
    why = available().get(mode, f"unknown isolation {mode!r}")
    if why is not None:
        raise IsolationError(f'isolation = "{mode}" cannot be applied: {why}')
    if mode == "namespace":
        unshare = shutil.which("unshare")
        assert unshare is not None
        if stage is None:
            raise IsolationError('isolation = "namespace" needs a staging directory')
        size = f",size={tmp_mb}m" if tmp_mb else ""
        under = sorted({str(k) for k in keep if k.is_relative_to("/tmp") and k != Path("/tmp")})
        # A kept path inside another kept one comes along with it.
        outer = [k for k in under if not any(k != o and k.startswith(o + "/") for o in under)]
        return [
            unshare,
            "--fork",
            "--pid",
            "--mount-proc",
            "--mount",
            "--propagation",
            "private",
            "--kill-child",
            "--",
            "/bin/sh",
            "-c",
            NAMESPACE_INIT,
            "slum-init",
            size,
            str(stage),
            *outer,
            "--",
        ]
    runsc = shutil.which("runsc")
    assert runsc is not None
    # The host's network, so slum reaches the app on its port; slum's own cgroup holds the
    # sandbox (runsc is told not to make its own).
    return [runsc, "--network=host", "--ignore-cgroups", "do", "--"]
