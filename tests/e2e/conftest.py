"""End-to-end fixtures: a real `slum serve` process and the real CLI.

SLUM_BIN=/path/to/dist/slum runs the same tests against the frozen binary instead of the package.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CHILDREN, PYTHON, free_port


def slum_argv() -> list[str]:
    binary = os.environ.get("SLUM_BIN")
    return [binary] if binary else [PYTHON, "-m", "slum"]


@dataclass
class Slum:
    """A running `slum serve` in its own directory, and the CLI pointed at it."""

    dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.dir / "serve.log"

    @property
    def database(self) -> Path:
        return self.dir / "slum.db"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("SLUM_SERVER", None)
        env.pop("SLUM_TOKEN", None)
        return env

    def start(
        self, config: str | None = "tenement.toml", *extra: str, wait: bool = True
    ) -> subprocess.Popen[bytes]:
        argv = [
            *slum_argv(),
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
        argv += list(extra)
        out = self.log.open("ab")
        self.proc = subprocess.Popen(argv, cwd=self.dir, stdout=out, stderr=subprocess.STDOUT, env=self.env())
        out.close()
        if wait:
            self.wait_up()
        return self.proc

    def wait_up(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"slum serve exited {self.proc.returncode}:\n" + self.log.read_text())
            try:
                self.http("GET", "/api/health")
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("slum serve did not come up:\n" + self.log.read_text())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def cli(
        self, *args: str, check: bool = False, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*slum_argv(), *args],
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

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json", check=True).stdout)

    def http(
        self,
        method: str,
        path: str,
        *,
        host: str | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method=method)
        if host:
            req.add_header("Host", host)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with _opener.open(req, timeout=timeout) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)

WEB_CONFIG = """
[settings]
data_dir = "./data"
health_check_interval = 0.5
max_restarts = 2
restart_window = 60
backoff_base_ms = 100
backoff_max_ms = 400
stop_grace_s = 2

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"
startup_timeout = 10

[service.web.env]
DATA_DIR = "{{data_dir}}/{{name}}/{{id}}"

[service.crash]
command = ["{python}", "{children}/crash.py"]
startup_timeout = 5

[instances]
web = ["one"]
"""


def write_config(directory: Path, text: str = WEB_CONFIG) -> Path:
    path = directory / "tenement.toml"
    path.write_text(textwrap.dedent(text).format(python=PYTHON, children=CHILDREN))
    return path


@pytest.fixture
def slum(tmp_path: Path) -> Iterator[Slum]:
    write_config(tmp_path)
    s = Slum(tmp_path, free_port())
    try:
        yield s
    finally:
        if s.proc is not None and s.proc.poll() is None:
            # SIGTERM first: a frozen binary removes its unpacked folder only on a clean exit.
            try:
                s.stop(signal.SIGTERM, timeout=15)
            except subprocess.TimeoutExpired:
                s.stop(signal.SIGKILL)
        leftover = subprocess.run(
            ["pgrep", "-f", str(CHILDREN)], capture_output=True, text=True
        ).stdout.split()
        for pid in leftover:
            # Only ours: their cwd or config points into this test's directory.
            try:
                cmdline = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if str(tmp_path).encode() in cmdline:
                os.kill(int(pid), signal.SIGKILL)
