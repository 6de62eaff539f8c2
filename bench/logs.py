"""Logs (issue 5): ingestion, the edge during a flood, search, disk, live streaming.

(a) ingestion in-process: insert_batch (what the ingest task runs) in batches of 2,000 into a fresh
    store with its FTS index, realistic lines (access log, job, warning and error lines);
(c) search through the HTTP API over the control socket: the same database, grown to 1,000,000
    lines, where one word ("timeout") is in 1% of them; a word, a prefix, a word + instance
    filter, each 20 times; beside it the same query in-process (SQLite alone);
(d) disk bytes per stored line of that database (file + wal after a checkpoint);
(e) SSE: 100 subscribers on /_/api/logs/stream (control socket), a child printing a line with
    its time.time() every 50 ms: from that print to each subscriber's receipt;
(b) end to end: a child printing lines as fast as it can under a running slum (back-pressure:
    it runs as fast as slum stores), lines/s stored from /_/api/status logs_stored; and wrk's
    p99 through the edge to an nginx instance at rest and during the flood.

    .venv/bin/python bench/logs.py [--lines 1000000] [--ingest-lines 500000] [--queries 20]
                                   [--subscribers 100] [--sse-seconds 10] [--wrk-seconds 8]
                                   [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import h11
import trio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (
    Procs,
    Row,
    Slum,
    UnixHTTP,
    api,
    load_row,
    main_wrapper,
    median,
    met,
    ms,
    pct,
    real_python3,
    save_json,
    setup_nginx,
    start_slum,
    status,
    tempdir,
)

WORD = "timeout"
BATCH = 2000
INSTANCES = 20
TARGET_INGEST = 100_000
TARGET_SEARCH_MS = 10.0
TARGET_SSE_MS = 100.0
TARGET_P99_RATIO = 2.0
NGINX_HOST = "x.svc.localhost"

CONFIG = """\
[settings]
data_dir = "{dir}/data"
health_check_interval = 10

[service.flood]
command = ["{python}", "{dir}/flood.py"]
restart = "never"
startup_timeout = 10

[service.flood.env]
LINES = "{flood_lines}"

[service.tick]
command = ["{python}", "{dir}/tick.py"]
restart = "never"
startup_timeout = 10

{nginx}
{instances}
"""

# Listens on $PORT (TCP readiness), then prints LINES realistic lines as fast as it can (the pipe
# to slum blocks when slum is behind: back-pressure, no loss), then "flood done" and idles.
FLOOD_PY = """\
import os, socket, sys, time
srv = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
out = sys.stdout.buffer
total = int(os.environ.get("LINES", "1000000"))
i = 0
while i < total:
    n = min(1000, total - i)
    out.write(b"".join(b'127.0.0.%d - - "GET /api/items/%d HTTP/1.1" 200 %d %dms ua=Mozilla/5.0\\n'
                       % (k % 250, k * 7 % 100000, k % 5000, k % 97) for k in range(i, i + n)))
    i += n
out.write(b"flood done %d\\n" % i)
out.flush()
time.sleep(3600)
"""

# Prints "tick N <time.time()>" every 50 ms, flushed at once.
TICK_PY = """\
import os, socket, sys, time
srv = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
i = 0
while i < 100000:
    sys.stdout.write("tick %d %.6f\\n" % (i, time.time()))
    sys.stdout.flush()
    i += 1
    time.sleep(0.05)
