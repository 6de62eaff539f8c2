"""A neighbour's latency while another tenant misbehaves (issue 15): p50/p99 of GETs through the
edge to a small web app at rest, then while a second tenant runs each of
- a memory hog (memory_limit_mb = 64, restart = always: it is killed and comes back),
- a fork bomb (pids_max = 20),
- a CPU burner (two busy processes, default cpu_shares).
Prints each p99 and its ratio to the one at rest (the aim: within 2x). Short windows and small
limits: this shares the machine with other work.

    .venv/bin/python bench/isolation.py [--requests 400]
"""

from __future__ import annotations

import argparse
import http.client
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import ROOT, Procs, api, pct, start_slum, tempdir

CHILDREN = ROOT / "tests" / "children"
PY = sys.executable
BURN = f"{PY} {CHILDREN / 'burner.py'}"

CONFIG = f"""
[settings]
data_dir = "./data"
backoff_base_ms = 200
backoff_max_ms = 500
max_restarts = 1000

[service.web]
command = ["{PY}", "{CHILDREN / "web.py"}"]
health = "/health"

[service.hog]
command = ["{PY}", "{CHILDREN / "memhog.py"}"]
memory_limit_mb = 64
restart = "always"
[service.hog.env]
HOG_MB = "200"
HOG_AFTER = "0"

[service.bomb]
command = ["{PY}", "{CHILDREN / "forkbomb.py"}"]
pids_max = 20
[service.bomb.env]
BOMB_CAP = "500"

[service.burn]
command = ["/bin/sh", "-c", "NO_LISTEN=1 {BURN} & exec {BURN}"]

[instances]
web = ["n"]
"""


def latencies(port: int, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for _ in range(count):
        start = time.perf_counter()
        conn.request("GET", "/health", headers={"Host": "n.web.localhost"})
        resp = conn.getresponse()
        resp.read()
        out.append(time.perf_counter() - start)
        assert resp.status == 200, resp.status
    conn.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    args = ap.parse_args()
    with Procs() as procs, tempdir("slum-iso-") as d:
        slum = start_slum(procs, d, CONFIG)
        slum.wait_healthy(["web:n"])
        latencies(slum.port, 50)  # warm up
        rest = pct(latencies(slum.port, args.requests), 99)
        print(f"{'at rest':<28} p99 {rest * 1000:7.2f} ms")
        for name, what in (
            ("hog", "memory hog (64 MB)"),
            ("bomb", "fork bomb (pids_max 20)"),
            ("burn", "CPU burner (2 processes)"),
        ):
            status, _ = api(slum.sock, "POST", "/_/api/instances", {"service": name, "id": "x"})
            time.sleep(2)  # let it do its worst
            lat = latencies(slum.port, args.requests)
            state = next((i for i in slum.instances() if i["id"] == f"{name}:x"), {})
            api(slum.sock, "POST", f"/_/api/instances/{name}:x/stop")
            p99 = pct(lat, 99)
            print(
                f"{what:<28} p99 {p99 * 1000:7.2f} ms  x{p99 / rest:4.2f} of rest   "
                f"(spawn {status}; it: {state.get('status')}, {state.get('reason')}, "
                f"oom_kills {state.get('oom_kills')})"
            )
            time.sleep(1)


if __name__ == "__main__":
    main()
