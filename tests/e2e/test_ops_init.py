"""`slum init`: a starter tenement.toml for the app in the current directory, which slum's own
parser loads; never over an existing file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from slum import config as cfg
from tests.e2e.conftest import slum_argv

APPS = [
    ({"pyproject.toml": "[project]\nname = 'x'\n", "main.py": ""}, "python", ["python3", "main.py"]),
    ({"requirements.txt": "flask\n"}, "python", ["python3", "app.py"]),
    ({"package.json": json.dumps({"scripts": {"start": "node server.js"}})}, "node", ["npm", "start"]),
    ({"package.json": "{}", "server.js": ""}, "node", ["node", "server.js"]),
    ({"go.mod": "module example.com/x\n"}, "go", ["go", "run", "."]),
    ({"Cargo.toml": "[package]\nname = 'x'\n"}, "rust", ["cargo", "run", "--release"]),
]


def run(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*slum_argv(), "init", *args], cwd=directory, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(("files", "kind", "argv"), APPS)
def test_init_detects_the_app_and_writes_a_config_that_loads(
    tmp_path: Path, files: dict[str, str], kind: str, argv: list[str]
) -> None:
    app = tmp_path / "My_Shop.app"
    app.mkdir()
    for name, text in files.items():
        (app / name).write_text(text)
    result = run(app)
    assert result.returncode == 0, result.stderr
    assert f"({kind} app, service my-shop-app" in result.stdout
    text = (app / "tenement.toml").read_text()
    assert text.startswith(f"# tenement.toml, written by `slum init` for a {kind} app.")
    config = cfg.load(app / "tenement.toml")
    svc = config.services["my-shop-app"]
    assert list(svc.command) == argv
    assert svc.health == "/health" and svc.idle_timeout == 300
    assert config.instances == {"my-shop-app": ("default",)}
    assert svc.env == {"DATA_DIR": "{data_dir}/{name}/{id}"}


def test_init_with_name_and_command_and_never_overwrites(tmp_path: Path) -> None:
    result = run(tmp_path, "--name", "notes", "--command", 'ruby "my app.rb" --port $PORT')
    assert result.returncode == 0, result.stderr
    config = cfg.load(tmp_path / "tenement.toml")
    assert list(config.services["notes"].command) == ["ruby", "my app.rb", "--port", "$PORT"]
    before = (tmp_path / "tenement.toml").read_text()

    again = run(tmp_path, "--name", "other")
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"slum: error: {tmp_path / 'tenement.toml'} already exists: not overwriting it"
    )
    assert (tmp_path / "tenement.toml").read_text() == before


def test_init_without_an_app_or_with_a_bad_name_says_so(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert result.returncode == 2 and "pass --command" in result.stderr
    assert len(result.stderr.splitlines()) == 1
    bad = run(tmp_path, "--name", "Not_A_Label", "--command", "x")
    assert bad.returncode == 2 and "invalid service name 'Not_A_Label'" in bad.stderr
    assert not (tmp_path / "tenement.toml").exists()
