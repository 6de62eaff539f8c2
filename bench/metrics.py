"""Request metrics and the sampler (issue 6).

- throughput with request metrics on vs off, in ONE slum: `request_metrics` is switched between
  wrk runs by rewriting the config and POST /_/api/reload, in three states in a rotating order
  (on, off, on again; median of --runs each). The two "on" states are an A/A pair: their gap is
  what this method cannot tell apart on the machine it runs on. slum runs pinned to CPU 0,
  nginx and wrk to CPU 1.
- the same comparison across two slum servers, `request_metrics = true` and `false` (--two;
  two processes differ by a few percent on their own). Every slum here forwards to the SAME
  nginx (started here; each slum's instance is a small script that adds a `listen
  127.0.0.1:$PORT` to that nginx, reloads it, and sleeps, so each edge reaches the very same
  nginx workers on a port of its own).
- sampler cost: another slum with 100 running instances (a tiny program that listens on $PORT
  and sleeps), spawned through the API and healthy; /_/api/status "sampler" busy_s and ticks
  read before and after --window seconds: % of one core (busy_s is the tick's wall time in its
  worker thread, so on a loaded machine it over-states the CPU); slum's whole CPU beside it.

    .venv/bin/python bench/metrics.py [--runs 9] [--duration 5] [--threads 2] [--connections 32]
                                      [--instances 100] [--window 30] [--two] [--quick]
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
    return sum(cpu_times(pid))


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


def set_metrics(s: Slum, config: str, on: bool) -> None:
    (s.dir / "tenement.toml").write_text(
        config.replace("request_metrics = true", f"request_metrics = {str(on).lower()}")
    )
    code, data = api(s.sock, "POST", "/_/api/reload", {})
    if code != 200 or status(s)["requests_metrics"] != on:
        raise RuntimeError(f"reload to request_metrics = {on}: {code} {data}")


def toggled(
    args: argparse.Namespace, s: Slum, config: str, nginx_pids: list[int]
) -> dict[str, list[dict[str, Any]]]:
    """One server, metrics switched by a reload before each run, in three states taken in a
    rotating order: on, off, and on again (the A/A pair, whose gap is the noise of the method)."""
    from proxy import check_target, pin, wrk

    check_target("toggled", s.port, HOST)
    if (os.cpu_count() or 1) >= 2:
        # slum alone on CPU 0, nginx, wrk (a child of this process) and the rest on CPU 1: the
        # runs then differ by what slum does, not by where the scheduler put whom.
        pin(s.pid, {0})
        for p in nginx_pids:
            pin(p, {1})
        os.sched_setaffinity(0, {1})
    wrk(f"http://127.0.0.1:{s.port}/index.html", HOST, args.threads, args.connections, args.warmup)
    states = [("metrics on", True), ("metrics off", False), ("metrics on again", True)]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in states}
    for i in range(args.runs):
        for name, on in states[i % 3 :] + states[: i % 3]:
            set_metrics(s, config, on)
            c0 = cpu_times(s.pid)
            r = wrk(
                f"http://127.0.0.1:{s.port}/index.html", HOST, args.threads, args.connections, args.duration
            )
            c1 = cpu_times(s.pid)
            r["slum_cpu_s"] = c1[0] + c1[1] - c0[0] - c0[1]
            r["slum_user_s"] = c1[0] - c0[0]
            results[name].append(r)
            print(
                f"  run {i + 1}: {name:16} {r['rps']:>8.0f} req/s  p50 {r['p50']:.2f} ms  "
                f"p99 {r['p99']:.2f} ms  non-2xx {r['non2xx']}  (one slum, pid {s.pid})",
                flush=True,
            )
    set_metrics(s, config, True)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return results


def cpu_times(pid: int) -> tuple[float, float]:
    t = psutil.Process(pid).cpu_times()
    return float(t.user), float(t.system)


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
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--window", type=float, default=30.0, help="seconds the sampler is watched")
    ap.add_argument("--two", action="store_true", help="also: two slums, one on, one off")
    ap.add_argument("--quick", action="store_true", help="3 runs of 3 s, a 10 s sampler window")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.duration, args.warmup, args.window = 3, 3.0, 1.0, 10.0
    args.runs = max(1, min(args.runs, 20))
    args.duration = max(1, min(round(args.duration), 120))  # wrk takes whole seconds only
    args.warmup = max(1, round(args.warmup))
    n = max(1, min(args.instances, 500))
    window = max(3.0, min(args.window, 600.0))

    rows: list[Row] = [load_row("metrics", "at start")]
    extra: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with tempdir("slum-bench-metrics-") as d, Procs() as procs:
        ndir = d / "nginx"
        ndir.mkdir()
        nginx, nginx_port = shared_nginx(procs, ndir)

        def server(name: str, on: bool) -> tuple[Slum, str]:
            sdir = d / name.replace(" ", "-")
            sdir.mkdir()
            conf = SLUM_CONF.format(dir=sdir, metrics=str(on).lower(), nginx_dir=ndir, nginx=nginx)
            s = start_slum(procs, sdir, conf)
            s.wait_healthy(["web:x"])
            if status(s)["requests_metrics"] != on:
                raise RuntimeError(f"{name}: /_/api/status requests_metrics is not {on}")
            return s, conf

        one, conf = server("toggled", True)
        print(
            f"metrics: one slum, wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s "
            f"x{args.runs} each way, request_metrics switched by a reload before each run; "
            f"nginx pid {procs.procs[0].pid}",
            flush=True,
        )
        master = procs.procs[0].pid
        results = toggled(args, one, conf, [master, *(c.pid for c in psutil.Process(master).children())])
        procs.stop(one.proc)
        if args.two:
            servers = {
                name: server(name, on)[0] for name, on in (("metrics on", True), ("metrics off", False))
            }
            print("metrics: two servers, runs alternating", flush=True)
            extra["two slums"] = throughput(args, servers)
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
            "two_servers": extra,
            "sampler": samp,
            "nginx_port": nginx_port,
            "record_s": record_s,
        },
    )

    def summary(results: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
        out = {}
        for name, rs in results.items():
            out[name] = {m: median([r[m] for r in rs]) for m in ("rps", "p50", "p99")}
            out[name]["cpu"] = median([r["slum_cpu_s"] / r["requests"] * 1e6 for r in rs if r["requests"]])
            if all("slum_user_s" in r for r in rs):
                out[name]["user"] = median(
                    [r["slum_user_s"] / r["requests"] * 1e6 for r in rs if r["requests"]]
                )
        return out

    def spread(rs: list[dict[str, Any]]) -> str:
        return f"{min(r['rps'] for r in rs):.0f}-{max(r['rps'] for r in rs):.0f}"

    med = summary(results)
    for name, m in med.items():
        bad = sum(r["non2xx"] for r in results[name])
        rows.append(
            Row(
                "metrics",
                f"{name}, one slum: req/s (median of {args.runs})",
                f"{m['rps']:.0f}",
                f"p50 {m['p50']:.2f} / p99 {m['p99']:.2f} ms; {m['cpu']:.1f} us slum CPU/req"
                + (f"; {bad} non-2xx!" if bad else ""),
            )
        )
    on, off, again = med["metrics on"], med["metrics off"], med["metrics on again"]
    # Both "on" states against "off": every on run counts, the A/A pair says how far apart two
    # medians of the same state come out here.
    on_all = median([r["rps"] for r in results["metrics on"] + results["metrics on again"]])
    loss = 1 - on_all / off["rps"]
    rows.append(
        Row(
            "metrics",
            "on / off req/s, one slum",
            f"{on_all / off['rps']:.3f}x",
            f"at most {TARGET_LOSS:.0%} lower: {met(loss <= TARGET_LOSS)} "
            f"({loss:+.1%} lower); runs on {spread(results['metrics on'] + results['metrics on again'])}, "
            f"off {spread(results['metrics off'])}; user CPU/req {on['user']:.1f} / {off['user']:.1f} us",
            issue18="request metrics on vs off",
        )
    )
    rows.append(
        Row(
            "metrics",
            "A/A: on / on again req/s, one slum",
            f"{on['rps'] / again['rps']:.3f}x",
            "the same state twice: how far apart two medians come out on this machine",
        )
    )
    for label, res in extra.items():
        m2 = summary(res)
        (a, ma), (b, mb) = m2.items()
        rows.append(
            Row(
                "metrics",
                f"{label}: {a} / {b} req/s, two processes",
                f"{ma['rps'] / mb['rps']:.3f}x",
                f"{a} {spread(res[a])}, {b} {spread(res[b])}; CPU/req {ma['cpu']:.1f} vs {mb['cpu']:.1f} us",
            )
        )
    rows.append(
        Row(
            "metrics",
            "RequestMetrics.record() in-process",
            f"{record_s * 1e6:.2f} us/call",
            f"= {record_s * 1e6 / off['cpu']:.1%} of slum's {off['cpu']:.0f} us CPU per request "
            "(metrics off)",
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
