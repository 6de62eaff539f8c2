"""The frozen binary as a new user runs it: `slum` copied alone into an empty directory with a
tenement.toml and an app. Builds nothing: run `make dist` (or pyinstaller ... slum.spec) first;
SLUM_BIN=/path/to/slum picks another binary.

The binary unpacks itself under TMPDIR; each test points TMPDIR into its own directory, so "no
_MEI* folder left" means exactly this test's runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import ROOT, free_port
from tests.e2e.conftest import Slum

BINARY = Path(os.environ.get("SLUM_BIN") or ROOT / "dist" / "slum")
# A serving slum with processes to watch runs two programs, itself and its watchdog, each with
# its own unpacked folder.
PER_SLUM = 2
EXAMPLE = ROOT / "examples" / "notes"

pytestmark = [
    pytest.mark.binary,
    pytest.mark.slow,
    pytest.mark.skipif(not BINARY.is_file(), reason=f"no binary at {BINARY}: build it with `make dist`"),
]

# An app that answers GET / with what it was started with: environment, interpreter, modules.
ENV_APP = """
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            import unittest  # left out of the binary: found only in a real Python's stdlib
            stdlib = unittest.__file__
        except ImportError:
            stdlib = None
        with open("/proc/self/cgroup") as f:
            cgroup = f.read()
        body = json.dumps({"env": dict(os.environ), "executable": sys.executable,
                           "pid": os.getpid(), "cgroup": cgroup,
                           "prefix": sys.prefix, "frozen": getattr(sys, "frozen", False),
                           "meipass": getattr(sys, "_MEIPASS", None), "stdlib": stdlib}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""

ENV_CONFIG = """
[settings]
data_dir = "./data"

[service.env]
command = "python3 env_app.py"
startup_timeout = 10

[service.inner]
# slum supervising slum: a frozen child must unpack itself, not reuse its parent's folder
command = ["../slum", "serve", "--host", "127.0.0.1", "--port", "{port}", "--database", "inner.db"]
workdir = "inner"
health = "/api/health"
startup_timeout = 20

[instances]
env = ["one"]
inner = ["one"]
"""


@dataclass
class Binary(Slum):
    """slum serve run from the copied binary, with TMPDIR inside the test's directory."""

    exe: Path = Path("slum")
    tmpdir: Path = Path("tmp")
    extra_env: dict[str, str] | None = None

    def env(self) -> dict[str, str]:
        env = super().env()
        env["TMPDIR"] = str(self.tmpdir)
        env.pop("LD_LIBRARY_PATH", None)
        env.update(self.extra_env or {})
        return env

    def start(
        self, config: str | None = "tenement.toml", *extra: str, wait: bool = True
    ) -> subprocess.Popen[bytes]:
        argv = [
            str(self.exe),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--database",
            str(self.database),
        ]
        if config:
            argv += ["--config", str(self.dir / config)]
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*argv, *extra], cwd=self.dir, stdout=out, stderr=subprocess.STDOUT, env=self.env()
        )
        out.close()
        if wait:
            self.wait_up()
        return self.proc

    def cli(
        self, *args: str, check: bool = False, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.exe), *args],
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or self.env(),
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"slum {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def unpacked(self) -> list[Path]:
        return sorted(self.tmpdir.glob("_MEI*"))


def processes_in(root: Path) -> list[psutil.Process]:
    """Live processes (not this one) whose cwd or environment points into root."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            cwd = proc.cwd()
            env = Path(f"/proc/{proc.pid}/environ").read_bytes()
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except (psutil.Error, OSError):
            continue
        if Path(cwd).is_relative_to(root) or str(root).encode() in env:
            found.append(proc)
    return found


def assert_nothing_left(root: Path, tmpdir: Path) -> None:
    deadline = time.monotonic() + 5
    while (left := processes_in(root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, "left running: " + "; ".join(" ".join(p.cmdline()) for p in left)
    assert not list(tmpdir.iterdir()), f"left in TMPDIR: {list(tmpdir.iterdir())}"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory with only the binary, the example's config and app; TMPDIR beside it."""
    (tmp_path / "tmp").mkdir()
    d = tmp_path / "app"
    d.mkdir()
    shutil.copy2(BINARY, d / "slum")
    shutil.copy(EXAMPLE / "tenement.toml", d)
    shutil.copy(EXAMPLE / "app.py", d)
    return d


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Callable[..., Binary]]:
    """make(dir) -> a Binary running the copied binary in dir; killed (with what it started) after."""
    made: list[Binary] = []

    def factory(d: Path, **kw: Any) -> Binary:
        exe = tmp_path / "app" / "slum"
        made.append(Binary(d, free_port(), exe=exe, tmpdir=tmp_path / "tmp", **kw))
        return made[-1]

    try:
        yield factory
    finally:
        for b in made:
            if b.proc is not None and b.proc.poll() is None:
                b.stop(signal.SIGKILL)
        for proc in processes_in(tmp_path):
            proc.kill()


