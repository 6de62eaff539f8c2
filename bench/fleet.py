"""The fleet (issue 8): the router hop, and route-table lookups with 10,000 tenants.

- router hop: a node slum (token from `slum token-gen`) with an nginx service, and a router slum
  with no services; on the router `slum server-add 127.0.0.1:PORT -n node --token ...` and
  `slum tenant-add t1 -s node --service svc`, so t1's instance svc:t1 runs on the node (woken by
  the first request). wrk, interleaved, median of --runs: client -> router -> node -> nginx
  (Host t1.localhost at the router), client -> node -> nginx (Host t1.localhost at the node, its
  own tenant route), and nginx direct. Also one connection at a time (-c1), which shows the
  latency each hop adds without queueing.
- route table: slum.proxy.routing.RouteTable with 10,000 tenants (and 1,000 custom domains);
  resolve() of 10,000 distinct random hosts (tenant hosts, some with a port, custom domains,
  instance hosts, unknown ones): cold = a fresh table each round (replace() empties its cache),
  warm = the same hosts again. ns per lookup, the Python loop included; a dict.get loop beside it.

    .venv/bin/python bench/fleet.py [--runs 3] [--duration 8] [--threads 2] [--connections 32]
                                    [--tenants 10000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    SLUM,
    Procs,
    Row,
    Slum,
    http_get,
    load_row,
    main_wrapper,
    median,
    save_json,
    setup_nginx,
    start_slum,
    tempdir,
)

HOST = "t1.localhost"

NODE_CONF = """\
[settings]
data_dir = "{dir}/data"
health_check_interval = 10

