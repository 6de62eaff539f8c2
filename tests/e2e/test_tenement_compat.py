"""A tenement user's habits against the real CLI and server: their flags, environment, configs,
unix-socket apps and storage keys."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Slum, slum_argv, write_config

CONFIG = """
[settings]
data_dir = "./data"
health_check_interval = 0.5
stop_grace_s = 2

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"

[service.sock]
command = ["{python}", "{children}/unix_web.py"]
health = "/health"
request_timeout = 1
storage_persist = false
storage_quota_mb = 1
isolation = "namespace"
port = 3000

[service.sock.env]
DATA_DIR = "{{data_dir}}/{{name}}/{{id}}"
SLOW_S = "4"

[instances]
web = ["one"]
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Slum]:
    write_config(tmp_path, CONFIG)
    s = Slum(tmp_path, free_port())
    sub = tmp_path / "deep" / "er"
    sub.mkdir(parents=True)
    # Started the way tenement is: from a subdirectory of the project, no --config, -p PORT.
    argv = [*slum_argv(), "serve", "--host", "127.0.0.1", "-p", str(s.port), "--database", str(s.database)]
    with s.log.open("ab") as out:
        s.proc = subprocess.Popen(argv, cwd=sub, stdout=out, stderr=subprocess.STDOUT, env=s.env())
    s.wait_up()
    try:
        yield s
    finally:
        s.stop()


def wait_status(s: Slum, ref: str, status: str, timeout: float = 20) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {i["id"]: i for i in s.cli_json("ps")}.get(ref)
        if found and found["status"] == status:
            return found  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"{ref} never became {status}")


def test_config_found_walking_up_and_warnings_name_the_key(node: Slum) -> None:
    assert "web:one" in node.cli("ps", check=True).stdout
    log = node.log.read_text()
    assert "service.sock.port: a tenement key slum does not act on" in log


