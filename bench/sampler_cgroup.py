"""What one sampler tick costs with 100 instances: read by walking process groups (psutil, the way
without cgroups) and read from each instance's cgroup. Each instance is one small process in its
own session (and, for the second run, its own cgroup, made as slum makes them, with no limit).
--procs makes each instance a small tree (an app with workers). Prints the median and mean tick
(a walk over every host process happens every few ticks, so the mean counts it too). Needs root
and cgroup controllers for the second half.

    .venv/bin/python bench/sampler_cgroup.py [--instances 100] [--ticks 40] [--procs 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from slum.supervisor.cgroups import Cgroups
from slum.supervisor.limits import InstanceCgroup, Limits
from slum.telemetry.sampler import Sampler


def measure(
    sampler: Sampler, groups: dict[int, str], cgroups: dict[str, InstanceCgroup], ticks: int
) -> list[float]:
    times = []
    for _ in range(ticks):
        start = time.perf_counter()
        result = sampler.tick_sync(groups, cgroups)
        times.append((time.perf_counter() - start) * 1000)
        assert len(result) == len(groups) + len(cgroups), "every instance sampled"
        time.sleep(0.05)
    return times


def report(name: str, times: list[float]) -> None:
    print(
        f"{name:<32} median {statistics.median(times):7.2f} ms   "
        f"mean {statistics.fmean(times):7.2f} ms   max {max(times):7.2f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--ticks", type=int, default=40)
    ap.add_argument("--procs", type=int, default=1, help="processes per instance (an app and its workers)")
    args = ap.parse_args()
    cg = Cgroups.detect("bench")
    procs: list[subprocess.Popen[bytes]] = []
    made: list[InstanceCgroup] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            usable = os.geteuid() == 0 and {"memory", "cpuacct"} <= set(cg.hierarchies)
            for i in range(args.instances):
                prefix: list[str] = []
                if usable:
                    one = cg.create("bench", f"i{i}", Limits())
                    if one is not None:
                        made.append(one)
                        prefix = one.join_argv()
                workers = "sleep 3600 & " * (args.procs - 1)
                procs.append(
                    subprocess.Popen(
                        [*prefix, "/bin/sh", "-c", f"{workers}sleep 3600"], start_new_session=True
                    )
                )
            time.sleep(0.5)  # every join done
            names = {p.pid: f"bench:i{i}" for i, p in enumerate(procs)}
            print(
                f"{args.instances} instances of {args.procs} processes, {args.ticks} ticks each, "
                f"{len(list(Path('/proc').glob('[0-9]*')))} processes on the host"
            )
            report("no instances (slum and host)", measure(Sampler(None, Path(tmp)), {}, {}, args.ticks))
            report("process groups (psutil walk)", measure(Sampler(None, Path(tmp)), names, {}, args.ticks))
            if made:
                by_cgroup = {f"bench:i{i}": c for i, c in enumerate(made)}
                report(
                    "cgroups (kernel counters)", measure(Sampler(None, Path(tmp)), {}, by_cgroup, args.ticks)
                )
            else:
                print("cgroups: not measured (needs root and the memory and cpuacct controllers)")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for one in made:
            one.kill()
            one.remove()
        cg.close()


if __name__ == "__main__":
    main()