time.sleep(3600)
"""


# --- (a) ingestion, and the database for (c) -----------------------------------------------
def realistic(start: int, n: int, total: int, t0: float) -> list[Any]:
    """Lines start..start+n of `total`, timestamps spread over the hour before t0. 1% carry WORD
    (every 100th, an error); the rest are access-log, job and cache lines of 20 instances."""
    from slum.events import LogLine

    out = []
    for i in range(start, start + n):
        r = i % 100
        inst = (i + i // 100) % INSTANCES  # every instance has some of each kind
        if r == 0:
            level = "error"
            msg = f"upstream {WORD} after 3000 ms calling billing-api for order {i} (attempt {i % 3 + 1})"
        elif r < 70:
            level = "info"
            msg = (
                f'127.0.0.{i % 250} - - "GET /api/items/{i * 7 % 100000} HTTP/1.1" 200 '
                f"{i % 5000} {i % 97}ms ua=Mozilla/5.0"
            )
        elif r < 95:
            level = "info"
            msg = f"worker {i % 8} processed job {i:08x} in {i % 300} ms user=user{i % 1000} queue=default"
        else:
            level = "warn"
            msg = f"cache miss for key session:{i * 2654435761 % 2**32:08x}, loading from db"
        out.append(
            LogLine(t0 - 3600 + 3600 * i / total, f"notes:t{inst:02d}", f"t{inst:02d}", "stdout", level, msg)
        )
    return out


def build_db(path: Path, total: int, measured: int) -> dict[str, Any]:
    """Fill a fresh store with `total` lines through insert_batch, 2,000 per transaction (as
    the ingest task does); time the insert calls only (not making the lines)."""
    from slum.store.db import connect
    from slum.store.ingest import insert_batch

    conn = connect(path)
    t0 = time.time()
    spent = 0.0
    spent_measured = 0.0
    done = 0
    try:
        while done < total:
            n = min(BATCH, total - done)
            lines = realistic(done, n, total, t0)
            s = time.perf_counter()
            with conn:
                insert_batch(conn, lines)
            dt = time.perf_counter() - s
            spent += dt
            done += n
            if done <= measured:
                spent_measured += dt
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    size = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    return {
        "lines": total,
        "measured": min(measured, total),
        "rate_measured": min(measured, total) / spent_measured if spent_measured else 0.0,
        "rate_all": total / spent if spent else 0.0,
        "bytes": size,
    }


# --- (c) search ------------------------------------------------------------------------------
def timed_get(sock: Path, path: str) -> tuple[int, float, int]:
    """(status, seconds to the full response, rows)."""
    t0 = time.perf_counter()
    conn = UnixHTTP(str(sock), 30)
    try:
        conn.request("GET", path, headers={"Accept": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        dt = time.perf_counter() - t0
    finally:
        conn.close()
    rows = len(json.loads(raw)) if r.status == 200 else 0
    return r.status, dt, rows


def in_process(db: Path, queries: dict[str, dict[str, Any]], count: int) -> dict[str, list[float]]:
    """The same queries as logs.query on a connection of our own: what SQLite alone costs."""
    from slum.store.db import connect
    from slum.store.logs import LogQuery, query

    conn = connect(db, migrate_schema=False)
    try:
        out: dict[str, list[float]] = {}
        for name, q in queries.items():
            lq = LogQuery(limit=100, **q)
            query(conn, lq)  # warm
            times = []
            for _ in range(count):
                t0 = time.perf_counter()
                query(conn, lq)
                times.append(time.perf_counter() - t0)
            out[name] = times
        return out
    finally:
        conn.close()


# --- (e) SSE ---------------------------------------------------------------------------------
async def sse_latency(sock: Path, n: int, seconds: float, slum: Slum) -> dict[str, Any]:
    lat: list[float] = []
    per_sub: list[int] = [0] * n
    connected = 0
    all_connected = trio.Event()
    errors: list[str] = []

    async def subscriber(k: int) -> None:
        nonlocal connected
        stream = await trio.open_unix_socket(str(sock))
        conn = h11.Connection(h11.CLIENT)
        target = "/_/api/logs/stream?instance_id=tick:one"
        await stream.send_all(
            conn.send(
                h11.Request(
                    method="GET",
                    target=target,
                    headers=[("Host", "localhost"), ("Accept", "text/event-stream")],
                )
            )
        )
        await stream.send_all(conn.send(h11.EndOfMessage()))
        buf = b""
        counted = False
        try:
            while True:
                ev = conn.next_event()
                if ev is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    now = time.time()
                    if not data:
                        return
                    conn.receive_data(data)
                    continue
                if isinstance(ev, h11.Response):
                    if ev.status_code != 200:
                        errors.append(f"subscriber {k}: HTTP {ev.status_code}")
                        return
                    continue
                if isinstance(ev, h11.Data):
                    buf += bytes(ev.data)
                    while b"\n\n" in buf:
                        block, buf = buf.split(b"\n\n", 1)
                        if block.startswith(b": connected") and not counted:
                            counted = True
                            connected += 1
                            if connected == n:
                                all_connected.set()
                        for line in block.split(b"\n"):
                            if line.startswith(b"data: "):
                                msg = json.loads(line[6:]).get("message", "")
                                parts = msg.split()
                                if len(parts) == 3 and parts[0] == "tick":
                                    lat.append(now - float(parts[2]))
                                    per_sub[k] += 1
                    continue
                if isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return
        finally:
            await stream.aclose()

    with trio.move_on_after(seconds + 60):
        async with trio.open_nursery() as nursery:
            for k in range(n):
                nursery.start_soon(subscriber, k)
            with trio.fail_after(30):
                await all_connected.wait()
            code, data = await trio.to_thread.run_sync(
                lambda: api(slum.sock, "POST", "/_/api/instances", {"service": "tick", "id": "one"})
            )
            if code != 201:
                raise RuntimeError(f"spawn tick:one: {code} {data}")
            await trio.sleep(seconds)
            await trio.to_thread.run_sync(lambda: api(slum.sock, "POST", "/_/api/instances/tick:one/stop"))
            nursery.cancel_scope.cancel()
    return {"latencies": lat, "per_subscriber": per_sub, "errors": errors[:5]}


# --- (b) flood + edge p99 --------------------------------------------------------------------
def flood_phase(slum: Slum, wrk_s: float, window_s: float, lines: int, rounds: int = 3) -> dict[str, Any]:
    """`rounds` pairs, each wrk at rest then wrk during a flood (the flooder spawned for it and
    stopped after it), so each pair's ratio compares neighbouring moments of a machine whose
    load drifts; the first round also measures the flood's rate alone for window_s."""
    from proxy import check_target, wrk

    url = f"http://127.0.0.1:{slum.port}/index.html"
    check_target("slum -> nginx", slum.port, NGINX_HOST)
    res: dict[str, Any] = {
        "rest": [],
        "during": [],
        "during_rate": [],
        "still_flooding": [],
        "rounds": rounds,
    }
    wrk(url, NGINX_HOST, 1, 8, 1)  # warm-up
    for i in range(rounds):
        res["rest"].append(wrk(url, NGINX_HOST, 1, 8, wrk_s))
        base = status(slum)["logs_stored"]
        fid = f"f{i + 1}"
        code, data = api(slum.sock, "POST", "/_/api/instances", {"service": "flood", "id": fid})
        if code != 201:
            raise RuntimeError(f"spawn flood:{fid}: {code} {data}")
        try:
            deadline = time.monotonic() + 20
            while status(slum)["logs_stored"] < base + 10_000:
                if time.monotonic() > deadline:
                    raise TimeoutError("the flood's lines do not reach the store")
                time.sleep(0.05)
            if i == 0:  # the flood alone
                s0, t0 = status(slum)["logs_stored"], time.monotonic()
                time.sleep(window_s)
                s1, t1 = status(slum)["logs_stored"], time.monotonic()
                res["alone_rate"] = (s1 - s0) / (t1 - t0)
            s1, t1 = status(slum)["logs_stored"], time.monotonic()
            res["during"].append(wrk(url, NGINX_HOST, 1, 8, wrk_s))
            s2, t2 = status(slum)["logs_stored"], time.monotonic()
            st = status(slum)
            res["during_rate"].append((s2 - s1) / (t2 - t1))
            res["still_flooding"].append(s2 - base < lines)  # the flood outlasted the wrk run
            res["dropped_logs"] = st.get("dropped_logs")
            res["log_queue"] = st.get("log_queue")
        finally:
            api(slum.sock, "POST", f"/_/api/instances/flood:{fid}/stop")
            deadline = time.monotonic() + 10  # the next rest run starts once ingestion is idle
            while status(slum).get("log_queue") and time.monotonic() < deadline:
                time.sleep(0.1)
        print(
            f"  round {i + 1}: edge p99 at rest {res['rest'][-1]['p99']:.2f} ms, during the "
            f"flood {res['during'][-1]['p99']:.2f} ms "
            f"({res['during'][-1]['p99'] / res['rest'][-1]['p99']:.2f}x)",
            flush=True,
        )
    return res


