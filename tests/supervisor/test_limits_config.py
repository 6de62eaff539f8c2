"""The limit keys as config (validated where they enter) and their mapping to cgroup files, on
both layouts. The v2 mapping is checked on a directory tree shaped like cgroup v2, because hosts
like CI mount the v1 controllers and have no v2 controllers to write to."""

from __future__ import annotations

from pathlib import Path

import pytest

from slum.config import parse
from slum.errors import ConfigError
from slum.supervisor.cgroups import Cgroups
from slum.supervisor.limits import InstanceCgroup, LimitError, Limits, cpu_weight, v1_shares


def svc(extra: str) -> str:
    return f'[service.web]\ncommand = "app"\n{extra}\n'


def test_limit_keys_parse_and_zero_memory_means_unlimited() -> None:
    c = parse(
        svc(
            "memory_limit_mb = 64\nmemory_swap_max = 0\ncpu_shares = 300\npids_max = 20\n"
            'isolation = "namespace"'
        )
    )
    web = c.services["web"]
    assert (web.memory_limit_mb, web.memory_swap_max, web.cpu_shares, web.pids_max, web.isolation) == (
        64,
        0,
        300,
        20,
        "namespace",
    )
    assert c.warnings == ()  # enforced keys now, not tolerated ones
    assert parse(svc("memory_limit_mb = 0")).services["web"].memory_limit_mb is None
    assert parse(svc("")).services["web"].isolation == "process"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('isolation = "vm"', "service.web.isolation: must be one of process, namespace, sandbox"),
        ("pids_max = 0", "service.web.pids_max: must be >= 1"),
        ("cpu_shares = 0", "service.web.cpu_shares: must be >= 1"),
        ("memory_limit_mb = -1", "service.web.memory_limit_mb: must be >= 0"),
        ('memory_swap_max = "1G"', "service.web.memory_swap_max: must be an integer, not a string"),
    ],
)
def test_bad_limit_values_name_the_line_and_key(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(svc(line), Path("tenement.toml"))
    assert str(e.value) == f"tenement.toml:3: {message}"


def test_cpu_shares_map_to_v2_weight_clamped_and_to_v1_shares_scaled() -> None:
    assert [cpu_weight(s) for s in (1, 100, 300, 10000, 50000)] == [1, 100, 300, 10000, 10000]
    # v1's default (1024) matches v2's (100): an instance without the key weighs as 100.
    assert [v1_shares(s) for s in (1, 100, 300)] == [10, 1024, 3072]


def fake_v2(root: Path) -> Path:
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    (root / "cgroup.procs").write_text("")
    return root


def test_v2_layout_writes_memory_max_swap_weight_and_pids(tmp_path: Path) -> None:
    root = fake_v2(tmp_path / "v2")
    cg = Cgroups.detect("t", root=root)
    assert {h.version for h in cg.hierarchies.values()} == {2}
    assert cg.swap
    one = cg.create("web", "a", Limits(memory_mb=64, swap_mb=16, cpu_shares=300, pids_max=20))
    assert one is not None
    d = one.dirs["unified"]
    assert d == root / f"slum-{cg.owner}" / "web.a"
    assert (d.parent / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (root / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    # A plain directory has no memory.swap.max file, so only what always exists is written.
    assert (d / "memory.max").read_text() == str(64 * 1024 * 1024)
    assert (d / "cpu.weight").read_text() == "300"
    assert (d / "pids.max").read_text() == "20"
    assert one.join_argv()[-2:] == [str(d / "cgroup.procs"), "--"]


def test_v2_oom_kills_and_usage_come_from_the_cgroup_files(tmp_path: Path) -> None:
    d = tmp_path / "web.a"
    d.mkdir()
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\n")
    (d / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 2000000\n")
    (d / "memory.current").write_text("50000000\n")
    (d / "memory.stat").write_text("anon 30000000\nfile 20000000\ninactive_file 8000000\n")
    one = InstanceCgroup({"unified": d}, Limits())
    assert one.oom_kills() == 2
    assert one.usage() == (2.5, 42000000)


def test_v1_oom_kills_come_from_oom_control(tmp_path: Path) -> None:
    d = tmp_path / "memory"
    d.mkdir()
    (d / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    assert InstanceCgroup({"memory": d}, Limits()).oom_kills() == 3


def test_missing_controllers_refuse_the_keys_that_need_them(tmp_path: Path) -> None:
    root = tmp_path / "v1"
    (root / "memory").mkdir(parents=True)
    (root / "memory" / "cgroup.procs").write_text("")
    cg = Cgroups.detect("t", root=root)
    assert set(cg.hierarchies) == {"memory"}
    with pytest.raises(LimitError, match=r"^pids_max cannot be applied: no pids controller under"):
        cg.check(Limits(pids_max=20))
    with pytest.raises(LimitError, match=r"^cpu_shares cannot be applied: no cpu controller under"):
        cg.check(Limits(cpu_shares=100))
    with pytest.raises(LimitError, match=r"^memory_swap_max cannot be applied"):
        cg.check(Limits(memory_mb=64, swap_mb=10))  # no memory.memsw.* in this tree
    cg.check(Limits(memory_mb=64))
    assert "memory_limit_mb via cgroup v1 memory" in cg.describe()
    assert "pids_max: unavailable" in cg.describe()
