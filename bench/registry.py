"""The fleet registry on etcd (issue 19) against the SQLite one, in one run.

- route propagation: a writer in this process adds a tenant to the registry (etcd: an
  EtcdRegistry on the 3-member cluster; SQLite: a SqliteRegistry on the router's own database
  file, as a second process would) and polls the router's public port for that tenant's host
  until the answer is no longer `404 unknown host`. The time from the write's commit to the
  first routed answer, per change: p50 / p99 over --changes changes. etcd's routers follow a
  watch; the SQLite router reads its version row every second, so its number is the poll.
  The tenants are placed on a server whose address refuses connections: the router answers
  502 at once, so nothing but routing is measured.
- router hop: a node slum with an nginx service and two routers in front of it, one on each
  registry (`registry = "etcd://..."` in [settings], or none). wrk, interleaved, median of
  --runs: client -> router (etcd) -> node -> nginx, client -> router (SQLite) -> node -> nginx,
  and client -> node -> nginx. The hot path reads only the in-memory route table, so the two
  routers should not differ beyond noise.
- failover: Caddy in front of two routers on the same etcd (round robin, lb_try_duration),
  wrk -c16 through it for --failover seconds; a third in, router 1 is SIGKILLed, two thirds in,
  one etcd member: the requests, non-2xx answers and socket errors the clients saw.

    .venv/bin/python bench/registry.py [--changes 100] [--sqlite-changes 30] [--runs 3]
                                       [--duration 6] [--connections 32] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import (
    Procs,
    Row,
    Slum,
    free_port,
    load_row,
    main_wrapper,
    median,
    pct,
    save_json,
    setup_nginx,
    start_slum,
    tempdir,
)

from fleet import cli, wait_200, wrk

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
{registry}
"""


def setup(procs: Procs, d: Path, etcd_url: str) -> tuple[Slum, Slum, Slum, Slum]:
    ndir, edir, sdir, e2dir = d / "node", d / "router-etcd", d / "router-sqlite", d / "router-etcd-2"
    for x in (ndir, edir, sdir, e2dir):
        x.mkdir()
    token = cli(["token-gen", "--database", str(ndir / "slum.db")]).splitlines()[-1].strip()
    node = start_slum(procs, ndir, NODE_CONF.format(dir=ndir, nginx=setup_nginx(ndir)))
    on_etcd = start_slum(procs, edir, ROUTER_CONF.format(dir=edir, registry=f'registry = "{etcd_url}"'))
    on_sqlite = start_slum(procs, sdir, ROUTER_CONF.format(dir=sdir, registry=""))
    # A second router on the same etcd registry, for the failover: it knows everything the
    # first one is told, without being told itself.
    second = start_slum(procs, e2dir, ROUTER_CONF.format(dir=e2dir, registry=f'registry = "{etcd_url}"'))
    for router in (on_etcd, on_sqlite):
        db = str(router.dir / "slum.db")
        cli(["server-add", f"127.0.0.1:{node.port}", "-n", "node", "--token", token, "--database", db])
        # A server nobody answers for: tenants placed there are answered 502 by the router
        # itself, at once, which is all the propagation measurement needs to see.
        cli(["server-add", f"127.0.0.1:{free_port()}", "-n", "ghost", "--database", db])
    # t1 is registered on the node once, through the etcd router; the SQLite router's own
    # registry gets the same placement written directly (the node knows t1 already).
    cli(["tenant-add", "t1", "-s", "node", "--service", "svc", "--database", str(on_etcd.dir / "slum.db")])
    _place_in_sqlite(on_sqlite.dir / "slum.db", "t1", "node", "svc")
    wait_200(on_etcd.port, HOST, 30)
    wait_200(on_sqlite.port, HOST, 30)
    wait_200(second.port, HOST, 30)
    return node, on_etcd, on_sqlite, second


def _place_in_sqlite(db: Path, tenant: str, server: str, service: str) -> None:
    import trio

    from slum.fleet import placement
    from slum.store.db import Store
    from slum.store.registry import SqliteRegistry

    async def main() -> None:
        store = Store(db)
        try:
            await SqliteRegistry(store).add_tenant(tenant, placement.named(server), service)
        finally:
            store.close()

    trio.run(main)