def flood_server(procs: Procs, d: Path, fdir: Path, nginx: str, python: str, flood_lines: int) -> Slum:
    """A slum in fdir with the flood service and an nginx instance (svc:x), healthy."""
    slum = start_slum(
        procs,
        fdir,
        CONFIG.format(
            dir=d, python=python, nginx=nginx, instances='[instances]\nsvc = ["x"]', flood_lines=flood_lines
        ),
    )
    slum.wait_healthy(["svc:x"])
    return slum


def flood_rows(args: argparse.Namespace, python: str, flood_lines: int) -> list[Row]:
    with tempdir("slum-bench-flood-") as d, Procs() as procs:
        (d / "flood.py").write_text(FLOOD_PY)
        (d / "tick.py").write_text(TICK_PY)
        fdir = d / "flood"
        fdir.mkdir()
        slum = flood_server(procs, d, fdir, setup_nginx(fdir), python, flood_lines)
        flood = flood_phase(slum, args.wrk_seconds, args.flood_window, flood_lines, args.flood_rounds)
    save_json("logs-flood", {"args": vars(args), "flood": flood})
    return _flood_table(flood)


def _flood_table(flood: dict[str, Any]) -> list[Row]:
    rest, during = flood["rest"], flood["during"]
    pairs = [d["p99"] / r["p99"] for r, d in zip(rest, during, strict=True) if r["p99"]]
    ratio = median(pairs)
    p99 = {k: median([x["p99"] for x in flood[k]]) for k in ("rest", "during")}
    rps = {k: median([x["rps"] for x in flood[k]]) for k in ("rest", "during")}
    p50 = {k: median([x["p50"] for x in flood[k]]) for k in ("rest", "during")}
    return [
        Row(
            "logs",
            "(b) flood under slum: lines/s stored",
            f"{flood['alone_rate']:,.0f} lines/s",
            "held by log_rate_kb (default 256 KiB/s, ~70-byte lines); "
            f"during wrk: {median(flood['during_rate']):,.0f}/s; dropped "
            f"{flood['dropped_logs']}; flood outlasted wrk: {all(flood['still_flooding'])}",
        ),
        Row(
            "logs",
            f"(b) edge p99 during a flood / at rest (median of {len(pairs)} pairs)",
            f"{ratio:.2f}x",
            f"<= {TARGET_P99_RATIO:g}x: "
            + (met(True) if ratio <= TARGET_P99_RATIO else f"NOT met, gap {ratio - TARGET_P99_RATIO:.2f}x")
            + "; pairs "
            + ", ".join(f"{x:.2f}" for x in pairs),
            issue18="edge p99 while one child floods its logs",
        ),
        Row(
            "logs",
            "(b) edge p99 at rest / during flood (medians, wrk -t1 -c8)",
            f"{p99['rest']:.2f} / {p99['during']:.2f} ms",
            f"ratio of the medians {p99['during'] / p99['rest']:.2f}x",
        ),
        Row(
            "logs",
            "(b) edge req/s at rest / during flood (medians)",
            f"{rps['rest']:.0f} / {rps['during']:.0f}",
            f"p50 {p50['rest']:.2f} / {p50['during']:.2f} ms; non-2xx "
            f"{sum(x['non2xx'] for x in rest + during)}",
        ),
    ]


