"""Chaos soak: one slum under load while everything around it misbehaves.

- load: wrk (or, without it, a bounded Python client loop) on a healthy tenant, all along;
- random SIGKILLs of other instances (restarted by slum), a child flooding its log;
- a hostile client running the hostile-peer catalogue in a loop: malformed requests, slow heads,
  stalled bodies, and every wrong answer of tests/children/hostile_upstream.py.

It reports slum's uptime (same pid from start to end), the requests that failed for the healthy
tenant, and slum's RSS at the start and at the end.

    .venv/bin/python bench/chaos.py [--duration 600] [--quick] [--connections 8]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import ROOT, Procs, Row, api, main_wrapper, save_json, start_slum, tempdir

from proxy import parse_wrk

CHILDREN = ROOT / "tests" / "children"
HEALTHY = "one.web.localhost"

CONFIG = """\
[settings]
data_dir = "{dir}/data"
health_check_interval = 1
backoff_base_ms = 100
backoff_max_ms = 1000
max_restarts = 1000000
restart_window = 1
header_timeout = 3
body_timeout = 3
keepalive_timeout = 10

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"

[service.victim]
command = ["{python}", "{children}/web.py"]
health = "/health"
restart = "always"

[service.flood]
command = ["{python}", "{children}/flood.py"]
restart = "always"

[service.flood.env]
LINES = "200000"

[service.hostile]
command = ["{python}", "{children}/hostile_upstream.py"]
health = "/health"
restart = "always"

