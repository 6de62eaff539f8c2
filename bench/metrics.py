"""Request metrics and the sampler (issue 6).

- throughput with request metrics on vs off: two slum servers, `request_metrics = true` and
  `false`, both forwarding to the SAME nginx (started here; each slum's instance is a small script
  that adds a `listen 127.0.0.1:$PORT` to that nginx, reloads it, and sleeps, so each edge
  reaches the very same nginx workers on a port of its own). wrk runs alternate between the two
  (A B, B A, ...), median of --runs each.
- sampler cost: a third slum with 100 running instances (a tiny program that listens on $PORT
  and sleeps), spawned through the API and healthy; /_/api/status "sampler" busy_s and ticks
  read before and after --window seconds: % of one core (busy_s is the tick's wall time in its
  worker thread, so on a loaded machine it over-states the CPU); slum's whole CPU beside it.

    .venv/bin/python bench/metrics.py [--runs 3] [--duration 10] [--threads 2] [--connections 32]
                                      [--instances 100] [--window 30] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    Procs,
    Row,
    Slum,
    api,
    free_port,
    load_row,
    main_wrapper,
    median,
    met,
    open_dirs,
    real_python3,
    save_json,
    start_slum,
    status,
    tempdir,
    wait_tcp,
)

HOST = "x.web.localhost"
TARGET_LOSS = 0.03  # issue 18: metrics on at least 0.97x of off
TARGET_SAMPLER_PCT = 2.0

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    default_type text/plain;
    server {{
        listen 127.0.0.1:{port};
        include {dir}/listen/*.conf;
        root {dir}/www;
        location = /health {{ return 200 "ok\\n"; }}
    }}
}}
"""

# The instance's command: one more port on the shared nginx, then stay alive while slum wants it.
ATTACH_SH = """\
#!/bin/sh
set -e
echo "listen 127.0.0.1:$PORT;" > "$NGINX_DIR/listen/$PORT.conf"
"$NGINX_BIN" -e stderr -p "$NGINX_DIR" -c "$NGINX_DIR/nginx.conf" -s reload
exec sleep 86400
"""

SLUM_CONF = """\
[settings]
data_dir = "{dir}/data"
health_check_interval = 10
request_metrics = {metrics}

[service.web]
command = "sh {nginx_dir}/attach.sh"
idle_timeout = 0
startup_timeout = 10
restart = "never"

[service.web.env]
NGINX_DIR = "{nginx_dir}"
NGINX_BIN = "{nginx}"

[instances]
web = ["x"]
"""

SAMPLER_CONF = """\
[settings]
data_dir = "{dir}/data"
health_check_interval = 10

[service.idle]
command = ["{python}", "{dir}/listen.py"]
idle_timeout = 0
startup_timeout = 20
"""

LISTEN_PY = """\
import os, socket, time
s = socket.socket()
s.bind(("127.0.0.1", int(os.environ["PORT"])))
s.listen()
time.sleep(3600)
"""


