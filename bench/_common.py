"""Shared helpers for the benchmarks: process groups that are always cleaned up, a slum server in a
temp dir, a tiny HTTP client over the control socket, and the result rows that run.py prints.

Benchmarks print numbers; they assert nothing. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
# The venv that runs the benchmark (bench/run.py is run as .venv/bin/python bench/run.py).
BIN = Path(sys.executable).parent
SLUM = str(BIN / "slum") if (BIN / "slum").exists() else shutil.which("slum") or "slum"


@dataclass
class Row:
    """One line of the combined table."""

    bench: str
    metric: str
    value: str
    target: str = ""
    issue18: str = ""  # the row of issue 18's table this answers (run.py --issue18 lists them)


def print_rows(rows: Sequence[Row], title: str = "") -> None:
    if title:
        print(f"\n== {title} ==")
    headers = ("bench", "metric", "value", "target / compare")
    cells = [headers, *[(r.bench, r.metric, r.value, r.target) for r in rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    for n, c in enumerate(cells):
        print("  ".join(s.ljust(w) for s, w in zip(c, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    sys.stdout.flush()


def save_json(name: str, data: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_tcp(port: int, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C, so every `finally` runs and every process is stopped.
    SIGINT too, even when started in the background by a shell that set it to ignored."""
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):
            signal.signal(sig, _on_sigterm)