{nginx}
"""

ROUTER_CONF = """\
[settings]
data_dir = "{dir}/data"
node_check_interval = 2
"""


def cli(args: list[str], env: dict[str, str] | None = None) -> str:
    out = subprocess.run([SLUM, *args], capture_output=True, text=True, timeout=60, check=False, env=env)
    if out.returncode != 0:
        raise RuntimeError(
            f"slum {' '.join(args[:2])}: exit {out.returncode}: {(out.stderr or out.stdout).strip()[-300:]}"
        )
    return out.stdout.strip()


def wait_200(port: int, host: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = http_get(port, "/index.html", host)
            if last[0] == 200:
                return
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"Host {host} on :{port} not answering 200 after {timeout:.0f} s: {last}")


def wrk(url: str, headers: list[str], threads: int, conns: int, duration: float) -> dict[str, Any]:
    """proxy.wrk with any headers."""
    from proxy import parse_wrk

    args = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration:g}s", "--latency", "--timeout", "5s"]
    for h in headers:
        args += ["-H", h]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=duration + 30, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    return parse_wrk(out.stdout)


def fleet_setup(procs: Procs, d: Any) -> tuple[Slum, Slum, int, str]:
    ndir, rdir = d / "node", d / "router"
    ndir.mkdir()
    rdir.mkdir()
    token = cli(["token-gen", "--database", str(ndir / "slum.db")]).splitlines()[-1].strip()
    node = start_slum(procs, ndir, NODE_CONF.format(dir=ndir, nginx=setup_nginx(ndir)))
    router = start_slum(procs, rdir, ROUTER_CONF.format(dir=rdir))
    rdb = str(rdir / "slum.db")
    cli(["server-add", f"127.0.0.1:{node.port}", "-n", "node", "--token", token, "--database", rdb])
    cli(["tenant-add", "t1", "-s", "node", "--service", "svc", "--database", rdb])
    # The router notices the CLI's registry change within a second; the first request wakes
    # svc:t1 on the node.
    wait_200(router.port, HOST, 30)
    wait_200(node.port, HOST, 10)
    inst = next(i for i in node.instances() if i["id"] == "svc:t1")
    return node, router, int(inst["port"]), token


def hop(args: argparse.Namespace, targets: dict[str, tuple[int, list[str]]]) -> dict[str, Any]:
    for _name, (port, host) in targets.items():
        wrk(f"http://127.0.0.1:{port}/index.html", host, args.threads, args.connections, args.warmup)
    load: dict[str, list[dict[str, Any]]] = {n: [] for n in targets}
    single: dict[str, list[dict[str, Any]]] = {n: [] for n in targets}
    for i in range(args.runs):
        for name, (port, host) in targets.items():
            r = wrk(
                f"http://127.0.0.1:{port}/index.html", host, args.threads, args.connections, args.duration
            )
            load[name].append(r)
            print(
                f"  run {i + 1}: {name:24} {r['rps']:>8.0f} req/s  p50 {r['p50']:.2f} ms  "
                f"p99 {r['p99']:.2f} ms  non-2xx {r['non2xx']}",
                flush=True,
            )
        for name, (port, host) in targets.items():
            # wrk takes whole seconds only
            single[name].append(
                wrk(f"http://127.0.0.1:{port}/index.html", host, 1, 1, max(2, round(args.duration / 3)))
            )
    return {"load": load, "single": single}


def route_table(n_tenants: int, lookups: int, rounds: int) -> dict[str, Any]:
    from slum.proxy.routing import RouteTable, TenantRoute

    rnd = random.Random(8)
    tenants = {
        f"t{i:05d}": TenantRoute(
            f"t{i:05d}", "notes", "local" if i % 3 else "node1", None if i % 3 else "10.0.0.2:8080", "active"
        )
        for i in range(n_tenants)
    }
    aliases = {f"shop{i}.example.org": f"t{i * 7 % n_tenants:05d}" for i in range(1000)}
    kinds = [
        lambda: f"t{rnd.randrange(n_tenants):05d}.example.com",
        lambda: f"t{rnd.randrange(n_tenants):05d}.example.com:8080",
        lambda: f"shop{rnd.randrange(1000)}.example.org",
        lambda: f"a{rnd.randrange(10**6)}.notes.example.com",
        lambda: f"nobody{rnd.randrange(10**6)}.example.net",
    ]
    weights = [70, 10, 10, 5, 5]
    hosts_set: set[str] = set()
    while len(hosts_set) < lookups:
        hosts_set.add(rnd.choices(kinds, weights)[0]())
    hosts = list(hosts_set)
    table = RouteTable("example.com")
    cold: list[float] = []
    warm: list[float] = []
    base: list[float] = []
    plain = {h: 1 for h in hosts}
    found = 0
    for _ in range(rounds):
        rnd.shuffle(hosts)
        table.replace(tenants, aliases)  # a fresh cache
        resolve = table.resolve
        t0 = time.perf_counter_ns()
        for h in hosts:
            resolve(h)
        cold.append((time.perf_counter_ns() - t0) / len(hosts))
        t0 = time.perf_counter_ns()
        for h in hosts:
            resolve(h)
        warm.append((time.perf_counter_ns() - t0) / len(hosts))
        get = plain.get
        t0 = time.perf_counter_ns()
        for h in hosts:
            get(h)
        base.append((time.perf_counter_ns() - t0) / len(hosts))
        found = sum(1 for h in hosts if resolve(h).kind == "tenant")
    # What part of a miss is the IP-address check (ipaddress raises on every hostname).
    from slum.proxy.routing import is_ip

    names = [h.rpartition(":")[0] or h for h in hosts[:2000]]
    t0 = time.perf_counter_ns()
    for h in names:
        is_ip(h)
    is_ip_ns = (time.perf_counter_ns() - t0) / len(names)
    return {
        "cold_ns": cold,
        "warm_ns": warm,
        "dict_get_ns": base,
        "tenant_hits": found,
        "lookups": len(hosts),
        "is_ip_ns": is_ip_ns,
    }


def run(argv: list[str]) -> list[Row]:
    ap = argparse.ArgumentParser(
        prog="bench/fleet.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--tenants", type=int, default=10_000)
    ap.add_argument("--lookups", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="1 run of 3 s")
    args = ap.parse_args(argv)
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 3.0, 1.0
    args.runs = max(1, min(args.runs, 20))
    args.duration = max(1, min(round(args.duration), 120))
    args.warmup = max(1, round(args.warmup))

    rows: list[Row] = [load_row("fleet", "at start")]
    with tempdir("slum-bench-fleet-") as d, Procs() as procs:
        node, router, nginx_port, token = fleet_setup(procs, d)
        h = f"Host: {HOST}"
        # The node as the router reaches it: its headers, so the node checks the router's token.
        as_router = [h, "X-Tenant-ID: t1", f"X-Slum-Router: {token}"]
        check = wrk(f"http://127.0.0.1:{node.port}/index.html", as_router, 1, 1, 1)
        if check["non2xx"] or not check["requests"]:
            raise RuntimeError(f"node with the router's headers: {check}")
        targets = {
            "router -> node -> nginx": (router.port, [h]),
            "node -> nginx": (node.port, [h]),
            "node, router's headers": (node.port, as_router),
            "nginx direct": (nginx_port, []),
        }
        print(
            f"fleet: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s "
            f"x{args.runs}, interleaved; then -t1 -c1",
            flush=True,
        )
        res = hop(args, targets)
        rows.append(load_row("fleet", "at end"))
    rt = route_table(
        max(1, min(args.tenants, 1_000_000)),
        max(100, min(args.lookups, 10**6)),
        max(1, min(args.rounds, 200)),
    )
    save_json("fleet", {"args": vars(args), "hop": res, "route_table": rt})

    med = {n: {m: median([r[m] for r in rs]) for m in ("rps", "p50", "p99")} for n, rs in res["load"].items()}
    one = {
        n: {m: median([r[m] for r in rs]) for m in ("rps", "p50", "p99")} for n, rs in res["single"].items()
    }
    for name, m in med.items():
        bad = sum(r["non2xx"] for r in res["load"][name])
        rows.append(
            Row(
                "fleet",
                f"{name}: req/s, p50 / p99 (-c{args.connections})",
                f"{m['rps']:.0f}, {m['p50']:.2f} / {m['p99']:.2f} ms",
                f"-c1: {one[name]['rps']:.0f} req/s, p50 {one[name]['p50']:.3f} ms"
                + (f"; {bad} non-2xx!" if bad else ""),
            )
        )
    r, n = med["router -> node -> nginx"], med["node -> nginx"]
    r1, n1 = one["router -> node -> nginx"], one["node -> nginx"]
    h1 = one["node, router's headers"]
    hl = med["node, router's headers"]
    rows.append(
        Row(
            "fleet",
            "router hop: req/s router / node",
            f"{r['rps'] / n['rps']:.2f}x",
            f"p99 {r['p99'] - n['p99']:+.2f} ms; -c1 p50 {(r1['p50'] - n1['p50']) * 1000:+.0f} us"
            f" per hop, {r1['rps'] / n1['rps']:.2f}x req/s",
        )
    )
    rows.append(
        Row(
            "fleet",
            "node's check of the router token (-c1 p50)",
            f"{(h1['p50'] - n1['p50']) * 1000:+.0f} us",
            f"node with X-Slum-Router/X-Tenant-ID vs plain; -c{args.connections}: "
            f"{hl['rps']:.0f} vs {n['rps']:.0f} req/s",
        )
    )
    rows += [
        Row(
            "fleet",
            f"RouteTable.resolve, {args.tenants:,} tenants, cold (median of {len(rt['cold_ns'])})",
            f"{median(rt['cold_ns']):.0f} ns/lookup",
            f"fresh table per round, {rt['lookups']:,} distinct hosts ({rt['tenant_hits']:,} "
            f"tenants); is_ip() alone {rt['is_ip_ns']:.0f} ns of it",
        ),
        Row(
            "fleet",
            "RouteTable.resolve, warm (cached)",
            f"{median(rt['warm_ns']):.0f} ns/lookup",
            f"a dict.get loop: {median(rt['dict_get_ns']):.0f} ns",
        ),
    ]
    return rows


if __name__ == "__main__":
    main_wrapper(run, "fleet")
