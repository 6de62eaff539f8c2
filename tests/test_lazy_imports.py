"""What slum's start imports decides its RSS at rest (specs/performance.md): the web app's
stack and the fleet's HTTP client load when first used, not at start. Checked in a fresh
interpreter, as `slum serve` starts."""

from __future__ import annotations

import json
import subprocess
import sys

# ~17 MB (Quart with Werkzeug, Jinja...; Hypercorn), ~7 MB (httpx), Argon2's bindings.
LAZY = ("quart", "quart_trio", "hypercorn", "werkzeug", "jinja2", "httpx", "argon2")


def test_serve_imports_neither_the_web_stack_nor_the_fleet_client() -> None:
    code = (
        "import json, sys; import slum.app, slum.cli.commands; "
        f"print(json.dumps(sorted(m for m in {LAZY!r} if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