def test_readme_walkthrough(workdir: Path, make: Callable[..., Binary]) -> None:
    slum = make(workdir)
    out = slum.cli("--version", check=True).stdout
    assert out.startswith("slum ") and "SQLite 3." in out and "FTS5" in out
    slum.start()
    assert len(slum.unpacked()) == PER_SLUM

    token = slum.cli("token-gen", "--database", str(slum.database), check=True).stdout.strip()
    assert token.startswith("slum_")
    status, _, body = slum.http("GET", "/", host="demo.notes.localhost")
    assert (status, body) == (200, b"notes of demo\n")

    out = slum.cli("spawn", "notes", "--id", "alice", check=True).stdout
    assert out.startswith("notes:alice healthy on port")
    status, _, body = slum.http("POST", "/", host="alice.notes.localhost", body=b"hello")
    assert status == 201
    status, _, body = slum.http("GET", "/", host="alice.notes.localhost")
    assert (status, body) == (200, b"notes of alice\nhello\n")

    table = slum.cli("ps", check=True).stdout.splitlines()
    assert table[0].split()[:3] == ["INSTANCE", "STATUS", "HEALTH"]
    assert [line.split()[0] for line in table[1:]] == ["notes:alice", "notes:demo"]
    assert slum.cli("health", "notes:alice", check=True).stdout.strip() == "healthy"
    assert "notes:alice healthy" in slum.cli("restart", "notes:alice", check=True).stdout
    assert slum.cli("stop", "notes:alice", check=True).stdout.strip() == "notes:alice stopped"
    logs = slum.cli("logs", "notes:alice", check=True).stdout
    assert "note added for alice: hello" in logs
    assert slum.cli_json("config")["instances"] == {"notes": ["demo"]}
    assert "instances: 2" in slum.cli("status", check=True).stdout
    bad = slum.cli("stop", "notes:nobody")
    assert bad.returncode != 0 and bad.stderr.startswith("slum: error: ")

    # fleet registry commands work on the database directly
    slum.cli("server-add", "http://127.0.0.1:9", "--name", "n1", check=True)
    assert [s["name"] for s in slum.cli_json("server-list")] == ["local", "n1"]
    slum.cli("server-remove", "n1", check=True)

    # the API with the token, the dashboard from inside the binary
    status, _, _ = slum.http("GET", "/_/api/instances")
    assert status == 401
    status, _, body = slum.http("GET", "/_/api/instances", headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and {i["id"] for i in json.loads(body)} == {"notes:alice", "notes:demo"}
    status, _, page = slum.http("GET", "/_/")
    assert status == 200 and b"<html" in page.lower()
    static = ROOT / "src" / "slum" / "web" / "static"
    assets = [line.split('"')[1] for line in page.decode().split() if '"/_/_app/immutable/' in line]
    if assets:
        status, headers, body = slum.http("GET", assets[0])
        assert status == 200 and body and "immutable" in headers["cache-control"]
    elif not (static / "index.html").is_file():
        assert b"not built into this copy" in page

    instances = slum.cli_json("ps")
    pids = [i["pid"] for i in instances if i["pid"]]
    assert pids and all(i["status"] in ("healthy", "stopped") for i in instances)
    assert slum.stop(signal.SIGTERM) == 0
    for pid in pids:
        assert not psutil.pid_exists(pid), f"child {pid} outlived slum"
    assert_nothing_left(workdir, slum.tmpdir)


def test_children_get_a_clean_environment(workdir: Path, make: Callable[..., Binary]) -> None:
    (workdir / "env_app.py").write_text(ENV_APP)
    (workdir / "tenement.toml").write_text(textwrap.dedent(ENV_CONFIG))
    (workdir / "inner").mkdir()
    # its own config, with no services (it would otherwise find the outer tenement.toml above it)
    (workdir / "inner" / "tenement.toml").write_text("[settings]\n")
    outside = "/nonexistent/slum-test-lib"
    slum = make(workdir, extra_env={"LD_LIBRARY_PATH": outside})
    slum.start()

    status, _, body = slum.http("GET", "/", host="one.env.localhost")
    assert status == 200, body
    seen = json.loads(body)
    env = seen["env"]
    assert not [k for k in env if k.startswith(("_PYI_", "_MEIPASS", "PYINSTALLER_"))], env
    assert not [f"{k}={v}" for k, v in env.items() if "_MEI" in v]
    # slum's own LD_LIBRARY_PATH, not the one the bootloader set for the unpacked libraries
    assert env.get("LD_LIBRARY_PATH") == outside
    assert "LD_LIBRARY_PATH_ORIG" not in env
    # python3 from PATH is the system's interpreter, with its own standard library
    system = subprocess.run(
        ["python3", "-c", "import sys; print(sys.executable)"],
        capture_output=True,
        text=True,
        env=slum.env(),
        check=True,
    )
    assert os.path.realpath(seen["executable"]) == os.path.realpath(system.stdout.strip())
    assert not seen["frozen"] and seen["meipass"] is None and seen["stdlib"]
    assert "_MEI" not in seen["prefix"] and "_MEI" not in seen["stdlib"]

    # a frozen slum started by the frozen slum unpacks into its own folder
    wait = time.monotonic() + 20
    while (inner := {i["id"]: i for i in slum.cli_json("ps")}["inner:one"])["status"] != "healthy":
        assert time.monotonic() < wait, inner
        time.sleep(0.2)
    assert len(slum.unpacked()) == PER_SLUM + 1  # the inner one runs no processes
    with urllib.request.urlopen(f"http://127.0.0.1:{inner['port']}/api/health", timeout=10) as r:
        assert r.status == 200

    assert slum.stop(signal.SIGTERM) == 0
    assert_nothing_left(workdir, slum.tmpdir)


def test_two_copies_at_once(workdir: Path, make: Callable[..., Binary]) -> None:
    second = workdir.parent / "second"
    second.mkdir()
    for name in ("tenement.toml", "app.py"):
        shutil.copy(workdir / name, second)
    a = make(workdir)
    b = make(second)
    a.start(wait=False)
    b.start(wait=False)
    a.wait_up()
    b.wait_up()
    assert len(a.unpacked()) == 2 * PER_SLUM
    for s in (a, b):
        assert s.cli("spawn", "notes:x", check=True).stdout.startswith("notes:x healthy")
        status, _, body = s.http("GET", "/", host="x.notes.localhost")
        assert (status, body) == (200, b"notes of x\n")
        assert {i["id"] for i in s.cli_json("ps")} == {"notes:demo", "notes:x"}
    assert a.stop(signal.SIGTERM) == 0
    # the other copy is untouched by the first one's exit and cleanup
    status, _, body = b.http("GET", "/", host="demo.notes.localhost")
    assert (status, body) == (200, b"notes of demo\n")
    assert len(a.unpacked()) == PER_SLUM
    assert b.stop(signal.SIGTERM) == 0
    assert_nothing_left(workdir.parent, a.tmpdir)


def test_sigkill_takes_the_program_and_its_children_along(workdir: Path, make: Callable[..., Binary]) -> None:
    slum = make(workdir)
    slum.start()
    slum.cli("spawn", "notes:x", check=True)
    assert slum.proc is not None
    program = psutil.Process(slum.proc.pid).children()  # the Python process under the bootloader
    pids = [p.pid for p in program] + [i["pid"] for i in slum.cli_json("ps")]
    assert len(pids) == 3
    assert slum.stop(signal.SIGKILL) == -signal.SIGKILL

    def alive(pid: int) -> bool:
        try:
            return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + 5
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"outlived a SIGKILLed bootloader: {left}"
    # Only the unpacked folder stays: the bootloader that would remove it was killed.
    for leaked in slum.unpacked():
        shutil.rmtree(leaked, ignore_errors=True)
    assert_nothing_left(workdir, slum.tmpdir)


def test_tokens_init_and_caddy(workdir: Path, make: Callable[..., Binary]) -> None:
    slum = make(workdir)
    db = str(slum.database)
    token = slum.cli("token-gen", "--description", "ci deploys", "--database", db, check=True).stdout.strip()
    assert token.startswith("slum_")
    listed = json.loads(slum.cli("token-list", "--json", "--database", db, check=True).stdout)
    assert [t["description"] for t in listed] == ["ci deploys"]
    assert listed[0]["id"] and token not in json.dumps(listed)

    # `slum caddy` writes a Caddyfile; caddy itself (when installed) parses it
    caddyfile = workdir / "Caddyfile"
    slum.cli("caddy", "--domain", "example.test", "--output", str(caddyfile), check=True)
    text = caddyfile.read_text()
    assert "example.test" in text and "127.0.0.1:8080" in text
    if shutil.which("caddy"):
        adapted = subprocess.run(
            ["caddy", "adapt", "--config", str(caddyfile)],
            capture_output=True,
            text=True,
            timeout=60,
            env=slum.env(),
        )
        assert adapted.returncode == 0, adapted.stderr

    # `slum install` has systemd start the binary itself, not a Python from the unpacked folder
    unit = slum.cli("install", "--domain", "example.test", "--dry-run", check=True).stdout
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.split("=", 1)[1].split()[:2] == [str(slum.exe), "serve"], exec_start

    # `slum init` in an app's directory writes a config that `slum serve` runs as it is
    app = workdir.parent / "myapp"
    app.mkdir()
    (app / "app.py").write_text(ENV_APP)
    (app / "requirements.txt").write_text("")
    served = make(app)
    out = served.cli("init", check=True).stdout
    assert "wrote " in out and (app / "tenement.toml").is_file()
    served.start(None, "--strict")  # found in the working directory, no unknown key
    names = {i["id"] for i in served.cli_json("ps")}
    assert len(names) == 1, names
    service, instance = next(iter(names)).split(":")
    status, _, body = served.http("GET", "/", host=f"{instance}.{service}.localhost")
    assert status == 200, body
    assert served.stop(signal.SIGTERM) == 0
    assert_nothing_left(app, served.tmpdir)


LIMITS_CONFIG = """
[settings]
data_dir = "./data"

[service.capped]
command = "python3 env_app.py"
startup_timeout = 10
memory_limit_mb = 96

[service.jail]
command = "python3 env_app.py"
startup_timeout = 10
isolation = "namespace"

[instances]
capped = ["one"]
jail = ["one"]
"""


def memory_cgroup_writable() -> bool:
    """Root with a memory controller (v1 or v2): what slum needs for memory_limit_mb."""
    root = Path("/sys/fs/cgroup")
    v2 = root / "cgroup.controllers"
    return os.geteuid() == 0 and (
        (root / "memory").is_dir() or (v2.is_file() and "memory" in v2.read_text().split())
    )


def test_limits_namespace_and_reload(workdir: Path, make: Callable[..., Binary]) -> None:
    if not memory_cgroup_writable() or not shutil.which("unshare"):
        pytest.skip("needs root, a cgroup memory controller and util-linux's unshare")
    (workdir / "env_app.py").write_text(ENV_APP)
    (workdir / "tenement.toml").write_text(textwrap.dedent(LIMITS_CONFIG))
    slum = make(workdir)
    slum.start()

    def seen(host: str) -> dict[str, Any]:
        status, _, body = slum.http("GET", "/", host=host)
        assert status == 200, body
        return dict(json.loads(body))

    # the cgroup join step (/bin/sh) ran from the binary: the app sits in a cgroup at its limit
    capped = seen("one.capped.localhost")
    paths = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in capped["cgroup"].splitlines()}
    memory = paths.get("memory", paths.get(""))  # v1's memory hierarchy, else the v2 one
    assert memory and memory != "/", paths
    base = Path("/sys/fs/cgroup")
    limit_file = (
        base / "memory" / memory.lstrip("/") / "memory.limit_in_bytes"
        if (base / "memory").is_dir()
        else base / memory.lstrip("/") / "memory.max"
    )
    assert int(limit_file.read_text()) == 96 * 1024 * 1024
    assert not [k for k in capped["env"] if k.startswith(("_PYI_", "_MEIPASS"))]

    # unshare ran from the binary: the app sees its own pid namespace (a tiny init is pid 1)
    jail = seen("one.jail.localhost")
    assert jail["pid"] < 10, jail["pid"]
    assert not [f"{k}={v}" for k, v in jail["env"].items() if "_MEI" in v]

    # `slum reload` applies a changed config: a new instance starts, the server stays up
    text = (workdir / "tenement.toml").read_text()
    (workdir / "tenement.toml").write_text(text.replace('capped = ["one"]', 'capped = ["one", "two"]'))
    out = slum.cli("reload", check=True).stdout
    assert "capped" in out, out
    wait = time.monotonic() + 30
    while {i["id"]: i for i in slum.cli_json("ps")}.get("capped:two", {}).get("status") != "healthy":
        assert time.monotonic() < wait, slum.cli("ps").stdout
        time.sleep(0.2)
    assert seen("two.capped.localhost")["pid"] != capped["pid"]

    assert slum.stop(signal.SIGTERM) == 0
    assert_nothing_left(workdir, slum.tmpdir)
