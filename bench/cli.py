"""CLI latency: `slum ps` wall time against a running server (the venv's console script), beside
a bare interpreter start and tenement's `ten ps` against a `ten serve` with the same three
instances, interleaved in the same rounds; and the import time of the full CLI.

slum's sources are byte-compiled first, as installing a wheel does: an editable install under
PYTHONDONTWRITEBYTECODE would otherwise compile them on every run (~15 ms more per `slum ps`).

    .venv/bin/python bench/cli.py [--count 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    ROOT,
    SLUM,
    TENEMENT_ENV,
    TENEMENT_SERVICE_KEYS,
    Procs,
    Row,
    load_row,
    main_wrapper,
    median,
    ms,
    pct,
    real_python3,
    save_json,
    start_slum,
    start_tenement,
    tempdir,
)

TARGET_PS_MS = 40.0

# The same three instances under tenement (which starts them with an empty environment).
TEN_CONFIG = """\
[settings]
data_dir = "{dir}/ten/data"

[service.sleeper]
command = "{python} {dir}/listen.py"
idle_timeout = 0
{keys}
[service.sleeper.env]
{env}
[instances]
sleeper = ["one", "two", "three"]
"""

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


def wall(
    args: list[str], count: int, env: dict[str, str] | None = None, cwd: Path | None = None
) -> list[float]:
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        out = subprocess.run(args, env=env, cwd=cwd, capture_output=True, timeout=30, check=False)
        times.append(time.perf_counter() - t0)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {out.returncode}: {out.stderr.decode()[:300]}")
    return times


def _importtime(code: str, env: dict[str, str]) -> list[tuple[str, float]]:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    got = []
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[0].split(":")[-1].strip().isdigit():
            continue
        got.append((parts[2].strip(), int(parts[0].split(":")[-1]) / 1e6))
    return got


def import_breakdown(
    module: str, env: dict[str, str], top: int = 6, runs: int = 5
) -> list[tuple[str, float]]:
    """Import self-time summed per top-level package (python -X importtime, median of `runs`),
    largest first; only modules that a bare `python -c pass` does not import already."""
    bare = {name for name, _ in _importtime("pass", env)}
    per_run: list[dict[str, float]] = []
    for _ in range(runs):
        tops: dict[str, float] = {}
        for name, self_s in _importtime(f"import {module}", env):
            if name not in bare:
                pkg = name.split(".")[0]
                tops[pkg] = tops.get(pkg, 0.0) + self_s
        per_run.append(tops)
    names = {n for tops in per_run for n in tops}
    med = {n: median([tops.get(n, 0.0) for tops in per_run]) for n in names}
    return sorted(med.items(), key=lambda kv: -kv[1])[:top]


def run(argv: list[str]) -> list[Row]:
    ap = argparse.ArgumentParser(
        prog="bench/cli.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=20)
    args = ap.parse_args(argv)
    count = max(1, min(args.count, 200))
    py = sys.executable

    # As a wheel's install does (compileall writes the files whatever PYTHONDONTWRITEBYTECODE says).
    subprocess.run(
        [py, "-m", "compileall", "-q", str(ROOT / "src" / "slum")],
        capture_output=True,
        timeout=300,
        check=False,
    )
    with tempdir("slum-bench-cli-") as d, Procs() as procs:
        env0 = dict(os.environ)
        wall([py, "-c", "import slum.cli.commands"], 2, env0)  # warm the page cache
        imp = wall([py, "-c", "import slum.cli.commands"], count, env0)
        version = wall([SLUM, "--version"], count, env0)
        breakdown = import_breakdown("slum.cli.commands", env0)
        ps_breakdown = import_breakdown("re, slum.cli, slum.cli.fast, slum.cli.output", env0, top=5)

        (d / "listen.py").write_text(LISTEN_PY)
        slum = start_slum(procs, d, CONFIG.format(dir=d))
        slum.wait_healthy(["sleeper:one", "sleeper:two", "sleeper:three"])
        env = slum.env()
        ten = start_tenement(
            procs,
            d / "ten",
            TEN_CONFIG.format(dir=d, python=real_python3(), keys=TENEMENT_SERVICE_KEYS, env=TENEMENT_ENV),
        )
        wall([SLUM, "ps"], 2, env)  # warm-up
        bare: list[float] = []
        ps: list[float] = []
        ten_ps: list[float] = []
        if ten is not None:
            wall([ten.ten, "ps"], 2, ten.env(), ten.dir)  # it reads tenement.toml there
        # Interleaved, one of each per round: the load of the other work on the machine drifts.
        for _ in range(count):
            bare += wall([py, "-c", "pass"], 1, env0)
            ps += wall([SLUM, "ps"], 1, env)
            if ten is not None:
                ten_ps += wall([ten.ten, "ps"], 1, ten.env(), ten.dir)
        ps_json = wall([SLUM, "ps", "--json"], count, env)
    save_json(
        "cli",
        {
            "python -c pass": bare,
            "import slum.cli.commands": imp,
            "slum --version": version,
            "slum ps": ps,
            "slum ps --json": ps_json,
            "ten ps": ten_ps,
            "import self-time by package (s)": breakdown,
            "slum ps import self-time (s)": ps_breakdown,
        },
    )

    ok = median(ps) * 1000 <= TARGET_PS_MS
    ten_note = (
        f"`ten ps` {ms(median(ten_ps))} in the same rounds (slum/ten {median(ps) / median(ten_ps):.2f}x)"
        if ten_ps
        else "tenement not installed"
    )
    rows = [
        load_row("cli"),
        Row(
            "cli",
            f"`slum ps` wall (median/p90 of {count}, 3 instances)",
            f"{ms(median(ps))} / {ms(pct(ps, 90))}",
            f"<= {TARGET_PS_MS:g} ms: "
            + ("met" if ok else f"NOT met, gap {median(ps) * 1000 - TARGET_PS_MS:.1f} ms")
            + f"; {ten_note}",
            issue18="`slum ps`",
        ),
    ]
    over = median(ps) - median(bare)
    rows += [
        Row(
            "cli",
            "`slum ps` over a bare `python -c pass` (medians)",
            f"{over * 1000:+.1f} ms",
            f"the interpreter's own start {ms(median(bare))}; imports beyond it: "
            + ", ".join(f"{n} {s * 1000:.1f}" for n, s in ps_breakdown)
            + " ms",
        ),
        Row("cli", "`slum ps --json` wall (median)", ms(median(ps_json)), ""),
        Row("cli", "`slum --version` wall (median)", ms(median(version)), ""),
        Row(
            "cli",
            "python -c 'import slum.cli.commands' (median)",
            ms(median(imp)),
            f"bare `python -c pass`: {ms(median(bare))}",
        ),
        Row(
            "cli",
            "import cost over bare python",
            ms(median(imp) - median(bare)),
            "self time: " + ", ".join(f"{n} {s * 1000:.0f}" for n, s in breakdown[:4]) + " ms",
        ),
    ]
    return rows


if __name__ == "__main__":
    main_wrapper(run, "cli")