async def _routed(port: int, host: str) -> bool:
    """One request; True once the router no longer answers `404 unknown host`."""
    import trio

    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n" not in head:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            head += chunk
    return not head.startswith(b"HTTP/1.1 404")


async def _propagation(registry: Any, port: int, n: int, tag: str, jitter_s: float) -> list[float]:
    import trio

    def ghost(servers: Any) -> Any:  # offline soon after it is added: placed on regardless
        return next(s for s in servers if s.name == "ghost")

    out = []
    for i in range(n):
        # Not in step with the router: a write right after it noticed the last one would
        # always wait the SQLite router's whole poll interval.
        await trio.sleep(random.uniform(0, jitter_s))
        host = f"{tag}{i}.localhost"
        await registry.add_tenant(f"{tag}{i}", ghost)
        committed = time.monotonic()
        with trio.fail_after(10):
            while True:
                if await _routed(port, host):
                    break
                await trio.sleep(0.001)
        out.append(time.monotonic() - committed)
    return out


def propagation(
    etcd_urls: list[str], on_etcd: Slum, on_sqlite: Slum, n_etcd: int, n_sqlite: int
) -> dict[str, list[float]]:
    import trio

    from slum.fleet.etcd import Etcd
    from slum.fleet.etcd_registry import EtcdRegistry
    from slum.store.db import Store
    from slum.store.registry import SqliteRegistry

    async def main() -> dict[str, list[float]]:
        reg = EtcdRegistry(Etcd(etcd_urls))
        try:
            etcd = await _propagation(reg, on_etcd.port, n_etcd, "pe", 0.05)
        finally:
            await reg.aclose()
        store = Store(on_sqlite.dir / "slum.db")
        try:
            sqlite = await _propagation(SqliteRegistry(store), on_sqlite.port, n_sqlite, "ps", 1.0)
        finally:
            store.close()
        return {"etcd": etcd, "sqlite": sqlite}

    return trio.run(main)


