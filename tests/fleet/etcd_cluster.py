"""A real etcd cluster on loopback for the tests and the benchmark: members are real `etcd`
processes with their own data directories; a test can kill a member and start it again (it comes
back with its data, like a restarted machine)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ETCD = shutil.which("etcd") or ("/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None)


def _free_ports(n: int) -> list[int]:
    # Held open together so that the n ports are distinct.
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    argv: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        out = self.log.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (OSError, ValueError):
            return False


class EtcdCluster:
    """n members named m0..m{n-1}; fast elections so that a test sees a new leader in well under
    a second (loopback has no latency to tolerate)."""

    def __init__(self, base: Path, size: int = 3) -> None:
        assert ETCD is not None, "etcd is not installed"
        ports = _free_ports(2 * size)
        self.members = [
            Member(f"m{i}", ports[2 * i], ports[2 * i + 1], base / f"m{i}.etcd", base / f"m{i}.log")
            for i in range(size)
        ]
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        token = f"slum-test-{os.getpid()}-{ports[0]}"
        for m in self.members:
            m.argv = [
                ETCD,
                "--name",
                m.name,
                "--data-dir",
                str(m.data_dir),
                "--listen-client-urls",
                m.url,
                "--advertise-client-urls",
                m.url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{m.peer_port}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{m.peer_port}",
                "--initial-cluster",
                initial,
                "--initial-cluster-token",
                token,
                "--initial-cluster-state",
                "new",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
                "--logger",
                "zap",
                "--log-level",
                "warn",
            ]

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    @property
    def registry_url(self) -> str:
        """What `slum serve --registry` takes: etcd://host:port,host:port,..."""
        return "etcd://" + ",".join(f"127.0.0.1:{m.client_port}" for m in self.members)

    def start(self, timeout: float = 30) -> None:
        for m in self.members:
            m.start()
        self.wait_healthy(timeout=timeout)

    def wait_healthy(self, members: list[Member] | None = None, timeout: float = 30) -> None:
        """Until each member (or the given ones) answers /health true, which needs a leader."""
        deadline = time.monotonic() + timeout
        todo = list(members or self.members)
        while todo:
            todo = [m for m in todo if not m.healthy()]
            if not todo:
                return
            for m in todo:
                if m.proc is not None and m.proc.poll() is not None:
                    raise AssertionError(
                        f"etcd {m.name} exited {m.proc.returncode}:\n"
                        + m.log.read_text(errors="replace")[-3000:]
                    )
            if time.monotonic() > deadline:
                raise AssertionError("etcd not healthy: " + ", ".join(m.name for m in todo))
            time.sleep(0.1)

    def stop(self) -> None:
        for m in self.members:
            try:
                m.kill(signal.SIGKILL)
            except subprocess.TimeoutExpired:
                pass


# A module-level mark (not a skip inside a fixture) so that CI's SLUM_REQUIRE_ALL=1 turns a missing
# etcd into a failure rather than a silent skip (tests/conftest.py).
needs_etcd = pytest.mark.skipif(ETCD is None, reason="etcd (Debian: etcd-server)")


@pytest.fixture(name="etcd_cluster")
def etcd_cluster_fixture(tmp_path: Path) -> Iterator[EtcdCluster]:
    """`etcd_cluster`: a fresh 3-member cluster per test (tests kill and restart its members).
    A test module imports etcd_cluster_fixture to use it."""
    base = tmp_path / "etcd"
    base.mkdir()
    cluster = EtcdCluster(base)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