def shared_nginx(procs: Procs, d: Path) -> tuple[str, int]:
    import proxy

    missing = proxy.ensure_tools()
    if "nginx" in missing or "wrk" in missing:
        raise RuntimeError("nginx/wrk missing: apt-get install -y nginx wrk")
    nginx = proxy._which("nginx") or "nginx"
    open_dirs(d)
    (d / "www").mkdir(mode=0o755)
    (d / "www" / "index.html").write_bytes(proxy.BODY)
    (d / "listen").mkdir()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / "tmp" / sub).mkdir(parents=True)
    port = free_port()
    (d / "nginx.conf").write_text(NGINX_CONF.format(dir=d, port=port))
    (d / "attach.sh").write_text(ATTACH_SH)
    log = (d / "nginx.log").open("wb")
    p = procs.start(
        [nginx, "-e", "stderr", "-p", str(d), "-c", str(d / "nginx.conf")],
        cwd=d,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    wait_tcp(port, 10, p)
    return nginx, port


def cpu_s(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def throughput(args: argparse.Namespace, servers: dict[str, Slum]) -> dict[str, list[dict[str, Any]]]:
    from proxy import check_target, wrk

    for name, s in servers.items():
        check_target(name, s.port, HOST)
        wrk(f"http://127.0.0.1:{s.port}/index.html", HOST, args.threads, args.connections, args.warmup)
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in servers}
    names = list(servers)
    for i in range(args.runs):
        order = names if i % 2 == 0 else names[::-1]  # A B, B A: no side always goes first
        for name in order:
            s = servers[name]
            c0 = cpu_s(s.pid)
            r = wrk(
                f"http://127.0.0.1:{s.port}/index.html", HOST, args.threads, args.connections, args.duration
            )
            r["slum_cpu_s"] = cpu_s(s.pid) - c0
            results[name].append(r)
            print(
                f"  run {i + 1}: {name:12} {r['rps']:>8.0f} req/s  p50 {r['p50']:.2f} ms  "
                f"p99 {r['p99']:.2f} ms  non-2xx {r['non2xx']}",
                flush=True,
            )
    return results


def record_cost(n: int = 100_000, rounds: int = 5) -> float:
    """Seconds per RequestMetrics.record() call as the edge makes it (one instance, one route):
    the CPU that `request_metrics = true` adds to a request, without the noise of two servers."""
    from slum.telemetry.requests import RequestMetrics

    m = RequestMetrics()
    record = m.record
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            record("web:x", b"GET", 200, 0.0031, b"/index.html")
        times.append((time.perf_counter() - t0) / n)
    return median(times)


def sampler_cost(procs: Procs, d: Path, n: int, window: float) -> dict[str, Any]:
    (d / "listen.py").write_text(LISTEN_PY)
    slum = start_slum(procs, d, SAMPLER_CONF.format(dir=d, python=real_python3()))
    ids = [f"i{k:03d}" for k in range(n)]

    def spawn(name: str) -> None:
        code, data = api(slum.sock, "POST", "/_/api/instances", {"service": "idle", "id": name})
        if code != 201:
            raise RuntimeError(f"spawn idle:{name}: {code} {data}")

    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(spawn, ids))
    slum.wait_healthy([f"idle:{i}" for i in ids], timeout=60)
    spawned_s = time.monotonic() - t0
    # The sampler walks every process for a few ticks after instances start: let that pass, so
    # the window shows the steady state (its rescans every 10 ticks stay in).
    time.sleep(8)
    s0, c0, w0 = status(slum)["sampler"], cpu_s(slum.pid), time.monotonic()
    time.sleep(window)
    s1, c1, w1 = status(slum)["sampler"], cpu_s(slum.pid), time.monotonic()
    running = sum(1 for i in slum.instances() if i["status"] in ("healthy", "running"))
    wall = w1 - w0
    return {
        "instances": running,
        "spawn_s": spawned_s,
        "window_s": wall,
        "ticks": s1["ticks"] - s0["ticks"],
        "busy_s": s1["busy_s"] - s0["busy_s"],
        "last_tick_ms": s1["last_tick_ms"],
        "slum_cpu_s": c1 - c0,
        "sampler_pct": (s1["busy_s"] - s0["busy_s"]) / wall * 100,
        "slum_pct": (c1 - c0) / wall * 100,
    }