def hop(args: argparse.Namespace, targets: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    h = [f"Host: {HOST}"]
    for port in targets.values():
        wrk(f"http://127.0.0.1:{port}/index.html", h, args.threads, args.connections, args.warmup)
    load: dict[str, list[dict[str, Any]]] = {n: [] for n in targets}
    for i in range(args.runs):
        for name, port in targets.items():
            r = wrk(f"http://127.0.0.1:{port}/index.html", h, args.threads, args.connections, args.duration)
            load[name].append(r)
            print(
                f"  run {i + 1}: {name:28} {r['rps']:>8.0f} req/s  p50 {r['p50']:.2f} ms  "
                f"p99 {r['p99']:.2f} ms  non-2xx {r['non2xx']}",
                flush=True,
            )
    return load


CADDYFILE = """\
{{
\tadmin off
\tauto_https off
}}
http://:{port} {{
\treverse_proxy 127.0.0.1:{a} 127.0.0.1:{b} {{
\t\tlb_policy round_robin
\t\tlb_try_duration 5s
\t\tfail_duration 30s
\t}}
}}
"""


def failover(procs: Procs, d: Path, first: Slum, second: Slum, cluster: Any, duration: int) -> dict[str, Any]:
    """wrk through Caddy with both etcd routers as upstreams; one third in, router 1 is
    SIGKILLed; two thirds in, one etcd member is. What the clients saw."""
    import shutil
    import signal

    caddy = shutil.which("caddy")
    if caddy is None:
        return {"skipped": "caddy missing"}
    port = free_port()
    conf = d / "Caddyfile"
    conf.write_text(CADDYFILE.format(port=port, a=first.port, b=second.port))
    log = (d / "caddy.log").open("wb")
    procs.start(
        [caddy, "run", "--config", str(conf), "--adapter", "caddyfile"], stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    wait_200(port, HOST, 15)
    args = [
        "wrk",
        "-t2",
        "-c16",
        f"-d{duration}s",
        "--latency",
        "--timeout",
        "5s",
        "-H",
        f"Host: {HOST}",
        f"http://127.0.0.1:{port}/index.html",
    ]
    load = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(duration / 3)
    first.proc.send_signal(signal.SIGKILL)
    time.sleep(duration / 3)
    cluster.members[0].kill()
    out, _ = load.communicate(timeout=duration + 30)
    from proxy import parse_wrk

    result = parse_wrk(out)
    result["after"] = wait_ok(port, HOST)
    return result


def wait_ok(port: int, host: str) -> bool:
    try:
        wait_200(port, host, 5)
        return True
    except TimeoutError:
        return False


def run(argv: list[str]) -> list[Row]:
    ap = argparse.ArgumentParser(
        prog="bench/registry.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--sqlite-changes", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--failover", type=float, default=9.0, help="seconds of load through Caddy")
    ap.add_argument("--quick", action="store_true", help="20 changes, 1 run of 3 s")
    args = ap.parse_args(argv)
    if args.quick:
        args.changes, args.sqlite_changes, args.runs, args.duration = 20, 10, 1, 3.0
    args.runs = max(1, min(args.runs, 20))
    args.duration = max(1, min(round(args.duration), 120))
    args.warmup = max(1, round(args.warmup))

    from tests.fleet.etcd_cluster import ETCD, EtcdCluster

    if ETCD is None:
        raise RuntimeError("etcd missing: apt-get install -y etcd-server")
    rows: list[Row] = [load_row("registry", "at start")]
    with tempdir("slum-bench-registry-") as d, Procs() as procs:
        (d / "etcd").mkdir()
        cluster = EtcdCluster(d / "etcd")
        try:
            cluster.start()
            node, on_etcd, on_sqlite, second = setup(procs, d, cluster.registry_url)
            print(
                f"registry: propagation over {args.changes} changes (etcd), {args.sqlite_changes} (SQLite)",
                flush=True,
            )
            prop = propagation(cluster.urls, on_etcd, on_sqlite, args.changes, args.sqlite_changes)
            print(
                f"registry: wrk -t{args.threads} -c{args.connections} -d{args.duration:g}s "
                f"x{args.runs}, interleaved",
                flush=True,
            )
            load = hop(
                args,
                {
                    "router (etcd) -> node -> nginx": on_etcd.port,
                    "router (SQLite) -> node -> nginx": on_sqlite.port,
                    "node -> nginx": node.port,
                },
            )
            print(f"registry: failover through Caddy, {args.failover:g} s", flush=True)
            fail = failover(procs, d, on_etcd, second, cluster, round(args.failover))
            rows.append(load_row("registry", "at end"))
        finally:
            cluster.stop()
    save_json("registry", {"args": vars(args), "propagation_s": prop, "hop": load, "failover": fail})

    for name, xs in prop.items():
        rows.append(
            Row(
                "registry",
                f"route propagation, {name} ({len(xs)} changes): p50 / p99",
                f"{median(xs) * 1000:.1f} / {pct(xs, 99) * 1000:.1f} ms",
                f"max {max(xs) * 1000:.1f} ms"
                + ("; target < 1 s" if name == "etcd" else "; polls every 1 s"),
            )
        )
    med = {n: {m: median([r[m] for r in rs]) for m in ("rps", "p50", "p99")} for n, rs in load.items()}
    for name, m in med.items():
        bad = sum(r["non2xx"] for r in load[name])
        rows.append(
            Row(
                "registry",
                f"{name}: req/s, p50 / p99 (-c{args.connections})",
                f"{m['rps']:.0f}, {m['p50']:.2f} / {m['p99']:.2f} ms",
                f"{bad} non-2xx!" if bad else "",
            )
        )
    e, s = med["router (etcd) -> node -> nginx"], med["router (SQLite) -> node -> nginx"]
    rows.append(
        Row(
            "registry",
            "router hop on etcd / on SQLite: req/s",
            f"{e['rps'] / s['rps']:.2f}x",
            f"p99 {e['p99'] - s['p99']:+.2f} ms",
        )
    )
    if "skipped" in fail:
        rows.append(Row("registry", "failover through Caddy", "skipped", fail["skipped"]))
    else:
        errors = fail["non2xx"] + (0 if not fail["socket_errors"] else 1)
        rows.append(
            Row(
                "registry",
                "failover: router 1 then an etcd member killed under load",
                f"{fail['requests']} requests, {fail['non2xx']} non-2xx",
                f"socket errors: {fail['socket_errors'] or 'none'}; p99 "
                f"{fail['p99']:.1f} ms; served after: {fail['after']}"
                + ("" if errors else "; no client saw it"),
            )
        )
    return rows


if __name__ == "__main__":
    main_wrapper(run, "registry")
