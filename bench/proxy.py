"""Proxy throughput and latency: wrk against nginx direct, caddy -> nginx, slum -> nginx and
tenement -> nginx.

slum, caddy and the direct run reach the SAME backend: an nginx (Debian) serving a ~100-byte file,
which slum itself supervises as the instance `svc:x` (its command execs nginx on $PORT). Caddy
reverse-proxies to that instance's port, wrk hits it directly for the baseline. tenement (`ten`,
pip-installed into bench/results/ on first use) supervises an nginx of its own with the same
config and file, routed by the same Host. Each proxy is pinned to CPU 0 (caddy GOMAXPROCS=1,
tenement TOKIO_WORKER_THREADS=1); each target is run --runs times, interleaved (median reported)
after a short warm-up.

    .venv/bin/python bench/proxy.py [--threads 2] [--connections 32] [--duration 10] [--runs 3]
                                    [--nginx-workers 1] [--profile [SECONDS]]

--profile records the slum process under wrk load with py-spy (installed into the venv if
missing) into bench/results/ and prints the top functions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    BIN,
    RESULTS,
    ROOT,
    TENEMENT_ENV,
    TENEMENT_SERVICE_KEYS,
    Procs,
    Row,
    free_port,
    http_get,
    main_wrapper,
    median,
    save_json,
    start_slum,
    start_tenement,
    tempdir,
    wait_tcp,
)

HOST = "x.svc.localhost"
BODY = b"slum bench: a small static file served by nginx, about one hundred bytes long, padding...\n"
TARGET_RATIO = 1.0  # issue 18: at or above caddy per core, request metrics on
TARGET_P99_MS = 10.0


def ensure_tools() -> list[str]:
    """Install wrk, nginx and caddy with apt-get when missing. Returns what is still missing."""
    need = {"wrk": "wrk", "nginx": "nginx", "caddy": "caddy"}
    missing = [pkg for tool, pkg in need.items() if not _which(tool)]
    if missing and shutil.which("apt-get") and os.geteuid() == 0:
        print(f"proxy: installing {' '.join(missing)} with apt-get ...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], stdout=subprocess.DEVNULL, timeout=300, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *missing], stdout=subprocess.DEVNULL, timeout=600, check=False
        )
        missing = [pkg for tool, pkg in need.items() if not _which(tool)]
    return missing


def _which(tool: str) -> str | None:
    return shutil.which(tool) or next(
        (p for d in ("/usr/sbin", "/usr/local/sbin", "/sbin") if os.access(p := f"{d}/{tool}", os.X_OK)), None
    )


NGINX_CONF = """\
worker_processes {workers};
daemon off;
pid {dir}/nginx-{port}.pid;
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
        root {dir}/www;
        location = /health {{ return 200 "ok\\n"; }}
    }}
}}
"""

# slum runs this as the service's command: it writes nginx's config for $PORT and execs nginx,
# so slum supervises nginx itself and the edge forwards to it. (NGINX_BIN, not NGINX: nginx reads
# $NGINX as a list of inherited sockets.)
BACKEND_SH = """\
#!/bin/sh
set -e
conf="$NGINX_DIR/nginx-$PORT.conf"
sed "s/__PORT__/$PORT/g" "$NGINX_DIR/nginx.conf.in" > "$conf"
exec "$NGINX_BIN" -e stderr -p "$NGINX_DIR" -c "$conf"
"""

SLUM_CONF = """\
[settings]
data_dir = "{dir}/data"
health_check_interval = 10

[service.svc]
command = "sh {dir}/backend.sh"
health = "/health"
idle_timeout = 0
startup_timeout = 10
restart = "on-failure"

[service.svc.env]
NGINX_DIR = "{dir}"
NGINX_BIN = "{nginx}"

[instances]
svc = ["x"]
"""

# The same backend under tenement: its own nginx (tenement runs what it supervises), same files.
TEN_CONF = """\
[settings]
data_dir = "{dir}/ten/data"
health_check_interval = 10

