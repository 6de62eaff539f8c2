"""Spawn-to-healthy for the example app (examples/notes), beside the app's own exec-to-listening.

- app alone: exec `python3 app.py` with PORT set, poll a TCP connect every 1 ms until it listens.
- slum API: POST /_/api/instances {"service": "notes", "id": ...} over the control socket; it
  returns once the instance is healthy (HTTP health path answered). Then the instance is stopped.
- slum CLI: `slum spawn notes --id ...` wall time (process start, import, request, exit).
The two exec measurements are interleaved, so both see the same machine state.

    .venv/bin/python bench/spawn.py [--count 20] [--cli-count 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    ROOT,
    SLUM,
    Procs,
    Row,
    api,
    free_port,
    main_wrapper,
    median,
    ms,
    pct,
    save_json,
    start_slum,
    tempdir,
)

APP_DIR = ROOT / "examples" / "notes"
PYTHON3 = shutil.which("python3") or "python3"  # what `command = "python3 app.py"` runs too
TENEMENT_MS = 98.6  # tenement 0.2.2 here, Python app spawn-to-healthy (issue 2)

CONFIG = """\
[settings]
data_dir = "{dir}/data"
health_check_interval = 10

[service.notes]
command = "python3 app.py"
workdir = "{app}"
health = "/health"
idle_timeout = 0
startup_timeout = 10
restart = "on-failure"

[service.notes.env]
DATA_DIR = "{{data_dir}}/{{name}}/{{id}}"
TENANT = "{{id}}"
"""


def app_exec_to_listening(procs: Procs, data: str, timeout: float = 10.0) -> float:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "DATA_DIR": data, "TENANT": "bench"}
    t0 = time.perf_counter()
    p = procs.start(
        ["python3", "app.py"], cwd=APP_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = t0 + timeout
        while True:
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", port))
                return time.perf_counter() - t0
            except OSError:
                pass
            finally:
                s.close()
            if p.poll() is not None:
                raise RuntimeError(f"app.py exited with {p.returncode}")
            if time.perf_counter() > deadline:
                raise TimeoutError("app.py did not listen")
            time.sleep(0.001)
    finally:
        procs.stop(p, grace=2)


def run(argv: list[str]) -> list[Row]:
    ap = argparse.ArgumentParser(
        prog="bench/spawn.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--cli-count", type=int, default=10)
    args = ap.parse_args(argv)
    count = max(1, min(args.count, 200))
    cli_count = max(0, min(args.cli_count, 100))

    alone: list[float] = []
    via_api: list[float] = []
    via_cli: list[float] = []
    stop_times: list[float] = []
    with tempdir("slum-bench-spawn-") as d, Procs() as procs:
        slum = start_slum(procs, d, CONFIG.format(dir=d, app=APP_DIR))
        # One warm-up of each (page cache, pyc files) that is not counted.
        app_exec_to_listening(procs, str(d / "alone"))
        api(slum.sock, "POST", "/_/api/instances", {"service": "notes", "id": "warm"})
        api(slum.sock, "POST", "/_/api/instances/notes:warm/stop")

        for i in range(count):
            alone.append(app_exec_to_listening(procs, str(d / "alone")))
            t0 = time.perf_counter()
            status, data = api(slum.sock, "POST", "/_/api/instances", {"service": "notes", "id": f"a{i}"})
            dt = time.perf_counter() - t0
            if status != 201 or data.get("status") not in ("healthy", "running"):
                raise RuntimeError(f"spawn notes:a{i}: {status} {data}")
            via_api.append(dt)
            t0 = time.perf_counter()
            status, data = api(slum.sock, "POST", f"/_/api/instances/notes:a{i}/stop")
            stop_times.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"stop notes:a{i}: {status} {data}")

        for i in range(cli_count):
            t0 = time.perf_counter()
            out = subprocess.run(
                [SLUM, "spawn", "notes", "--id", f"c{i}"],
                env=slum.env(),
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            dt = time.perf_counter() - t0
            if out.returncode != 0:
                raise RuntimeError(f"slum spawn notes --id c{i}: {out.returncode} {out.stderr.strip()}")
            via_cli.append(dt)
            api(slum.sock, "POST", f"/_/api/instances/notes:c{i}/stop")

    save_json("spawn", {"app_alone": alone, "api": via_api, "cli": via_cli, "stop": stop_times})
    overhead = median(via_api) - median(alone)
    rows = [
        Row(
            "spawn",
            f"app exec->listening (median/p90 of {count})",
            f"{ms(median(alone))} / {ms(pct(alone, 90))}",
            f"`python3 app.py` alone ({PYTHON3}), 1 ms TCP poll",
        ),
        Row(
            "spawn",
            f"API spawn->healthy (median/p90 of {count})",
            f"{ms(median(via_api))} / {ms(pct(via_api, 90))}",
            f"tenement {TENEMENT_MS} ms; slum overhead {overhead * 1000:+.1f} ms",
        ),
        Row("spawn", f"API stop (median of {count})", ms(median(stop_times)), "SIGTERM -> reaped"),
    ]
    if via_cli:
        rows.append(
            Row(
                "spawn",
                f"CLI `slum spawn` wall (median/p90 of {cli_count})",
                f"{ms(median(via_cli))} / {ms(pct(via_cli, 90))}",
                "includes CLI start",
            )
        )
    return rows


if __name__ == "__main__":
    main_wrapper(run, "spawn")
