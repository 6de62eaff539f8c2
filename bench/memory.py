"""slum's own memory (the server process only, not its children): idle with no instances, with
20 running instances of the example app, and after traffic through the edge to all of them.
Target (issue 18): at most 40 MB RSS idle. tenement: 12-15 MB.

    .venv/bin/python bench/memory.py [--instances 20] [--requests 50]
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    ROOT,
    Procs,
    Row,
    api,
    main_wrapper,
    ms,
    save_json,
    start_slum,
    tempdir,
)

TARGET_IDLE_MB = 40.0
APP_DIR = ROOT / "examples" / "notes"

CONFIG = """\
[settings]
data_dir = "{dir}/data"
health_check_interval = 10

[service.notes]
command = "python3 app.py"
workdir = "{app}"
health = "/health"
idle_timeout = 0
startup_timeout = 20
restart = "on-failure"

[service.notes.env]
DATA_DIR = "{{data_dir}}/{{name}}/{{id}}"
TENANT = "{{id}}"
"""


def mem(pid: int) -> dict[str, float]:
    p = psutil.Process(pid)
    info = p.memory_full_info()
    return {
        "rss_mb": info.rss / 2**20,
        "uss_mb": info.uss / 2**20,
        "threads": p.num_threads(),
        "fds": p.num_fds(),
    }


def settle(pid: int, seconds: float = 3.0) -> dict[str, float]:
    """Sample for a few seconds and keep the last (after health checks, sampler ticks)."""
    m = mem(pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.5)
        m = mem(pid)
    return m


def traffic(port: int, host: str, count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(count):
            conn.request("GET", "/", headers={"Host": host})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {host}: {r.status}")
    finally:
        conn.close()


def run(argv: list[str]) -> list[Row]:
    ap = argparse.ArgumentParser(
        prog="bench/memory.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--instances", type=int, default=20)
    ap.add_argument("--requests", type=int, default=50, help="GETs through the edge per instance")
    args = ap.parse_args(argv)
    n = max(1, min(args.instances, 100))
    reqs = max(0, min(args.requests, 1000))

    with tempdir("slum-bench-mem-") as d, Procs() as procs:
        slum = start_slum(procs, d, CONFIG.format(dir=d, app=APP_DIR), ask=False)
        unasked = settle(slum.pid)
        t_first = time.perf_counter()
        status, _ = api(slum.sock, "GET", "/api/health")
        first_s = time.perf_counter() - t_first
        t_second = time.perf_counter()
        api(slum.sock, "GET", "/api/health")
        second_s = time.perf_counter() - t_second
        if status != 200:
            raise RuntimeError(f"GET /api/health: {status}")
        idle = settle(slum.pid)
        t0 = time.perf_counter()
        for i in range(n):
            status, data = api(slum.sock, "POST", "/_/api/instances", {"service": "notes", "id": f"m{i}"})
            if status != 201:
                raise RuntimeError(f"spawn notes:m{i}: {status} {data}")
        spawn_all = time.perf_counter() - t0
        running = settle(slum.pid)
        if reqs:
            # One keep-alive client per instance, all at once (the example app answers a
            # keep-alive request in ~40 ms: it writes headers and body separately, so Nagle
            # meets delayed ACK; in parallel this phase stays short).
            with ThreadPoolExecutor(n) as pool:
                list(pool.map(lambda i: traffic(slum.port, f"m{i}.notes.localhost", reqs), range(n)))
        loaded = settle(slum.pid)
        children = sum(c.memory_info().rss for c in psutil.Process(slum.pid).children(recursive=True))

    save_json(
        "memory",
        {
            "first_request_s": first_s,
            "unasked": unasked,
            "idle": idle,
            "running": running,
            "after_traffic": loaded,
            "instances": n,
            "requests_per_instance": reqs,
            "spawn_all_s": spawn_all,
            "children_rss_mb": children / 2**20,
        },
    )
    ok = unasked["rss_mb"] <= TARGET_IDLE_MB
    return [
        Row(
            "memory",
            "slum RSS idle (no instances, before any API request)",
            f"{unasked['rss_mb']:.1f} MB",
            f"<= {TARGET_IDLE_MB:g} MB: "
            + ("met" if ok else f"NOT met, gap {unasked['rss_mb'] - TARGET_IDLE_MB:.1f} MB")
            + "; tenement 12-15 MB",
            issue18="RSS idle",
        ),
        Row(
            "memory",
            "slum RSS idle after the first API request",
            f"{idle['rss_mb']:.1f} MB",
            "Quart + Hypercorn loaded on that request (specs/performance.md)",
        ),
        Row(
            "memory",
            "first API request (loads the web app) / the next",
            f"{ms(first_s)} / {ms(second_s)}",
            "GET /api/health on the control socket",
        ),
        Row(
            "memory",
            f"slum RSS with {n} instances",
            f"{running['rss_mb']:.1f} MB",
            f"USS {running['uss_mb']:.1f} MB, {running['threads']:.0f} threads, {running['fds']:.0f} fds",
        ),
        Row(
            "memory",
            f"slum RSS after {n}x{reqs} proxied GETs",
            f"{loaded['rss_mb']:.1f} MB",
            f"children total {children / 2**20:.0f} MB (not counted)",
        ),
        Row("memory", f"spawn {n} instances one by one", f"{spawn_all:.2f} s", "API, healthy each"),
    ]


if __name__ == "__main__":
    main_wrapper(run, "memory")
