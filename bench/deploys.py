"""Deploys and weights (issue 14): what `{service}.{domain}` (a weighted choice per request) costs
next to `{id}.{service}.{domain}` (a dict lookup), and a blue/green switch under load.

- routing: one keep-alive client, N sequential GETs to examples/notes through the edge, by the
  instance's own host and by the service host (two instances at 50/50); medians and p99.
- blue/green: a client loop of keep-alive GETs on the service host while `slum deploy` starts v2
  at weight 0 and `slum route` moves the traffic; counts of answers by version and of failures,
  and how long each command took.

    .venv/bin/python bench/deploys.py [--count 2000]
"""

from __future__ import annotations

import argparse
import http.client
import os
import subprocess
import sys
import threading
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    ROOT,
    SLUM,
    Procs,
    Row,
    load_row,
    main_wrapper,
    median,
    ms,
    pct,
    real_python3,
    start_slum,
    tempdir,
)

APP_DIR = ROOT / "examples" / "notes"


def config(python: str) -> str:
    return f"""
[settings]
data_dir = "./data"

[service.notes]
command = ["{python}", "{APP_DIR / "app.py"}"]
health = "/health"

[service.notes.env]
DATA_DIR = "{{data_dir}}/{{name}}/{{id}}"

[instances]
notes = ["v1", "b"]
"""


def timed_gets(port: int, host: str, count: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    for _ in range(count):
        t0 = time.perf_counter()
        conn.request("GET", "/health", headers={"Host": host})
        resp = conn.getresponse()
        resp.read()
        times.append(time.perf_counter() - t0)
        if resp.status != 200:
            raise RuntimeError(f"{host}: HTTP {resp.status}")
    conn.close()
    return times


def run(argv: list[str]) -> list[Row]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args(argv)
    rows = [load_row("deploys", "before")]
    with Procs() as procs, tempdir("slum-deploys-") as d:
        slum = start_slum(procs, d, config(real_python3()))
        env = slum.env()
        for _ in range(100):  # both instances ready
            if all(i["status"] == "healthy" for i in slum.instances()) and len(slum.instances()) == 2:
                break
            time.sleep(0.1)
        timed_gets(slum.port, "v1.notes.localhost", 200)  # warm the pools
        by_id = timed_gets(slum.port, "v1.notes.localhost", args.count)
        by_service = timed_gets(slum.port, "notes.localhost", args.count)
        rows += [
            Row(
                "deploys",
                "GET by {id}.{service}: median / p99",
                f"{ms(median(by_id))} / {ms(pct(by_id, 99))}",
                f"{args.count} keep-alive requests",
            ),
            Row(
                "deploys",
                "GET by {service} (50/50): median / p99",
                f"{ms(median(by_service))} / {ms(pct(by_service, 99))}",
                f"ratio of medians {median(by_service) / median(by_id):.2f}",
            ),
        ]
        subprocess.run([SLUM, "stop", "notes:b"], env=env, check=True, capture_output=True)
        stop = threading.Event()
        answers: Counter[str] = Counter()

        def load() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", slum.port, timeout=30)
            for _ in range(200_000):  # bounded; stopped long before
                if stop.is_set():
                    break
                try:
                    conn.request("GET", "/health", headers={"Host": "notes.localhost"})
                    resp = conn.getresponse()
                    resp.read()
                    answers[str(resp.status)] += 1
                except (OSError, http.client.HTTPException) as e:
                    answers[type(e).__name__] += 1
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", slum.port, timeout=30)
            conn.close()

        thread = threading.Thread(target=load)
        thread.start()
        time.sleep(0.5)
        t0 = time.perf_counter()
        subprocess.run(
            [SLUM, "deploy", "notes", "--version", "v2", "--weight", "0"],
            env=env,
            check=True,
            capture_output=True,
        )
        t1 = time.perf_counter()
        subprocess.run(
            [SLUM, "route", "notes", "--from", "v1", "--to", "v2"], env=env, check=True, capture_output=True
        )
        t2 = time.perf_counter()
        time.sleep(0.5)
        stop.set()
        thread.join(60)
        failed = sum(n for k, n in answers.items() if k != "200")
        rows += [
            Row("deploys", "deploy v2 (spawn + healthy), CLI wall time", ms(t1 - t0), ""),
            Row("deploys", "route v1 -> v2, CLI wall time", ms(t2 - t1), ""),
            Row(
                "deploys",
                "requests during the switch: ok / failed",
                f"{answers['200']} / {failed}",
                dict(answers).__repr__() if failed else "",
            ),
        ]
    rows.append(load_row("deploys", "after"))
    return rows


if __name__ == "__main__":
    main_wrapper(run, "deploys and weights")
