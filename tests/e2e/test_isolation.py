"""Limits and isolation through the real CLI: a tenant that tries to hurt its neighbours is
contained and named in `ps`, the logs and the metrics; a limit that cannot be applied refuses the
start with a clear reason; a namespaced instance does not outlive a SIGKILLed slum."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from slum.supervisor.cgroups import Cgroups, owner_key
from tests.conftest import PYTHON
from tests.e2e.conftest import Slum, write_config

HOST = Cgroups.detect("probe")
ROOT = os.geteuid() == 0
NEEDS_MEMORY = pytest.mark.skipif(
    not ROOT or "memory" not in HOST.hierarchies, reason="needs root and the memory cgroup controller"
)

CONFIG = """
[settings]
data_dir = "./data"
health_check_interval = 0.5
stop_grace_s = 2

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"
{web_extra}

[service.hog]
command = ["{python}", "{children}/memhog.py"]
memory_limit_mb = 64
restart = "never"

[service.hog.env]
HOG_MB = "200"

[instances]
web = ["one"]
"""


def configure(slum: Slum, web_extra: str = "") -> None:
    write_config(slum.dir, CONFIG.replace("{web_extra}", web_extra))


def wait_for(predicate, within: float = 30, every: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@NEEDS_MEMORY
def test_memory_hog_is_contained_and_named_in_ps_logs_and_metrics(slum: Slum) -> None:
    configure(slum)
    slum.start()
    assert "limits: memory_limit_mb via cgroup" in slum.log.read_text()
    neighbour = slum.cli_json("ps")[0]
    slum.cli("spawn", "hog:a")
    hog = wait_for(
        lambda: next(
            (i for i in slum.cli_json("ps") if i["id"] == "hog:a" and i["status"] == "stopped"), None
        )
    )
    assert hog, slum.cli_json("ps")
    assert hog["reason"] == "killed: out of memory (limit 64 MB)"
    assert hog["oom_kills"] == 1
    table = slum.cli("ps", check=True).stdout
    assert "killed: out of memory (limit 64 MB)" in table
    logs = slum.cli("logs", "hog:a", check=True).stdout
    assert "out of memory" in logs
    # The neighbour: same process, still healthy, still answering.
    after = next(i for i in slum.cli_json("ps") if i["id"] == "web:one")
    assert after["pid"] == neighbour["pid"] and after["status"] == "healthy"
    status, _, _ = slum.http("GET", "/health", host="one.web.localhost")
    assert status == 200


def test_a_limit_without_a_cgroup_is_refused_with_the_key_named(slum: Slum) -> None:
    configure(slum)
    empty = slum.dir / "no-cgroups"
    empty.mkdir()
    env = slum.env()
    env["SLUM_CGROUP_ROOT"] = str(empty)
    slum.env = lambda: env  # type: ignore[method-assign]
    slum.start()
    assert f"limits: none (no cgroup controllers under {empty})" in slum.log.read_text()
    slum.cli("spawn", "hog:a")
    hog = next(i for i in slum.cli_json("ps") if i["id"] == "hog:a")
    assert hog["status"] == "failed" and hog["pid"] is None
    assert hog["reason"] == (
        f"cannot start: memory_limit_mb cannot be applied: no memory controller under {empty}"
    )
    # A service without limits still runs.
    assert next(i for i in slum.cli_json("ps") if i["id"] == "web:one")["status"] == "healthy"


@NEEDS_MEMORY
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_a_read_only_cgroup_tree_refuses_the_limit(slum: Slum, tmp_path: Path) -> None:
    """As in a container that mounts /sys/fs/cgroup read-only: a cgroup tree slum finds but
    cannot write. Simulated with a copy of the layout bind-mounted read-only in a private mount
    namespace (nothing changes outside it)."""
    fake = tmp_path / "cgroup-ro"
    for ctrl, files in (("memory", ("cgroup.procs", "memory.limit_in_bytes")), ("pids", ("cgroup.procs",))):
        (fake / ctrl).mkdir(parents=True)
        for name in files:
            (fake / ctrl / name).write_text("")
    configure(slum)
    env = slum.env()
    env["SLUM_CGROUP_ROOT"] = str(fake)
    argv = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"',
        str(fake),
        PYTHON,
        "-m",
        "slum",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(slum.port),
        "--database",
        str(slum.database),
        "--config",
        str(slum.dir / "tenement.toml"),
    ]
    with slum.log.open("ab") as out:
        slum.proc = subprocess.Popen(argv, cwd=slum.dir, stdout=out, stderr=subprocess.STDOUT, env=env)
    slum.wait_up()
    slum.cli("spawn", "hog:a")
    hog = next(i for i in slum.cli_json("ps") if i["id"] == "hog:a")
    assert hog["status"] == "failed"
    assert hog["reason"].startswith(
        f"cannot start: memory_limit_mb cannot be applied: cannot create a cgroup under {fake}/memory"
    )
    assert "Read-only file system" in hog["reason"]


@NEEDS_MEMORY
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_a_namespaced_instance_dies_with_a_sigkilled_slum_and_its_cgroups_go_at_next_start(
    slum: Slum,
) -> None:
    configure(
        slum,
        'isolation = "namespace"\n[service.web.env]\nGRANDCHILD = "1"\n'
        'DATA_DIR = "{{data_dir}}/{{name}}/{{id}}"',
    )
    slum.start()
    inst = wait_for(lambda: next((i for i in slum.cli_json("ps") if i["status"] == "healthy"), None))
    assert inst, slum.cli_json("ps")
    grandchild = slum.dir / "data" / "web" / "one" / "grandchild.pid"
    assert wait_for(grandchild.exists)
    tree = [inst["pid"], *(p.pid for p in psutil.Process(inst["pid"]).children(recursive=True))]
    # unshare, the init (pid 1 inside), the app and its grandchild `sleep`
    assert len(tree) >= 4 and all(alive(p) for p in tree)
    old_pid = slum.proc.pid if slum.proc else 0
    subtree = HOST.hierarchies["memory"].parent / f"slum-{owner_key(slum.database)}-{old_pid}"
    assert (subtree / "web.one").is_dir()
    slum.stop(signal.SIGKILL)
    assert wait_for(lambda: not any(alive(p) for p in tree), within=10), [p for p in tree if alive(p)]
    # The next start on the same database removes what the killed one left.
    slum.start()
    assert wait_for(lambda: not subtree.exists(), within=10)
