"""`slum ps` on the control socket takes the fast path: no argument parser, no http.client, the
same table and JSON as the full CLI."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import PYTHON
from tests.e2e.conftest import Slum


def ps(slum: Slum, *args: str, importtime: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [PYTHON, *(["-X", "importtime"] if importtime else []), "-m", "slum", "ps", *args]
    return subprocess.run(
        argv, cwd=slum.dir, capture_output=True, text=True, timeout=60, env=slum.env(), check=False
    )


def test_ps_fast_path_imports_no_parser_and_answers_like_the_cli(slum: Slum) -> None:
    slum.start()
    slum.cli("spawn", "web", "--id", "fast", check=True)
    result = ps(slum, importtime=True)
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines()}
    assert "cyclopts" not in imported and "http.client" not in imported
    assert "web:fast" in result.stdout and "INSTANCE" in result.stdout
    fast = json.loads(ps(slum, "--json").stdout)
    full = slum.cli_json("ps")  # the same command through --json in the full CLI's parser too
    assert [i["id"] for i in fast] == [i["id"] for i in full] and "web:fast" in str(fast)


def test_ps_without_a_server_still_says_so(slum: Slum) -> None:
    # No control socket: the fast path steps aside, the full CLI gives its one-line error.
    result = ps(slum)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