# --- run -------------------------------------------------------------------------------------
def run(argv: list[str]) -> list[Row]:
    ap = argparse.ArgumentParser(
        prog="bench/logs.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=1_000_000, help="lines in the search database")
    ap.add_argument("--ingest-lines", type=int, default=500_000, help="lines timed for (a)")
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--subscribers", type=int, default=100)
    ap.add_argument("--sse-seconds", type=float, default=10.0)
    ap.add_argument("--wrk-seconds", type=float, default=8.0)
    ap.add_argument("--flood-window", type=float, default=5.0, help="seconds of flood alone")
    ap.add_argument(
        "--flood-rounds",
        type=int,
        default=5,
        help="pairs of wrk runs, at rest then during a flood (median ratio)",
    )
    ap.add_argument("--quick", action="store_true", help="smaller database, shorter runs")
    ap.add_argument(
        "--flood-only",
        action="store_true",
        help="only (b): the edge's p99 at rest and during a flood, in one run",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.lines, args.ingest_lines = min(args.lines, 200_000), min(args.ingest_lines, 100_000)
        args.sse_seconds, args.wrk_seconds, args.flood_window = 4.0, 3.0, 2.0
        args.flood_rounds = min(args.flood_rounds, 3)
    args.wrk_seconds = max(1, min(round(args.wrk_seconds), 120))  # wrk takes whole seconds only
    total = max(10_000, min(args.lines, 5_000_000))
    measured = max(2_000, min(args.ingest_lines, total))
    nq = max(1, min(args.queries, 200))
    subs = max(1, min(args.subscribers, 1000))
    python = real_python3()
    rows: list[Row] = [load_row("logs", "at start")]
    # Enough lines that the flood outlasts the alone window and the wrk run even at 200k/s.
    flood_lines = int(200_000 * (args.flood_window + args.wrk_seconds + 10))

    if args.flood_only:
        return [*flood_rows(args, python, flood_lines), load_row("logs", "at end")]

    with tempdir("slum-bench-logs-") as d, Procs() as procs:
        (d / "flood.py").write_text(FLOOD_PY)
        (d / "tick.py").write_text(TICK_PY)
        # (a) + the database of (c), (d)
        sdir = d / "search"
        sdir.mkdir()
        print(f"logs: inserting {total:,} lines with insert_batch ({BATCH} per transaction) ...", flush=True)
        built = build_db(sdir / "slum.db", total, measured)
        print(
            f"  {built['rate_measured']:,.0f} lines/s over the first {measured:,}, "
            f"{built['rate_all']:,.0f} over all {total:,}",
            flush=True,
        )

        fdir = d / "flood"
        fdir.mkdir()
        nginx = setup_nginx(fdir)
        slum = start_slum(
            procs, sdir, CONFIG.format(dir=d, python=python, nginx="", instances="", flood_lines=flood_lines)
        )

        # (c) search over HTTP, and the same queries in-process
        queries = {
            f"word '{WORD}' (1%)": {"search": WORD},
            f"prefix '{WORD[:5]}*'": {"search": WORD[:5] + "*"},
            f"'{WORD}' + instance_id": {"search": WORD, "instance_id": "notes:t07"},
            "instance_id only (no search)": {"instance_id": "notes:t07"},
        }
        http_times: dict[str, list[float]] = {}
        http_rows: dict[str, int] = {}
        for name, q in queries.items():
            path = "/_/api/logs?" + urllib.parse.urlencode({**q, "limit": 100})
            code, _, nrows = timed_get(slum.sock, path)  # warm (page cache, reader connections)
            if code != 200:
                raise RuntimeError(f"GET {path}: {code}")
            times = []
            for _ in range(nq):
                code, dt, nrows = timed_get(slum.sock, path)
                times.append(dt)
            http_times[name], http_rows[name] = times, nrows
            print(f"  search {name}: median {median(times) * 1000:.2f} ms, {nrows} rows", flush=True)
        local = in_process(sdir / "slum.db", queries, nq)

        # (e) SSE on the same server
        print(f"logs: SSE, {subs} subscribers for {args.sse_seconds:g} s ...", flush=True)
        sse = trio.run(sse_latency, slum.sock, subs, args.sse_seconds, slum)
        procs.stop(slum.proc)

        # (b) flood on a fresh server with an nginx instance
        print("logs: flood + wrk ...", flush=True)
        slum2 = flood_server(procs, d, fdir, nginx, python, flood_lines)
        flood = flood_phase(slum2, args.wrk_seconds, args.flood_window, flood_lines, args.flood_rounds)
        rows.append(load_row("logs", "at end"))

    save_json(
        "logs",
        {
            "args": vars(args),
            "build": built,
            "search_http": http_times,
            "search_rows": http_rows,
            "search_in_process": local,
            "sse": {k: v for k, v in sse.items()},
            "flood": flood,
        },
    )

    lat = sse["latencies"]
    per_line = built["bytes"] / built["lines"]
    rows += [
        Row(
            "logs",
            f"(a) insert_batch x{BATCH}, FTS, in-process ({measured:,} lines)",
            f"{built['rate_measured']:,.0f} lines/s",
            f">= {TARGET_INGEST:,}: {met(built['rate_measured'] >= TARGET_INGEST)}; "
            f"{built['rate_all']:,.0f}/s over all {total:,}",
        ),
    ]
    rows += _flood_table(flood)
    for name, times in http_times.items():
        target = ""
        if name.startswith("word"):
            target = f"median < {TARGET_SEARCH_MS:g} ms: {met(median(times) * 1000 < TARGET_SEARCH_MS)}; "
        rows.append(
            Row(
                "logs",
                f"(c) HTTP search {name}, {total:,} lines (median/p90 of {nq})",
                f"{ms(median(times))} / {ms(pct(times, 90))}",
                f"{target}{http_rows[name]} rows; SQLite alone {median(local[name]) * 1000:.2f} ms",
            )
        )
    rows += [
        Row(
            "logs",
            "(d) disk per stored line (db + wal after checkpoint)",
            f"{per_line:.0f} B",
            f"{built['bytes'] / 2**20:.0f} MiB for {total:,} lines; issue 5 measured ~233 B",
        ),
        Row(
            "logs",
            f"(e) SSE print->receipt, {subs} subscribers (median / p99)",
            f"{ms(median(lat))} / {ms(pct(lat, 99))}",
            f"p99 < {TARGET_SSE_MS:g} ms: {met(pct(lat, 99) * 1000 < TARGET_SSE_MS)}; "
            f"{len(lat)} events, max {ms(max(lat, default=float('nan')))}, "
            f"min/sub {min(sse['per_subscriber'], default=0)}"
            + (f"; errors {sse['errors']}" if sse["errors"] else ""),
        ),
    ]
    return rows


if __name__ == "__main__":
    main_wrapper(run, "logs")