[instances]
web = ["one"]
victim = ["v1", "v2", "v3"]
flood = ["f"]
hostile = ["h"]
"""

HOSTILE_PATHS = [
    "/cl-abc",
    "/status-2000",
    "/status-99",
    "/garbage",
    "/204-body",
    "/304-body",
    "/cl-te",
    "/two-cl",
    "/nul",
    "/obs-fold",
    "/bare-lf",
    "/huge-head",
    "/bad-chunk",
    "/after",
    "/early-hints",
    "/switch",
    "/trailers",
    "/te-gzip",
    "/trailer-flood",
    "/hang-up",
    "/cut",
]
HOSTILE_REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /echo HTTP/1.1\nHost: h.hostile.localhost\n\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(64)),
    b"GET / HTTP/1.1\r\nHost: h.hostile.localhost\r\n"
    + b"".join(b"X-F%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
    + b"\r\n",
    b"POST /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n0\r\n" + (b"X-T: " + b"t" * 1000 + b"\r\n") * 200,
    b"GET /api/health HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\nX-Slum-Router: slum_forged\r\n"
    b"X-Tenant-ID: x\r\n\r\n",
]


def exchange(port: int, raw: bytes, *, split_after: int = 0, timeout: float = 10) -> bytes:
    """Send raw (in two reads if split_after), return what came back until close or timeout."""
    got = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            if split_after:
                sock.sendall(raw[:split_after])
                time.sleep(0.1)
                sock.sendall(raw[split_after:])
            else:
                sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            while data := sock.recv(65536):
                got += data
    except OSError:
        pass
    return got


def hostile_client(port: int, stop: threading.Event, counts: dict[str, int]) -> None:
    while not stop.is_set():
        for path in HOSTILE_PATHS:
            exchange(port, f"GET {path} HTTP/1.1\r\nHost: h.hostile.localhost\r\n\r\n".encode())
            counts["hostile"] += 1
        for raw in HOSTILE_REQUESTS:
            exchange(port, raw)
            counts["hostile"] += 1
        # The crash of issue 11: a bad chunk size in a later read than the head.
        exchange(
            port,
            b"POST /api/health HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
            split_after=80,
        )
        # A slow head and a stalled body, left to the timeouts.
        for raw in (
            b"GET / HTTP/1.1\r\nHost: one.we",
            b"POST / HTTP/1.1\r\nHost: h.hostile.localhost\r\nContent-Length: 9\r\n\r\nab",
        ):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                sock.sendall(raw)
                threading.Timer(5, sock.close).start()
            except OSError:
                pass
        counts["hostile"] += 3
        counts["rounds"] += 1


def killer(sock_path: Any, stop: threading.Event, counts: dict[str, int], rng: random.Random) -> None:
    while not stop.wait(rng.uniform(1.0, 4.0)):
        try:
            _, instances = api(sock_path, "GET", "/_/api/instances", timeout=10)
        except OSError:
            continue
        victims = [i for i in instances if i.get("service") == "victim" and i.get("pid")]
        if not victims:
            continue
        pid = int(rng.choice(victims)["pid"])
        try:
            os.killpg(pid, signal.SIGKILL)
            counts["killed"] += 1
        except OSError:
            pass


def python_load(port: int, stop: threading.Event, result: dict[str, int], conns: int) -> None:
    """Without wrk: `conns` keep-alive clients in a loop, counting answers other than 200."""
    import http.client

    def one() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            try:
                conn.request("GET", "/", headers={"Host": HEALTHY})
                resp = conn.getresponse()
                resp.read()
                result["requests"] += 1
                if resp.status != 200:
                    result["failed"] += 1
            except (OSError, http.client.HTTPException):
                result["requests"] += 1
                result["failed"] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=one, daemon=True) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def healthy_failures(sock: Any, log_path: Any) -> dict[str, Any]:
    """Where the healthy tenant's failed requests came from: its answers by status class (the
    edge's own count, so a wrk timeout that slum answered late shows here too) and what slum
    logged about it. Empty when nothing failed."""
    out: dict[str, Any] = {}
    try:
        _, text = api(sock, "GET", "/_/metrics", timeout=10)
    except OSError:
        text = ""
    if isinstance(text, str):
        out["answers"] = [
            line
            for line in text.splitlines()
            if line.startswith("slum_requests_total") and "web:one" in line and '"2xx"' not in line
        ]
    lines = log_path.read_text(errors="replace").splitlines()
    out["log"] = [line for line in lines if "web:one" in line or "one.web" in line][-20:]
    return out if out["answers"] or out["log"] else {}


def run(argv: list[str]) -> list[Row]:
    ap = argparse.ArgumentParser(
        prog="bench/chaos.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    ap.add_argument("--quick", action="store_true", help="60 seconds")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    duration = 60.0 if args.quick else max(10.0, min(args.duration, 3600.0))
    rng = random.Random(args.seed)
    rows: list[Row] = []
    with tempdir("slum-bench-chaos-") as d, Procs() as procs:
        slum = start_slum(procs, d, CONFIG.format(dir=d, python=sys.executable, children=CHILDREN))
        slum.wait_healthy(["web:one", "victim:v1", "victim:v2", "victim:v3", "hostile:h"], 60)
        proc = psutil.Process(slum.pid)
        started = proc.create_time()
        rss_start = proc.memory_info().rss
        counts = {"hostile": 0, "rounds": 0, "killed": 0}
        stop = threading.Event()
        helpers = [
            threading.Thread(target=hostile_client, args=(slum.port, stop, counts), daemon=True),
            threading.Thread(target=killer, args=(slum.sock, stop, counts, rng), daemon=True),
        ]
        for t in helpers:
            t.start()
        print(
            f"chaos: {duration:.0f} s of load on {HEALTHY} while instances are killed, a "
            "child floods its log and a hostile client runs the catalogue ...",
            flush=True,
        )
        load: dict[str, Any]
        if shutil.which("wrk"):
            out = subprocess.run(
                [
                    "wrk",
                    "-t1",
                    f"-c{args.connections}",
                    f"-d{duration:.0f}s",
                    "--latency",
                    "--timeout",
                    "10s",
                    "-H",
                    f"Host: {HEALTHY}",
                    f"http://127.0.0.1:{slum.port}/",
                ],
                capture_output=True,
                text=True,
                timeout=duration + 60,
                check=False,
            )
            w = parse_wrk(out.stdout)
            errors = sum(int(n) for n in re.findall(r"\d+", w["socket_errors"]))
            load = {
                "tool": "wrk",
                "requests": w["requests"],
                "failed": w["non2xx"] + errors,
                "rps": w["rps"],
                "p99_ms": w["p99"],
                "socket_errors": w["socket_errors"],
            }
        else:
            result = {"requests": 0, "failed": 0}
            timer = threading.Timer(duration, stop.set)
            timer.start()
            python_load(slum.port, stop, result, args.connections)
            load = {"tool": "python", **result, "rps": result["requests"] / duration}
        stop.set()
        for t in helpers:
            t.join(30)
        alive = proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        same = alive and proc.create_time() == started and slum.proc.poll() is None
        uptime = time.time() - started
        rss_end = proc.memory_info().rss if alive else 0
        try:
            _, instances = api(slum.sock, "GET", "/_/api/instances", timeout=10)
            restarts = sum(int(i.get("restarts", 0) or 0) for i in instances)
        except OSError:
            restarts = -1
        failures = healthy_failures(slum.sock, d / "slum.log")
        rows += [
            Row(
                "chaos",
                "slum alive, same pid",
                "yes" if same else "NO",
                f"uptime {uptime:.0f} s over a {duration:.0f} s soak",
            ),
            Row(
                "chaos",
                "healthy tenant requests",
                f"{load['requests']}",
                f"{load['rps']:.0f} req/s ({load['tool']})",
            ),
            Row(
                "chaos",
                "healthy tenant failed",
                f"{load['failed']}",
                "target 0"
                + (f"; wrk socket errors: {load.get('socket_errors')}" if load.get("socket_errors") else ""),
            ),
            Row("chaos", "slum RSS start / end", f"{rss_start / 2**20:.0f} / {rss_end / 2**20:.0f} MiB", ""),
            Row("chaos", "instances SIGKILLed", f"{counts['killed']}", f"restarts seen by slum: {restarts}"),
            Row(
                "chaos",
                "hostile exchanges",
                f"{counts['hostile']}",
                f"{counts['rounds']} rounds of the catalogue",
            ),
        ]
        if failures:
            print("what the healthy tenant met:", json.dumps(failures, indent=1))
        save_json(
            "chaos",
            {
                "duration": duration,
                "load": load,
                "counts": counts,
                "healthy_failures": failures,
                "rss_start": rss_start,
                "rss_end": rss_end,
                "same_pid": same,
                "uptime": uptime,
            },
        )
        if not same:
            tail = (d / "slum.log").read_text(errors="replace")[-3000:]
            print(json.dumps({"slum log tail": tail}, indent=1))
    return rows


if __name__ == "__main__":
    main_wrapper(run, "chaos")