def test_global_server_option_and_tenement_environment(node: Slum) -> None:
    url = f"http://127.0.0.1:{node.port}"
    token = node.cli("token-gen", "--database", str(node.database), check=True).stdout.strip()
    elsewhere = node.dir.parent / f"{node.dir.name}-elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in node.env().items() if not k.startswith("TENEMENT_")}
    global_flag = subprocess.run(
        [*slum_argv(), "--server", url, "--token", token, "ps"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
    )
    assert global_flag.returncode == 0 and "web:one" in global_flag.stdout, global_flag.stderr
    env.update(TENEMENT_SERVER=url, TENEMENT_TOKEN=token)
    by_env = subprocess.run(
        [*slum_argv(), "ps", "--json"], cwd=elsewhere, capture_output=True, text=True, env=env
    )
    assert by_env.returncode == 0 and "web:one" in by_env.stdout, by_env.stderr
    env["TENEMENT_TOKEN"] = "slum_wrong"
    refused = subprocess.run([*slum_argv(), "ps"], cwd=elsewhere, capture_output=True, text=True, env=env)
    assert refused.returncode != 0  # the token really came from TENEMENT_TOKEN


def test_spawn_is_idempotent_and_restart_starts_a_never_spawned_id(node: Slum) -> None:
    wait_status(node, "web:one", "healthy")
    pid = {i["id"]: i for i in node.cli_json("ps")}["web:one"]["pid"]
    again = node.cli("spawn", "web:one")
    assert again.returncode == 0 and "web:one healthy" in again.stdout
    assert {i["id"]: i for i in node.cli_json("ps")}["web:one"]["pid"] == pid
    fresh = node.cli("restart", "web:fresh")
    assert fresh.returncode == 0 and "web:fresh healthy" in fresh.stdout, fresh.stderr


def test_logs_limit_and_stream(node: Slum) -> None:
    wait_status(node, "web:one", "healthy")
    node.http("GET", "/a", host="one.web.localhost")
    node.http("GET", "/b", host="one.web.localhost")
    deadline = time.monotonic() + 10
    lines: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        out = node.cli("logs", "web:one", "--stream", "stderr", "--limit", "50", "--json", check=True).stdout
        lines = [json.loads(x) for x in out.splitlines()]
        if lines:
            break
        time.sleep(0.2)
    assert lines and {x["stream"] for x in lines} == {"stderr"}
    assert any(x["message"] == "a warning on stderr" for x in lines)
    one = node.cli("logs", "web:one", "--limit", "1", "--json", check=True).stdout.splitlines()
    assert len(one) == 1
    # tenement's `logs --level stderr` means the stream.
    tenement_style = node.cli("logs", "web:one", "--level", "stderr", "--json", check=True)
    assert {json.loads(x)["stream"] for x in tenement_style.stdout.splitlines()} == {"stderr"}
    bad = node.cli("logs", "--stream", "sideways")
    assert bad.returncode == 2 and "invalid stream" in bad.stderr


def test_config_without_a_server(node: Slum) -> None:
    node.stop()
    shown = node.cli("config")
    assert shown.returncode == 0, shown.stderr
    assert "service sock:" in shown.stdout and "no server" in shown.stderr
    assert "warning: " in shown.stdout and "service.sock.port" in shown.stdout


def test_unix_socket_app_request_timeout_and_storage(node: Slum) -> None:
    status, _, body = node.http("GET", "/hi", host="a.sock.localhost")
    assert (status, body) == (404, body)  # not spawned, no auto_spawn
    node.cli("spawn", "sock:a", check=True)
    status, _, body = node.http("GET", "/hi", host="a.sock.localhost")
    assert (status, body) == (200, b"sock:a /hi via unix")
    inst = {i["id"]: i for i in node.cli_json("ps")}["sock:a"]
    assert str(inst["socket"]).endswith("sock-a/app.sock")
    # request_timeout = 1: the app answers /slow after 4 s.
    started = time.monotonic()
    status, _, _ = node.http("GET", "/slow", host="a.sock.localhost")
    assert status == 504 and time.monotonic() - started < 3.5
    # Storage: measured on request, with the quota's warning past 80%.
    node.http("POST", "/fill?bytes=900000", host="a.sock.localhost")
    _, _, raw = node.http(
        "GET",
        "/_/api/instances/sock:a/storage",
        headers={
            "Authorization": "Bearer "
            + node.cli("token-gen", "--database", str(node.database), check=True).stdout.strip()
        },
    )
    usage = json.loads(raw)
    assert usage["bytes"] >= 900000 and usage["storage_quota_bytes"] == 1024 * 1024
    assert usage["storage_warning"] == "storage at 85% of 1 MB"
    assert "storage at 85%" in node.cli("ps", check=True).stdout
    assert "attention: storage sock:a: storage at 85% of 1 MB" in node.cli("status", check=True).stdout
    # storage_persist = false: the data dir goes with the process.
    data = node.dir / "data" / "sock" / "a"
    assert (data / "fill").exists()
    node.cli("stop", "sock:a", check=True)
    assert not data.exists()


def test_domain_like_database_is_warned_about(tmp_path: Path) -> None:
    result = subprocess.run(
        [*slum_argv(), "serve", "-d", "example.com", "-p", "1", "--host", "256.0.0.1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=30,
    )
    assert "-d/--database 'example.com' does not look like a database file" in result.stderr
    assert "--domain" in result.stderr


def test_strict_refuses_unknown_keys_and_tenement_data_dir_is_honoured(tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG + "\n[service.typo]\ncommand = 'x'\nidle_timout = 5\n")
    s = Slum(tmp_path, free_port())
    s.start(wait=False)
    # The default: a warning naming file, line and key, and slum runs.
    s.wait_up()
    s.stop()
    text = (tmp_path / "tenement.toml").read_text()
    line = text.splitlines().index("idle_timout = 5") + 1
    assert f"tenement.toml:{line}: service.typo.idle_timout: unknown key" in s.log.read_text()
    strict = s.cli(
        "serve",
        "--strict",
        "--config",
        "tenement.toml",
        "-p",
        str(s.port),
        "--host",
        "127.0.0.1",
        "--database",
        str(s.database),
    )
    assert strict.returncode == 2
    assert "service.typo.idle_timout: unknown key" in strict.stderr and "--strict" in strict.stderr
    # TENEMENT_DATA_DIR overrides [settings] data_dir, as tenement's --data-dir does.
    elsewhere = tmp_path / "elsewhere"
    env = {**s.env(), "TENEMENT_DATA_DIR": str(elsewhere)}
    with s.log.open("ab") as out:
        s.proc = subprocess.Popen(
            [*slum_argv(), "serve", "-p", str(s.port), "--host", "127.0.0.1", "--database", str(s.database)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    s.wait_up()
    try:
        s.cli("spawn", "web:one", check=True)
        assert (elsewhere / "web" / "one").is_dir()
        assert json.loads(s.cli("config", "--json", check=True).stdout)["settings"]["data_dir"] == str(
            elsewhere
        )
    finally:
        s.stop()
