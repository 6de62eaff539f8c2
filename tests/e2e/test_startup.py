"""Start-up is the only place a failure ends slum: one line on stderr, exit 1 (2 for config or
usage), never a traceback. And a clean exit leaves nothing behind: the control socket is gone."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from slum.store import connect
from tests.conftest import free_port
from tests.e2e.conftest import Slum, slum_argv

ROOT = os.geteuid() == 0


def serve(
    directory: Path, *args: str, port: int | None = None, database: str = "slum.db"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SLUM_SERVER", "SLUM_TOKEN")}
    return subprocess.run(
        [
            *slum_argv(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port or free_port()),
            "--database",
            database,
            *args,
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("slum: error:")]
    assert len(errors) == 1 and len(lines) == 1, result.stderr
    return errors[0]


@contextlib.contextmanager
def small_disk(path: Path, size: str = "1m") -> Iterator[Path]:
    """A real filesystem that fills up: a tmpfs of `size` (root only)."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has no byte left."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(tmp_path, port=port)
    assert result.returncode == 1
    line = one_error_line(result)
    assert f"cannot listen on 127.0.0.1:{port}" in line and "in use" in line
    assert not (tmp_path / "slum.sock").exists()


def test_port_out_of_range_is_usage(tmp_path: Path) -> None:
    result = serve(tmp_path, port=70000)
    assert result.returncode == 2
    assert "out of range" in one_error_line(result)


def test_bad_config_exits_2(tmp_path: Path) -> None:
    (tmp_path / "tenement.toml").write_text("[service.web\ncommand = 1\n")
    result = serve(tmp_path, "--config", "tenement.toml")
    assert result.returncode == 2
    assert "tenement.toml" in one_error_line(result)


def test_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "slum.db").write_bytes(b"this is not sqlite\n" * 1000)
    result = serve(tmp_path)
    assert result.returncode == 1
    assert "not a slum database" in one_error_line(result)


@pytest.mark.slow
def test_database_locked_by_another_writer(tmp_path: Path) -> None:
    conn = connect(tmp_path / "slum.db")
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("DELETE FROM processes")
    try:
        result = serve(tmp_path)
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    assert result.returncode == 1
    assert "is locked by another process" in one_error_line(result)


@pytest.mark.skipif(not ROOT, reason="mounting a small tmpfs needs root")
def test_database_on_a_full_disk(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        fill(disk)
        result = serve(tmp_path, database=str(disk / "slum.db"))
    assert result.returncode == 1
    line = one_error_line(result)
    assert "full" in line or "cannot open database" in line, line


def test_clean_exit_removes_the_control_socket(slum: Slum) -> None:
    slum.start()
    sock = slum.dir / "slum.sock"
    assert sock.exists()
    assert slum.stop(signal.SIGTERM) == 0
    assert not sock.exists()
    log = slum.log.read_text()
    assert "Traceback" not in log and "Bad file descriptor" not in log
    # and the next start binds it again, with no stale file to step over
    slum.start()
    assert sock.exists()
    assert slum.stop(signal.SIGINT) == 0
    assert not sock.exists()


def test_a_second_slum_does_not_start_on_a_served_database(slum: Slum) -> None:
    slum.start()
    result = serve(slum.dir, "--config", "tenement.toml")
    assert result.returncode == 1
    assert "another slum is serving this database" in one_error_line(result)
    assert slum.proc is not None and slum.proc.poll() is None
    assert (slum.dir / "slum.sock").exists()


def test_the_open_files_limit_is_raised_to_the_hard_limit(
    slum: Slum, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.e2e.conftest as e2e

    real = slum_argv()
    monkeypatch.setattr(e2e, "slum_argv", lambda: ["prlimit", "--nofile=256:4096", *real])
    slum.start()
    assert slum.proc is not None
    limits = Path(f"/proc/{slum.proc.pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    assert line.split()[3:5] == ["4096", "4096"], line
