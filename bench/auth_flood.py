"""slum's memory under a token-guessing flood: 40 clients at once sending random Bearer tokens
(and forged X-Slum-Router values), each phase for a fixed number of requests. Argon2 costs tens
of MB per verification: unbounded, 40 at once took slum from ~53 MB to 1.9 GB. Target: the
peak RSS of slum's own process stays under 150 MB.

Phases (the database holds one current token and one old-format token, whose Argon2 hash uses
the 64 MiB default, the worst case):
  old-format   random `slum_` + 43 characters: checked against the old-format hash
  random-id    random new-format tokens: refused by checksum or unknown id, no Argon2
  known-id     the real token's id with a wrong secret and a valid checksum: one Argon2 each
  router       forged X-Slum-Router values on a tenant route
Each client comes from its own address (X-Forwarded-For via trusted_proxies = 127.0.0.1), so
the per-client bucket does not hide the Argon2 bound; the rate limit is a second defence.

    .venv/bin/python bench/auth_flood.py [--clients 40] [--requests 400]
"""

from __future__ import annotations

import argparse
import http.client
import os
import secrets
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import SLUM, Procs, Row, main_wrapper, save_json, start_slum, tempdir

TARGET_MB = 150.0
CONFIG = """\
[settings]
data_dir = "{dir}/data"
trusted_proxies = ["127.0.0.1"]
"""
ALNUM = string.ascii_letters + string.digits


def old_format() -> str:
    return "slum_" + "".join(secrets.choice(ALNUM) for _ in range(43))


def random_id() -> str:
    from slum.store.tokens import checksum

    body = "slum_" + secrets.token_hex(4) + "_" + "".join(secrets.choice(ALNUM) for _ in range(40))
    return body + (checksum(body) if secrets.randbelow(2) else "AAAAAA")


def known_id(public_id: str) -> Any:
    from slum.store.tokens import checksum

    def make() -> str:
        body = f"slum_{public_id}_" + "".join(secrets.choice(ALNUM) for _ in range(40))
        return body + checksum(body)

    return make


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.02)


def flood(port: int, clients: int, requests: int, headers_for: Any) -> tuple[Counter[int], float]:
    counts: Counter[int] = Counter()
    lock = threading.Lock()
    per_client = max(1, requests // clients)

    def client(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            for i in range(per_client):
                headers = headers_for(n, i)
                conn.request("GET", headers.pop("path", "/_/api/instances"), headers=headers)
                r = conn.getresponse()
                r.read()
                with lock:
                    counts[r.status] += 1
                if r.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        finally:
            conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return counts, time.perf_counter() - started


def run(argv: list[str]) -> list[Row]:
    ap = argparse.ArgumentParser(
        prog="bench/auth_flood.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, default=40)
    ap.add_argument("--requests", type=int, default=400, help="per phase")
    args = ap.parse_args(argv)
    clients = max(1, min(args.clients, 200))
    requests = max(clients, min(args.requests, 5000))

    rows: list[Row] = []
    results: dict[str, object] = {}
    with tempdir("slum-bench-auth-") as d, Procs() as procs:
        db = d / "slum.db"
        token = subprocess.run(
            [SLUM, "token-gen", "--database", str(db)], capture_output=True, text=True, check=True
        ).stdout.strip()
        public_id = token.split("_")[1]
        from argon2 import PasswordHasher

        from slum.store import connect

        conn = connect(db)
        with conn:
            conn.execute(
                "INSERT INTO tokens (hash, public_id, legacy) VALUES (?, 'oldtoken', 1)",
                (PasswordHasher().hash(old_format()),),
            )
            conn.execute(
                "INSERT INTO servers (id, name, address, created_at, token) VALUES "
                "('far', 'far', 'http://127.0.0.1:9', datetime('now'), 'x')"
            )
            conn.execute(
                "INSERT INTO tenants (id, server_id, status, created_at) VALUES "
                "('acme', 'local', 'active', datetime('now'))"
            )
        conn.close()
        slum = start_slum(procs, d, CONFIG.format(dir=d))
        time.sleep(2)
        base = psutil.Process(slum.pid).memory_info().rss / 2**20
        rows.append(Row("auth_flood", "slum RSS before", f"{base:.1f} MB"))
        known = known_id(public_id)

        def addr(n: int, i: int) -> str:
            return f"10.{n}.{i // 250}.{i % 250 + 1}"

        phases = {
            "old-format": lambda n, i: {
                "Authorization": f"Bearer {old_format()}",
                "X-Forwarded-For": addr(n, i),
            },
            "random-id": lambda n, i: {
                "Authorization": f"Bearer {random_id()}",
                "X-Forwarded-For": addr(n, i),
            },
            "known-id": lambda n, i: {"Authorization": f"Bearer {known()}", "X-Forwarded-For": addr(n, i)},
            "router": lambda n, i: {
                "Host": "acme.localhost",
                "X-Tenant-ID": "acme",
                "X-Slum-Router": old_format(),
                "path": "/",
            },
        }
        for name, headers_for in phases.items():
            sampler = Sampler(slum.pid)
            sampler.start()
            counts, seconds = flood(slum.port, clients, requests, headers_for)
            sampler.stop.set()
            sampler.join()
            peak = sampler.peak / 2**20
            results[name] = {"peak_rss_mb": peak, "statuses": dict(counts), "seconds": seconds}
            answered = ", ".join(f"{n} x {s}" for s, n in sorted(counts.items()))
            ok = "met" if peak < TARGET_MB else "NOT met"
            rows.append(
                Row(
                    "auth_flood",
                    f"{name}: peak slum RSS, {clients} clients",
                    f"{peak:.1f} MB",
                    f"< {TARGET_MB:g} MB: {ok}; {answered} in {seconds:.1f} s",
                )
            )
        after = psutil.Process(slum.pid).memory_info().rss / 2**20
        rows.append(Row("auth_flood", "slum RSS after", f"{after:.1f} MB"))
        # And the real token still answers at once.
        started = time.perf_counter()
        c = http.client.HTTPConnection("127.0.0.1", slum.port, timeout=30)
        c.request("GET", "/_/api/instances", headers={"Authorization": f"Bearer {token}"})
        status = c.getresponse().status
        c.close()
        rows.append(
            Row(
                "auth_flood",
                "valid token after the flood",
                f"{(time.perf_counter() - started) * 1000:.0f} ms",
                f"HTTP {status}",
            )
        )
    save_json("auth_flood", {"base_rss_mb": base, "phases": results})
    return rows


if __name__ == "__main__":
    main_wrapper(run, "auth flood")
