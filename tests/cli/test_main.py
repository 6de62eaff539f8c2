"""The `slum` entry point: global options before the subcommand, and hostile input as one line on
stderr with exit 2, never a traceback (the real CLI, in a child process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slum.cli import _global_options


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLUM_", "TENEMENT_"))}
    return subprocess.run(
        [sys.executable, "-m", "slum", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_global_options_go_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLUM_SERVER", "SLUM_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    rest = _global_options(["--server", "http://node:8080", "--token=slum_x", "ps", "--json"])
    assert rest == ["ps", "--json"]
    assert os.environ["SLUM_SERVER"] == "http://node:8080"
    assert os.environ["SLUM_TOKEN"] == "slum_x"
    # A global option without its value is left for the parser to refuse.
    assert _global_options(["--server"]) == ["--server"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--port", "99999"], "slum: error: port 99999 is out of range (0-65535)"),
        (["serve", "--port", "0", "--domain", "bad_domain!"], "slum: error: "),
    ],
)
def test_hostile_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    done = run(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message)
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "slum.db").exists()  # refused before anything was opened