class Procs:
    """Processes started in their own process group; stop() kills each group (and any
    descendants that moved to their own groups, e.g. slum's children), newest first."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[Any]] = []

    def start(self, args: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(list(args), start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen[Any], grace: float = 10.0) -> None:
        descendants = _descendants(p.pid)
        if p.poll() is None:
            _kill_group(p.pid, signal.SIGTERM)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                print(
                    f"warning: {Path(str(p.args[0])).name} (pid {p.pid}) did not exit within "
                    f"{grace:g} s of SIGTERM; killing it",
                    file=sys.stderr,
                    flush=True,
                )
                _kill_group(p.pid, signal.SIGKILL)
                p.wait(5)
        # Anything the process left behind (slum reaps its children; this is the safety net).
        for pid in descendants:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self) -> None:
        while self.procs:
            p = self.procs[-1]
            try:
                self.stop(p)
            except KeyboardInterrupt:
                self.stop(p, grace=0.5)

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _descendants(pid: int) -> list[int]:
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:
        return []


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def api(sock: Path, method: str, path: str, body: Any = None, timeout: float = 60.0) -> tuple[int, Any]:
    """One request to slum's HTTP API over the control socket (no token needed there)."""
    conn = UnixHTTP(str(sock), timeout)
    try:
        headers = {"Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=payload, headers=headers)
        r = conn.getresponse()
        raw = r.read()
    finally:
        conn.close()
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = raw.decode("utf-8", "replace")
    return r.status, data


def http_get(port: int, path: str = "/", host: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


@contextlib.contextmanager
def tempdir(prefix: str) -> Iterator[Path]:
    # Under /tmp (short paths: the control socket path must stay under ~100 bytes).
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp" if os.path.isdir("/tmp") else None))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@dataclass
class Slum:
    proc: subprocess.Popen[Any]
    port: int
    sock: Path
    dir: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def env(self) -> dict[str, str]:
        """Environment for CLI calls that talk to this server."""
        return {**os.environ, "SLUM_SERVER": f"unix:{self.sock}"}

    def instances(self) -> list[dict[str, Any]]:
        status, data = api(self.sock, "GET", "/_/api/instances")
        if status != 200:
            raise RuntimeError(f"GET /_/api/instances: {status} {data}")
        return list(data)

    def wait_healthy(
        self, ids: Sequence[str], timeout: float = 30.0, *, idle_ok: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Until each is healthy (idle_ok: or already stopped for being idle, which a short
        idle_timeout can make happen before the first look)."""
        deadline = time.monotonic() + timeout
        while True:
            by_id = {i["id"]: i for i in self.instances()}
            if all(
                by_id.get(i, {}).get("status") in ("healthy", "running")
                or (
                    idle_ok
                    and (
                        by_id.get(i, {}).get("status") == "sleeping"
                        or by_id.get(i, {}).get("reason") == "idle"
                    )
                )
                for i in ids
            ):
                return by_id
            if time.monotonic() > deadline:
                states = {i: by_id.get(i, {}).get("status") for i in ids}
                raise TimeoutError(f"instances not healthy after {timeout:.0f} s: {states}")
            time.sleep(0.05)


def start_slum(procs: Procs, workdir: Path, config: str, *, timeout: float = 30.0, ask: bool = True) -> Slum:
    """Write tenement.toml into workdir and run `slum serve` on 127.0.0.1 with a fresh database
    there; return once the control socket answers /api/health (ask=False: once it exists and the
    edge listens, without a request, which would load the web app)."""
    cfg = workdir / "tenement.toml"
    cfg.write_text(config)
    db = workdir / "slum.db"
    port = free_port()
    log = (workdir / "slum.log").open("wb")
    proc = procs.start(
        [
            SLUM,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database",
            str(db),
            "--config",
            str(cfg),
        ],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    # Find the control socket the way the CLI does (beside the database).
    sock = db.with_suffix(".sock")
    with contextlib.suppress(Exception):
        from slum.client import control_socket_path

        sock = control_socket_path(db)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = (workdir / "slum.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"slum serve exited with {proc.returncode}:\n{tail}")
        if sock.exists() and not ask:
            break
        if sock.exists():
            try:
                status, _ = api(sock, "GET", "/api/health", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"slum serve did not answer on {sock} after {timeout:.0f} s")
        time.sleep(0.02)
    wait_tcp(port, 10, proc)
    return Slum(proc, port, sock, workdir)


def main_wrapper(run: Any, title: str) -> None:
    """Entry point for one benchmark: parse its args, run, print its rows."""
    install_signal_handlers()
    try:
        rows = run(sys.argv[1:])
    except KeyboardInterrupt:
        print("\ninterrupted; processes stopped", file=sys.stderr)
        raise SystemExit(130) from None
    print_rows(rows, title)


def load_row(bench: str, when: str = "") -> Row:
    """The 1-minute load average as a row: on a busy 2-core machine every latency is noisier."""
    load = os.getloadavg()[0]
    busy = load / (os.cpu_count() or 1)
    label = f"load avg (1 min){' ' + when if when else ''}"
    return Row(
        bench,
        label,
        f"{load:.2f}",
        f"{os.cpu_count()} cpus; " + ("busy: numbers noisy" if busy > 0.5 else "quiet"),
    )


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def real_python3() -> str:
    """The first `python3` on PATH that is a real interpreter, not a wrapper script (a pyenv shim
    is a bash script that adds ~150 ms to every start, which would swamp what is measured)."""
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = Path(d or ".") / "python3"
        try:
            with p.open("rb") as f:
                if os.access(p, os.X_OK) and f.read(4) == b"\x7fELF":
                    return str(p.resolve())
        except OSError:
            continue
    return shutil.which("python3") or sys.executable


def open_dirs(d: Path) -> None:
    """Make d, and its parents up to one that already is, readable by all: nginx workers may run
    as nobody and must reach www/ (mkdtemp makes 0700 directories)."""
    d.chmod(0o755)
    for p in d.parents:
        if p.stat().st_mode & 0o001:
            break
        p.chmod(p.stat().st_mode | 0o755)


def setup_nginx(d: Path, service: str = "svc", workers: str = "1") -> str:
    """Files for an nginx that slum supervises (as in proxy.py: its command writes a config for
    $PORT and execs nginx) under d; returns the `[service.NAME]` TOML for it. nginx serves
    /index.html (proxy.BODY) and /health."""
    import proxy  # late: proxy imports this module

    missing = proxy.ensure_tools()
    if "nginx" in missing or "wrk" in missing:
        raise RuntimeError("nginx/wrk missing: apt-get install -y nginx wrk")
    nginx = proxy._which("nginx") or "nginx"
    open_dirs(d)
    (d / "www").mkdir(mode=0o755, exist_ok=True)
    (d / "www" / "index.html").write_bytes(proxy.BODY)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    (d / "nginx.conf.in").write_text(proxy.NGINX_CONF.format(workers=workers, dir=d, port="__PORT__"))
    (d / "backend.sh").write_text(proxy.BACKEND_SH)
    return (
        f'[service.{service}]\ncommand = "sh {d}/backend.sh"\nhealth = "/health"\n'
        f'idle_timeout = 0\nstartup_timeout = 10\nrestart = "on-failure"\n\n'
        f'[service.{service}.env]\nNGINX_DIR = "{d}"\nNGINX_BIN = "{nginx}"\n'
    )


def status(slum: Slum) -> dict[str, Any]:
    code, data = api(slum.sock, "GET", "/_/api/status")
    if code != 200:
        raise RuntimeError(f"GET /_/api/status: {code} {data}")
    return dict(data)


# --- tenement (`ten`), for the side-by-side rows -----------------------------------------------
TENEMENT_VENV = RESULTS / "tenement-venv"  # gitignored with results/: never committed


def tenement_bin() -> str | None:
    """`ten` from PyPI's tenement package (a Rust binary in a wheel), in a venv of its own under
    bench/results/, installed on first use. $SLUM_BENCH_TEN names another binary. None (with a
    line saying why) when it cannot be had."""
    given = os.environ.get("SLUM_BENCH_TEN")
    if given:
        return given if os.access(given, os.X_OK) else None
    ten = TENEMENT_VENV / "bin" / "ten"
    if not ten.exists():
        print("bench: installing tenement (pip) into bench/results/tenement-venv ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(TENEMENT_VENV)],
            capture_output=True,
            timeout=300,
            check=False,
        )
        out = subprocess.run(
            [str(TENEMENT_VENV / "bin" / "pip"), "install", "-q", "tenement"],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if not ten.exists():
            print(f"bench: tenement unavailable: {out.stderr.strip()[-300:]}", file=sys.stderr)
            return None
    return str(ten)


@dataclass
class Tenement:
    proc: subprocess.Popen[Any]
    port: int
    dir: Path
    ten: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def env(self) -> dict[str, str]:
        """For `ten` CLI calls against this server (its token is in the data dir)."""
        return {
            **os.environ,
            "TENEMENT_SERVER": f"http://127.0.0.1:{self.port}",
            "TENEMENT_DATA_DIR": str(self.dir / "data"),
        }


# tenement starts a service with an empty environment and, by default, in a PID namespace of its
# own with a memory limit: PATH is given, and isolation and the limit are set as slum runs them.
TENEMENT_SERVICE_KEYS = 'isolation = "process"\nmemory_limit_mb = 0\n'
TENEMENT_ENV = 'PATH = "/usr/local/bin:/usr/bin:/bin"\nPORT = "{port}"\n'


def start_tenement(
    procs: Procs,
    workdir: Path,
    config: str,
    hosts: Sequence[str] = (),
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> Tenement | None:
    """`ten serve` on a free port with config as workdir/tenement.toml (its data dir under
    workdir/data), a token generated for the CLI; returns once each of `hosts` answers 200 through
    it (GET /), or None when tenement is not available."""
    ten = tenement_bin()
    if ten is None:
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "tenement.toml").write_text(config)
    port = free_port()
    log = (workdir / "ten.log").open("wb")
    proc = procs.start(
        [ten, "serve", "-p", str(port), "--data-dir", str(workdir / "data")],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    log.close()
    t = Tenement(proc, port, workdir, ten)
    wait_tcp(port, timeout, proc)
    gen = subprocess.run(
        [ten, "token-gen", "--data-dir", str(workdir / "data")],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=t.env(),
    )
    if gen.returncode != 0:
        raise RuntimeError(f"ten token-gen: exit {gen.returncode}: {gen.stderr[:300]}")
    deadline = time.monotonic() + timeout
    for host in hosts:
        while True:
            with contextlib.suppress(OSError):
                if http_get(port, "/", host, timeout=5)[0] in (200, 404):
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (workdir / "ten.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"ten serve: {host} not served after {timeout:.0f} s:\n{tail}")
            time.sleep(0.1)
    return t
