"""Run every benchmark and print one combined table at the end.

    .venv/bin/python bench/run.py [--only proxy,spawn,cli,memory,wake,logs,metrics,fleet,flood]
                                  [--issue18] [--profile] [--quick]

--issue18 runs the benchmarks behind issue 18's table (proxy, flood, metrics, wake, cli, memory)
and ends with that table: each row's value, its target met or the gap, in this one run.

--profile also records the slum edge under wrk load with py-spy (bench/results/);
--quick shortens the runs (proxy: 1 run of 3 s per target; wake, logs, metrics, fleet: fewer
wakes, lines, runs and seconds) for a smoke check.
Raw numbers of the last run are written to bench/results/*.json (gitignored).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import logs
import memory
import metrics
import spawn
import wake
from _common import Row, install_signal_handlers, print_rows, save_json

import cli
import fleet
import proxy

BENCHES = {
    "proxy": proxy.run,
    "spawn": spawn.run,
    "cli": cli.run,
    "memory": memory.run,
    "wake": wake.run,
    "logs": logs.run,
    "metrics": metrics.run,
    "fleet": fleet.run,
    # The rows of issue 18 alone, without logs' search database (make bench-18).
    "flood": lambda argv: logs.run(["--flood-only", *argv]),
}
DEFAULT = ["proxy", "spawn", "cli", "memory", "wake", "logs", "metrics", "fleet"]
ISSUE18 = "proxy,flood,metrics,wake,cli,memory"
QUICK = {"wake", "logs", "metrics", "fleet", "flood"}  # benchmarks that take --quick


def main() -> int:
    ap = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--only", default=",".join(DEFAULT), help=f"comma-separated subset of {', '.join(BENCHES)}"
    )
    ap.add_argument(
        "--issue18",
        action="store_true",
        help="the rows of issue 18 (overrides --only), with their table at the end",
    )
    ap.add_argument("--profile", action="store_true", help="py-spy the slum edge under load")
    ap.add_argument("--quick", action="store_true", help="short runs (a smoke check)")
    args = ap.parse_args()
    names = [n.strip() for n in (ISSUE18 if args.issue18 else args.only).split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)} (have: {', '.join(BENCHES)})")
    install_signal_handlers()

    rows: list[Row] = []
    timings: dict[str, float] = {}
    failed = False
    try:
        for name in names:
            argv: list[str] = []
            if name == "proxy":
                argv += ["--runs", "1", "--duration", "3", "--warmup", "1"] if args.quick else []
                argv += ["--profile"] if args.profile else []
            if name in QUICK and args.quick:
                argv.append("--quick")
            print(f"\n### {name}", flush=True)
            t0 = time.perf_counter()
            try:
                got = BENCHES[name](argv)
            except Exception as e:
                traceback.print_exc()
                got = [Row(name, "FAILED", type(e).__name__, str(e).splitlines()[0][:100] if str(e) else "")]
                failed = True
            timings[name] = time.perf_counter() - t0
            print_rows(got, f"{name} ({timings[name]:.0f} s)")
            rows += got
    except KeyboardInterrupt:
        print("\ninterrupted; processes stopped", file=sys.stderr)
        print_rows(rows, "partial results")
        return 130

    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    title = (
        f"slum benchmarks: {os.cpu_count()} cpus, Python {platform.python_version()}, "
        f"load avg {load}; took " + ", ".join(f"{n} {t:.0f} s" for n, t in timings.items())
    )
    print_rows(rows, title)
    issue = [r for r in rows if r.issue18]
    if issue:
        print_rows(
            [Row(r.bench, r.issue18, r.value, r.target) for r in issue],
            f"issue 18, one run (load avg {load})",
        )
    save_json("summary", [r.__dict__ for r in rows])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
