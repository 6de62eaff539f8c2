"""The binary's numbers: size, time from exec to the first served request, idle RSS.

    python3 build/measure.py [path/to/slum] [--runs 10] [--idle 10]

Targets (issue 3): under 40 MB, under 1 s, under 60 MB. Each run serves the example
(examples/notes) on a free port in a fresh temp dir; "first served request" is the first
200 to GET /api/health through the edge. RSS is the bootloader plus the Python program (the
instances' own processes are not counted), measured after --idle seconds with one request
through the proxy and one to /_/ done. Standard library only: runs on the system's python3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "notes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str, host: str = "localhost") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        while data := c.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Serve:
    def __init__(self, binary: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="slum-measure-"))
        for name in ("app.py", "tenement.toml"):
            shutil.copy(EXAMPLE / name, self.dir)
        (self.dir / "tmp").mkdir()
        self.port = free_port()
        env = {**os.environ, "TMPDIR": str(self.dir / "tmp")}
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(binary), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--database", str(self.dir / "slum.db"), "--config", str(self.dir / "tenement.toml")],
            cwd=self.dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def first_request(self, timeout: float = 20) -> float:
        while time.perf_counter() - self.started < timeout:
            try:
                if get(self.port, "/api/health").startswith(b"HTTP/1.1 200"):
                    return time.perf_counter() - self.started
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"slum serve exited {self.proc.returncode}")
            time.sleep(0.002)
        raise SystemExit("slum serve did not answer in time")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            print("warning: slum did not stop within 30 s of SIGTERM")
        left = list((self.dir / "tmp").iterdir())
        if left:
            print(f"warning: left in TMPDIR: {left}")
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("binary", nargs="?", default=str(ROOT / "dist" / "slum"))
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    binary = Path(args.binary).resolve()

    size = binary.stat().st_size
    print(f"size:    {size / 2**20:.1f} MiB ({size} bytes)")

    times = []
    for _ in range(args.runs):
        s = Serve(binary)
        try:
            times.append(s.first_request())
        finally:
            s.stop()
    print(f"startup: median {statistics.median(times):.3f} s over {len(times)} runs "
          f"(min {min(times):.3f}, max {max(times):.3f}): exec to the first 200 on /api/health")

    s = Serve(binary)
    try:
        s.first_request()
        get(s.port, "/", host="demo.notes.localhost")
        get(s.port, "/_/")
        time.sleep(args.idle)
        program = children(s.proc.pid)
        boot, prog = rss_kb(s.proc.pid), sum(rss_kb(p) for p in program)
        print(f"idle:    RSS {(boot + prog) / 1024:.1f} MiB (bootloader {boot / 1024:.1f} + "
              f"program {prog / 1024:.1f}) after {args.idle:g} s idle")
    finally:
        s.stop()


if __name__ == "__main__":
    main()
