"""`slum install` / `uninstall`: the systemd unit (checked with systemd-analyze where it is there),
--dry-run changing nothing, and never writing over or removing a file slum did not write."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import slum_argv, write_config


def run(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SLUM_SYSTEMD_UNIT", "SLUM_CADDYFILE")}
    return subprocess.run(
        [*slum_argv(), *args], cwd=directory, capture_output=True, text=True, timeout=60, env=env
    )


def test_dry_run_prints_the_unit_and_the_caddyfile_and_changes_nothing(tmp_path: Path) -> None:
    write_config(tmp_path)
    unit_path, caddyfile = tmp_path / "etc" / "slum.service", tmp_path / "etc" / "Caddyfile"
    result = run(
        tmp_path,
        "install",
        "--domain",
        "example.com",
        "--dry-run",
        "--caddy",
        "--unit-path",
        str(unit_path),
        "--caddyfile",
        str(caddyfile),
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"# --- {unit_path}\n" in out and f"# --- {caddyfile}\n" in out
    assert "--host 127.0.0.1 --port 8080 --domain example.com" in out  # behind Caddy: loopback
    assert "ask http://127.0.0.1:8080/api/tls/ask" in out
    assert "systemctl daemon-reload && systemctl enable --now slum.service" in out
    assert not (tmp_path / "etc").exists() and not (tmp_path / "data").exists()


def test_install_writes_a_hardened_unit_and_uninstall_removes_it(tmp_path: Path) -> None:
    write_config(tmp_path)
    unit_path = tmp_path / "units" / "slum.service"
    result = run(
        tmp_path,
        "install",
        "--domain",
        "example.com",
        "--port",
        "8443",
        "--database",
        "db/slum.db",
        "--unit-path",
        str(unit_path),
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {unit_path}" in result.stdout
    assert "systemd is not running here" in result.stdout or "ran: systemctl" in result.stdout
    unit = unit_path.read_text()
    keys = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    argv = [*slum_argv()]
    if argv[0] == sys.executable:
        argv[0] = str(Path(sys.executable).absolute())
    assert keys["ExecStart"].startswith(" ".join(argv) + " serve --host 0.0.0.0 --port 8443 ")
    assert f"--config {tmp_path / 'tenement.toml'}" in keys["ExecStart"]
    assert f"--database {tmp_path / 'db' / 'slum.db'}" in keys["ExecStart"]
    assert keys["WorkingDirectory"] == str(tmp_path)
    assert keys["Restart"] == "always" and keys["KillMode"] == "mixed"
    assert int(keys["LimitNOFILE"]) >= 65536
    assert keys["NoNewPrivileges"] == "true" and keys["ProtectSystem"] == "strict"
    assert keys["ReadWritePaths"].split() == [str(tmp_path / "data"), str(tmp_path / "db")]
    # Longer than slum's own stop: its instances' grace (2 s here) or shutdown_grace (10 s).
    assert int(keys["TimeoutStopSec"]) > 10
    assert keys["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert (tmp_path / "db").is_dir() and (tmp_path / "data").is_dir()

    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        check = subprocess.run(
            [analyze, "verify", str(unit_path)], capture_output=True, text=True, timeout=60
        )
        assert check.returncode == 0, check.stderr
        assert not re.search(r"(?i)unknown|invalid|ignoring", check.stderr), check.stderr

    again = run(tmp_path, "uninstall", "--unit-path", str(unit_path))
    assert again.returncode == 0, again.stderr
    assert f"removed {unit_path}" in again.stdout and not unit_path.exists()
    assert (tmp_path / "tenement.toml").exists() and (tmp_path / "data").is_dir()
    assert "nothing to remove" in run(tmp_path, "uninstall", "--unit-path", str(unit_path)).stdout
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here: the unit was checked by its keys only")


def test_files_slum_did_not_write_are_left_alone(tmp_path: Path) -> None:
    unit_path = tmp_path / "slum.service"
    unit_path.write_text("[Service]\nExecStart=/bin/true\n")
    result = run(tmp_path, "install", "--domain", "example.com", "--unit-path", str(unit_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"slum: error: {unit_path} exists and was not written by slum: not overwriting it"
    )
    result = run(tmp_path, "uninstall", "--unit-path", str(unit_path))
    assert result.returncode == 2 and "not removing it" in result.stderr
    assert unit_path.read_text() == "[Service]\nExecStart=/bin/true\n"

    # Debian's caddy ships a Caddyfile of its own: install writes nothing at all then.
    caddyfile, ours = tmp_path / "Caddyfile", tmp_path / "units" / "slum.service"
    caddyfile.write_text(":80 {\n\trespond hello\n}\n")
    result = run(
        tmp_path,
        "install",
        "--domain",
        "example.com",
        "--caddy",
        "--unit-path",
        str(ours),
        "--caddyfile",
        str(caddyfile),
    )
    assert result.returncode == 2 and "--caddyfile" in result.stderr
    assert not ours.exists() and caddyfile.read_text() == ":80 {\n\trespond hello\n}\n"


def test_install_refuses_a_broken_config_with_its_message(tmp_path: Path) -> None:
    (tmp_path / "tenement.toml").write_text("[settings]\nmax_restarts = 'x'\n")
    result = run(tmp_path, "install", "--domain", "example.com", "--dry-run")
    assert result.returncode == 2
    assert "tenement.toml:2: settings.max_restarts: must be an integer" in result.stderr