def run(argv: list[str]) -> list[Row]:
    ap = argparse.ArgumentParser(
        prog="bench/metrics.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--window", type=float, default=30.0, help="seconds the sampler is watched")
    ap.add_argument("--quick", action="store_true", help="1 run of 3 s, a 10 s sampler window")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.duration, args.warmup, args.window = 1, 3.0, 1.0, 10.0
    args.runs = max(1, min(args.runs, 20))
    args.duration = max(1, min(round(args.duration), 120))  # wrk takes whole seconds only
    args.warmup = max(1, round(args.warmup))
    n = max(1, min(args.instances, 500))
    window = max(3.0, min(args.window, 600.0))

    rows: list[Row] = [load_row("metrics", "at start")]
    with tempdir("slum-bench-metrics-") as d, Procs() as procs:
        ndir = d / "nginx"
        ndir.mkdir()
        nginx, nginx_port = shared_nginx(procs, ndir)
        servers: dict[str, Slum] = {}
        for name, on in (("metrics on", "true"), ("metrics off", "false")):
            sdir = d / name.replace(" ", "-")
            sdir.mkdir()
            s = start_slum(procs, sdir, SLUM_CONF.format(dir=sdir, metrics=on, nginx_dir=ndir, nginx=nginx))
            s.wait_healthy(["web:x"])
            if status(s)["requests_metrics"] != (on == "true"):
                raise RuntimeError(f"{name}: /_/api/status requests_metrics is not {on}")
            servers[name] = s
        print(
            f"metrics: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s "
            f"x{args.runs} per server, alternating; both reach nginx pid "
            f"{procs.procs[0].pid}",
            flush=True,
        )
        results = throughput(args, servers)
        for s in servers.values():
            procs.stop(s.proc)
        print(f"metrics: sampler with {n} instances, {window:g} s window ...", flush=True)
        sdir = d / "sampler"
        sdir.mkdir()
        samp = sampler_cost(procs, sdir, n, window)
        rows.append(load_row("metrics", "at end"))

    record_s = record_cost()
    save_json(
        "metrics",
        {
            "args": vars(args),
            "runs": results,
            "sampler": samp,
            "nginx_port": nginx_port,
            "record_s": record_s,
        },
    )
    med = {k: {m: median([r[m] for r in rs]) for m in ("rps", "p50", "p99")} for k, rs in results.items()}
    on, off = med["metrics on"], med["metrics off"]
    loss = 1 - on["rps"] / off["rps"]
    cpu_req = {}
    for name, m in med.items():
        bad = sum(r["non2xx"] for r in results[name])
        cpu = cpu_req[name] = median(
            [r["slum_cpu_s"] / r["requests"] * 1e6 for r in results[name] if r["requests"]]
        )
        rows.append(
            Row(
                "metrics",
                f"{name}: req/s (median of {args.runs})",
                f"{m['rps']:.0f}",
                f"p50 {m['p50']:.2f} / p99 {m['p99']:.2f} ms; {cpu:.0f} us slum CPU/req"
                + (f"; {bad} non-2xx!" if bad else ""),
            )
        )
    spread = {
        k: f"{min(r['rps'] for r in rs):.0f}-{max(r['rps'] for r in rs):.0f}" for k, rs in results.items()
    }
    rows.append(
        Row(
            "metrics",
            "on / off req/s",
            f"{on['rps'] / off['rps']:.3f}x",
            f"at most {TARGET_LOSS:.0%} lower: {met(loss <= TARGET_LOSS)} "
            f"({loss:+.1%} lower); runs on {spread['metrics on']}, off {spread['metrics off']}",
            issue18="request metrics on vs off",
        )
    )
    rows.append(
        Row(
            "metrics",
            "RequestMetrics.record() in-process",
            f"{record_s * 1e6:.2f} us/call",
            f"= {record_s * 1e6 / cpu_req['metrics off'] * 100:.1f}% of slum's "
            f"{cpu_req['metrics off']:.0f} us CPU per request (metrics off)",
        )
    )
    rows.append(
        Row(
            "metrics",
            f"sampler, {samp['instances']} running instances",
            f"{samp['sampler_pct']:.2f}% of a core",
            f"< {TARGET_SAMPLER_PCT:g}%: {met(samp['sampler_pct'] < TARGET_SAMPLER_PCT)}; "
            f"{samp['ticks']} ticks in {samp['window_s']:.0f} s, last tick "
            f"{samp['last_tick_ms']:.1f} ms",
        )
    )
    rows.append(
        Row(
            "metrics",
            "slum's whole CPU at rest, same window",
            f"{samp['slum_pct']:.2f}% of a core",
            f"everything slum does with {samp['instances']} instances idle; "
            f"spawning them took {samp['spawn_s']:.1f} s",
        )
    )
    return rows


if __name__ == "__main__":
    main_wrapper(run, "metrics")
