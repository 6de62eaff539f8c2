"""CLI latency: `slum ps` wall time against a running server (the venv's console script), and the
import time of the CLI, beside a bare interpreter start. tenement's `ten ps`: 18 ms here.

    .venv/bin/python bench/cli.py [--count 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    SLUM,
    Procs,
    Row,
    main_wrapper,
    median,
    ms,
    pct,
    save_json,
    start_slum,
    tempdir,
)

TENEMENT_PS_MS = 18.0
TARGET_PS_MS = 40.0

CONFIG = """\
[settings]
data_dir = "{dir}/data"

[service.sleeper]
command = "python3 {dir}/listen.py"
idle_timeout = 0

[instances]
sleeper = ["one", "two", "three"]
"""

# A child that only listens on $PORT (TCP health check), so the server has a few instances to list.
LISTEN_PY = """\
import os, socket, time
s = socket.socket()
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen()
time.sleep(3600)
"""


def wall(args: list[str], count: int, env: dict[str, str] | None = None) -> list[float]:
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        out = subprocess.run(args, env=env, capture_output=True, timeout=30, check=False)
        times.append(time.perf_counter() - t0)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {out.returncode}: {out.stderr.decode()[-300:]}")
    return times


def import_breakdown(module: str, env: dict[str, str], top: int = 6) -> list[tuple[str, float]]:
    """Import self-time summed per top-level package (python -X importtime), largest first."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True, timeout=30, check=False, env=env)
    tops: dict[str, float] = {}
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[0].split(":")[-1].strip().isdigit():
            continue
        pkg = parts[2].strip().split(".")[0]
        tops[pkg] = tops.get(pkg, 0.0) + int(parts[0].split(":")[-1]) / 1e6
    return sorted(tops.items(), key=lambda kv: -kv[1])[:top]


def run(argv: list[str]) -> list[Row]:
    ap = argparse.ArgumentParser(prog="bench/cli.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=20)
    args = ap.parse_args(argv)
    count = max(1, min(args.count, 200))
    py = sys.executable

    with tempdir("slum-bench-cli-") as d, Procs() as procs:
        env0 = dict(os.environ)
        wall([py, "-c", "import slum.cli.commands"], 2, env0)  # warm the page cache
        bare = wall([py, "-c", "pass"], count, env0)
        imp = wall([py, "-c", "import slum.cli.commands"], count, env0)
        version = wall([SLUM, "--version"], count, env0)
        breakdown = import_breakdown("slum.cli.commands", env0)

        (d / "listen.py").write_text(LISTEN_PY)
        slum = start_slum(procs, d, CONFIG.format(dir=d))
        slum.wait_healthy(["sleeper:one", "sleeper:two", "sleeper:three"])
        env = slum.env()
        wall([SLUM, "ps"], 2, env)  # warm-up
        ps = wall([SLUM, "ps"], count, env)
        ps_json = wall([SLUM, "ps", "--json"], count, env)
    save_json("cli", {"python -c pass": bare, "import slum.cli.commands": imp,
                      "slum --version": version, "slum ps": ps, "slum ps --json": ps_json,
                      "import self-time by package (s)": breakdown})

    ok = median(ps) * 1000 < TARGET_PS_MS
    rows = [
        Row("cli", f"`slum ps` wall (median/p90 of {count}, 3 instances)",
            f"{ms(median(ps))} / {ms(pct(ps, 90))}",
            f"< {TARGET_PS_MS:g} ms: {'met' if ok else 'NOT met'}; tenement {TENEMENT_PS_MS:g} ms"),
    ]
    over = median(ps) - median(bare)
    rows += [
        Row("cli", "`slum ps` over a bare `python -c pass` (medians)", f"{over * 1000:+.1f} ms",
            f"the interpreter's own start {ms(median(bare))}; fast path: os, socket, json only"),
        Row("cli", "`slum ps --json` wall (median)", ms(median(ps_json)), ""),
        Row("cli", "`slum --version` wall (median)", ms(median(version)), ""),
        Row("cli", "python -c 'import slum.cli.commands' (median)", ms(median(imp)),
            f"bare `python -c pass`: {ms(median(bare))}"),
        Row("cli", "import cost over bare python", ms(median(imp) - median(bare)),
            "self time: " + ", ".join(f"{n} {s * 1000:.0f}" for n, s in breakdown[:4]) + " ms"),
    ]
    return rows


if __name__ == "__main__":
    main_wrapper(run, "cli")
