"""schemathesis against a real running slum, from its own /_/api/openapi.json: about two minutes
of generated requests (valid and invalid), and not one answer may be a 5xx."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Slum

ST = Path(sys.executable).parent / "schemathesis"
BUDGET_S = int(os.environ.get("SLUM_FUZZ_SECONDS", "100"))

# Excluded, and why:
# - POST servers: a generated address is any host on the internet, and slum checks its nodes:
#   the test would send traffic off this machine. Its bad bodies are in test_api.py.
# - POST login: a wrong token slows down the client that sent it (the rate limit), so fuzzing
#   login throttles the fuzzer itself. Its bad bodies are in test_api.py.
EXCLUDED = ("server_add", "server_add_api", "login")


@pytest.mark.slow
@pytest.mark.timeout(BUDGET_S + 300)
@pytest.mark.skipif(not ST.exists(), reason="schemathesis (pip install -e '.[dev]')")
def test_no_server_errors(slum: Slum) -> None:
    token = slum.cli("token-gen", "--database", str(slum.database), check=True).stdout.strip()
    slum.start()
    status, _, raw = slum.http("GET", "/_/api/openapi.json", headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and json.loads(raw)["openapi"].startswith("3.1")
    assert slum.http("GET", "/_/api/openapi.json")[0] == 401  # auth like the rest of /_/api

    argv = [
        str(ST),
        "run",
        f"http://127.0.0.1:{slum.port}/_/api/openapi.json",
        "-H",
        f"Authorization: Bearer {token}",
        "--checks",
        "not_a_server_error",
        "--max-time",
        str(BUDGET_S),
        "--request-timeout",
        "30",
        "--workers",
        "1",
        "--no-color",
        "--seed",
        "1",
    ]
    for op in EXCLUDED:
        argv += ["--exclude-operation-id", op]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=BUDGET_S + 240, cwd=slum.dir)
    out = result.stdout + result.stderr
    summary = re.search(r"(\d+) generated, (\d+) passed", out)
    assert summary is not None, out[-3000:]
    generated = int(summary.group(1))
    print(f"schemathesis: {summary.group(0)}")
    assert generated > 100, out[-3000:]
    errors = out[out.find("= ERRORS =") : out.find("= WARNINGS =")]
    assert result.returncode == 0, errors or out[-6000:]
    assert "internal error" not in slum.log.read_text(errors="replace")