[service.svc]
command = "sh {dir}/backend.sh"
health = "/health"
idle_timeout = 0
startup_timeout = 10
restart = "on-failure"
{keys}
[service.svc.env]
NGINX_DIR = "{dir}"
NGINX_BIN = "{nginx}"
{env}
[instances]
svc = ["x"]
"""

CADDYFILE = """\
{{
    admin off
    auto_https off
}}
http://:{port} {{
    bind 127.0.0.1
    reverse_proxy 127.0.0.1:{backend}
}}
"""


def parse_wrk(out: str) -> dict[str, Any]:
    def dur(s: str) -> float:  # -> ms
        m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", s)
        if not m:
            return float("nan")
        return float(m[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[m[2]]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    total = re.search(r"(\d+) requests in", out)
    return {
        "rps": float(rps[1]) if rps else float("nan"),
        "p50": dur(lat.get("50", "")),
        "p90": dur(lat.get("90", "")),
        "p99": dur(lat.get("99", "")),
        "requests": int(total[1]) if total else 0,
        "non2xx": int(non2xx[1]) if non2xx else 0,
        "socket_errors": errors[1].strip() if errors else "",
    }


def wrk(url: str, host: str | None, threads: int, conns: int, duration: float) -> dict[str, Any]:
    args = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration:g}s", "--latency", "--timeout", "5s"]
    if host:
        args += ["-H", f"Host: {host}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=duration + 30, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    return parse_wrk(out.stdout)


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of a process onto `cpus` (sched_setaffinity on the pid moves one thread)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), cpus)


def check_target(name: str, port: int, host: str | None) -> None:
    status, body = http_get(port, "/index.html", host)
    if status != 200 or body != BODY:
        raise RuntimeError(f"{name}: GET /index.html answered {status} {body[:200]!r}")


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def profile(slum_pid: int, url: str, args: argparse.Namespace, seconds: float) -> list[str]:
    """py-spy the slum process while wrk loads it: raw collapsed stacks (summarised here) and a
    flamegraph, both under bench/results/. Returns the summary lines."""
    pyspy = BIN / "py-spy"
    if not pyspy.exists():
        print("proxy: installing py-spy into the venv ...", flush=True)
        subprocess.run([str(BIN / "pip"), "install", "-q", "py-spy"], timeout=300, check=False)
    if not pyspy.exists():
        return ["py-spy unavailable (pip install py-spy failed)"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    raw = RESULTS / "proxy-profile.txt"
    svg = RESULTS / "proxy-profile.svg"
    with Procs() as procs:
        load = procs.start(
            [
                "wrk",
                f"-t{args.threads}",
                f"-c{args.connections}",
                f"-d{2 * seconds + 4:g}s",
                "-H",
                f"Host: {HOST}",
                url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        cpu0, t0 = cpu_seconds(slum_pid), time.monotonic()
        time.sleep(1)
        # Blocking sampling (the default): complete stacks, at the price of brief pauses.
        for out, fmt in ((raw, "raw"), (svg, "flamegraph")):
            rec = subprocess.run(
                [
                    str(pyspy),
                    "record",
                    "--pid",
                    str(slum_pid),
                    "-d",
                    f"{seconds:g}",
                    "-r",
                    "100",
                    "--format",
                    fmt,
                    "-o",
                    str(out),
                ],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=False,
            )
            if rec.returncode != 0 or not out.exists():
                return [f"py-spy failed: {(rec.stderr or rec.stdout).strip()[-300:]}"]
        stdout, _ = load.communicate(timeout=2 * seconds + 30)
        cpu1, t1 = cpu_seconds(slum_pid), time.monotonic()
    w = parse_wrk(stdout)
    head = [f"profile: {raw.relative_to(ROOT)}, {svg.relative_to(ROOT)}"]
    if w["requests"]:
        head.append(
            f"under py-spy: {w['rps']:.0f} req/s; slum CPU {(cpu1 - cpu0) / (t1 - t0) * 100:.0f}%"
            f" of a core, {(cpu1 - cpu0) / w['requests'] * 1e6:.0f} us CPU per request"
        )
    return head + summarise_raw(raw)


def _func(frame: str) -> tuple[str, str]:
    """'func (path/file.py:123)' -> ('func (path/file.py)', 'path/file.py')."""
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame, "?"
    return f"{m[1]} ({m[2]})", m[2]


def _area(path: str) -> str:
    if path.startswith("slum/"):
        return path
    if path.startswith("trio/_core/") or path.startswith("_core/"):
        return "trio scheduler (trio/_core)"
    if path.startswith("trio/"):
        return f"trio I/O ({path})"
    return path


def summarise_raw(raw: Path, top: int = 20) -> list[str]:
    """Collapsed stacks ("a;b;c N") -> self time per function, self time per file/area, and the
    inclusive time of slum's own functions, as percentages of the main thread's non-idle
    samples."""
    self_f: Counter[str] = Counter()
    self_a: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = others = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        if not stack.startswith("<module>"):
            # Worker threads blocked in a queue/lock wait (py-spy cannot tell that from work);
            # the edge runs on the main thread, which is what this summary is about.
            others += count
            continue
        total += count
        frames = [_func(f) for f in stack.split(";")]
        leaf, path = frames[-1]
        self_f[leaf] += count
        # A syscall shows up as the Python line that makes it: trio's _nonblocking_helper.
        if "_nonblocking_helper" in leaf:
            names = " ".join(f for f, _ in frames[-4:])
            kind = "send" if "send" in names else "recv" if "receive" in names or "recv" in names else "other"
            self_a[f"socket syscalls: {kind} (trio._socket._nonblocking_helper)"] += count
        else:
            self_a[_area(path)] += count
        for f in {f for f, p in frames if p.startswith("slum/")}:
            incl[f] += count
    if not total:
        return ["no samples"]
    out = [
        f"main-thread samples: {total} (non-idle; {others} samples of other threads left out)",
        "self time by area:",
    ]
    out += [f"  {c / total * 100:5.1f}%  {a}" for a, c in self_a.most_common(12)]
    out.append("self time by function:")
    out += [f"  {c / total * 100:5.1f}%  {f}" for f, c in self_f.most_common(top)]
    out.append("inclusive time of slum's functions:")
    out += [f"  {c / total * 100:5.1f}%  {f}" for f, c in incl.most_common(top)]
    return out


def run(argv: list[str]) -> list[Row]:
    ap = argparse.ArgumentParser(
        prog="bench/proxy.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    ap.add_argument("--runs", type=int, default=3, help="wrk runs per target (median reported)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per target")
    ap.add_argument("--nginx-workers", default="1")
    ap.add_argument(
        "--profile",
        type=float,
        nargs="?",
        const=10.0,
        default=None,
        metavar="SECONDS",
        help="py-spy the slum process under load",
    )
    ap.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin slum and caddy to CPU 0 (GOMAXPROCS=1 for caddy)",
    )
    ap.add_argument(
        "--no-tenement",
        dest="tenement",
        action="store_false",
        help="leave tenement out (it is pip-installed on first use)",
    )
    args = ap.parse_args(argv)
    args.pin = args.pin and (os.cpu_count() or 1) > 1
    args.runs = max(1, min(args.runs, 20))
    args.duration = max(1.0, min(args.duration, 120.0))

    missing = ensure_tools()
    if missing:
        msg = (
            f"missing {', '.join(missing)}: install with `apt-get install -y {' '.join(missing)}`"
            " (Debian); the proxy benchmark did not run"
        )
        print(f"proxy: {msg}", file=sys.stderr)
        return [Row("proxy", "skipped", "-", msg)]
    nginx = _which("nginx") or "nginx"

    rows: list[Row] = []
    with tempdir("slum-bench-proxy-") as d, Procs() as procs:
        d.chmod(0o755)  # nginx workers may run as nobody: they must read www/
        (d / "www").mkdir(mode=0o755)
        (d / "www" / "index.html").write_bytes(BODY)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (d / "tmp" / sub).mkdir(parents=True)
        (d / "nginx.conf.in").write_text(
            NGINX_CONF.format(workers=args.nginx_workers, dir=d, port="__PORT__")
        )
        (d / "backend.sh").write_text(BACKEND_SH)
        slum = start_slum(procs, d, SLUM_CONF.format(dir=d, nginx=nginx))
        backend = int(slum.wait_healthy(["svc:x"])["svc:x"]["port"])
        wait_tcp(backend, 10)

        caddy_port = free_port()
        (d / "Caddyfile").write_text(CADDYFILE.format(port=caddy_port, backend=backend))
        caddy_env = {
            **os.environ,
            "HOME": str(d),
            "XDG_DATA_HOME": str(d / "xdg-data"),
            "XDG_CONFIG_HOME": str(d / "xdg-config"),
            **({"GOMAXPROCS": "1"} if args.pin else {}),
        }
        caddy_log = (d / "caddy.log").open("wb")
        caddy = procs.start(
            ["caddy", "run", "--config", str(d / "Caddyfile"), "--adapter", "caddyfile"],
            cwd=d,
            env=caddy_env,
            stdout=caddy_log,
            stderr=subprocess.STDOUT,
        )
        caddy_log.close()
        try:
            wait_tcp(caddy_port, 15, caddy)
        except (RuntimeError, TimeoutError) as e:
            tail = (d / "caddy.log").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"caddy did not start: {e}\n{tail}") from None

        ten = None
        if args.tenement:
            ten = start_tenement(
                procs,
                d / "ten",
                TEN_CONF.format(dir=d, nginx=nginx, keys=TENEMENT_SERVICE_KEYS, env=TENEMENT_ENV),
                [HOST],
                env={"TOKIO_WORKER_THREADS": "1"} if args.pin else {},
            )
        targets = [
            ("nginx direct", f"http://127.0.0.1:{backend}/index.html", None, backend),
            ("caddy -> nginx", f"http://127.0.0.1:{caddy_port}/index.html", None, caddy_port),
            ("slum -> nginx", f"http://127.0.0.1:{slum.port}/index.html", HOST, slum.port),
        ]
        if ten is not None:
            targets.append(("tenement -> nginx", f"http://127.0.0.1:{ten.port}/index.html", HOST, ten.port))
        for name, _, host, port in targets:
            check_target(name, port, host)
        if args.pin:
            # Per core: the proxies (every thread of each) on CPU 0; wrk and nginx elsewhere.
            for pid in (slum.pid, caddy.pid, *([ten.pid] if ten else [])):
                pin(pid, {0})

        print(
            f"proxy: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s x{args.runs} "
            f"per target, nginx workers={args.nginx_workers}, {os.cpu_count()} cpus",
            flush=True,
        )
        load_before = os.getloadavg()[0]
        results: dict[str, list[dict[str, Any]]] = {n: [] for n, *_ in targets}
        for _name, url, host, _ in targets:
            if args.warmup > 0:
                wrk(url, host, args.threads, args.connections, args.warmup)
        # Interleave the runs so that drift (thermal, noisy neighbours) hits all targets alike.
        for i in range(args.runs):
            for name, url, host, _ in targets:
                cpu0 = cpu_seconds(slum.pid)
                r = wrk(url, host, args.threads, args.connections, args.duration)
                # slum's own CPU over the run (in every run, to see what it costs at rest too)
                r["slum_cpu_s"] = cpu_seconds(slum.pid) - cpu0
                results[name].append(r)
                print(
                    f"  run {i + 1}: {name:17} {r['rps']:>9.0f} req/s  p50 {r['p50']:.2f} ms  "
                    f"p99 {r['p99']:.2f} ms  non-2xx {r['non2xx']}  {r['socket_errors']}",
                    flush=True,
                )

        med = {n: {k: median([r[k] for r in rs]) for k in ("rps", "p50", "p99")} for n, rs in results.items()}
        bad = {n: sum(r["non2xx"] for r in rs) for n, rs in results.items()}
        direct, caddy_r, slum_r = (med[n] for n, *_ in targets[:3])
        for name, m in med.items():
            note = f"{bad[name]} non-2xx!" if bad[name] else ""
            rows.append(Row("proxy", f"{name} req/s", f"{m['rps']:.0f}", note))
            target = ""
            if name.startswith("slum"):
                target = f"p99 < {TARGET_P99_MS:g} ms: {'met' if m['p99'] < TARGET_P99_MS else 'NOT met'}"
            rows.append(Row("proxy", f"{name} p50 / p99", f"{m['p50']:.2f} / {m['p99']:.2f} ms", target))
        ratio_caddy = slum_r["rps"] / caddy_r["rps"]
        rows.append(Row("proxy", "slum / direct", f"{slum_r['rps'] / direct['rps']:.2f}x", ""))
        rows.append(
            Row(
                "proxy",
                "slum / caddy" + (" (each pinned to 1 core)" if args.pin else ""),
                f"{ratio_caddy:.3f}x",
                f">= {TARGET_RATIO:.2f}x: "
                + (
                    "met"
                    if ratio_caddy >= TARGET_RATIO
                    else f"NOT met, gap {TARGET_RATIO - ratio_caddy:.3f}x"
                )
                + f"; slum p99 {slum_r['p99']:.2f} ms, caddy {caddy_r['p99']:.2f} ms",
                issue18="proxy vs caddy, pinned, metrics on",
            )
        )
        if ten is not None:
            ten_r = med[targets[3][0]]
            rows.append(
                Row(
                    "proxy",
                    "slum / tenement" + (" (each pinned to 1 core)" if args.pin else ""),
                    f"{slum_r['rps'] / ten_r['rps']:.2f}x",
                    f"tenement / caddy {ten_r['rps'] / caddy_r['rps']:.2f}x; tenement p99 "
                    f"{ten_r['p99']:.2f} ms",
                    issue18="proxy vs tenement, pinned",
                )
            )
        else:
            rows.append(Row("proxy", "slum / tenement", "-", "tenement not installed (pip failed)"))
        slum_runs = results[targets[2][0]]
        cpu_util = median([r["slum_cpu_s"] / args.duration for r in slum_runs])
        cpu_req = median([r["slum_cpu_s"] / r["requests"] for r in slum_runs if r["requests"]])
        rows.append(
            Row(
                "proxy",
                "slum CPU under load",
                f"{cpu_util * 100:.0f}% of a core",
                f"{cpu_req * 1e6:.0f} us CPU per request",
            )
        )
        busy = load_before / (os.cpu_count() or 1)
        rows.append(
            Row(
                "proxy",
                "load avg (1 min) before runs",
                f"{load_before:.1f}",
                "machine busy: numbers noisy, p99 inflated" if busy > 0.5 else "quiet",
            )
        )

        profile_lines: list[str] = []
        if args.profile:
            print(f"proxy: profiling slum (pid {slum.pid}) under wrk for {args.profile:g} s ...", flush=True)
            profile_lines = profile(slum.pid, targets[2][1], args, args.profile)
            print("\n".join(profile_lines))
            (RESULTS / "proxy-profile-summary.txt").write_text("\n".join(profile_lines) + "\n")
        save_json("proxy", {"args": vars(args), "runs": results, "median": med, "profile": profile_lines})
    return rows


if __name__ == "__main__":
    main_wrapper(run, "proxy")
