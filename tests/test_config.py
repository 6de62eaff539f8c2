from __future__ import annotations

import re
from pathlib import Path

import pytest

from slum import config as cfg
from slum.errors import BadRequest, ConfigError

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[settings]
data_dir = "./d"
max_restarts = 5
request_metrics = false

[service.notes]
command = "python3 app.py --port {port}"
args = ["--name", "{name}-{id}"]
health = "/health"
idle_timeout = 300

[service.notes.env]
DATA_DIR = "{data_dir}/{id}"
DEBUG = true
WORKERS = 2

[instances]
notes = ["demo", "demo", "b"]

[routing]
default = "notes"
"""


def test_parses_and_interpolates(tmp_path: Path) -> None:
    c = cfg.parse(GOOD, tmp_path / "tenement.toml")
    assert c.settings.data_dir == tmp_path / "d"
    assert c.settings.max_restarts == 5 and c.settings.restart_window == 300
    assert c.settings.request_metrics is False
    svc = c.services["notes"]
    assert svc.argv(instance_id="x", port=7, data_dir=Path("/d")) == [
        "python3",
        "app.py",
        "--port",
        "7",
        "--name",
        "notes-x",
    ]
    assert svc.environment(instance_id="x", port=7, data_dir=Path("/d")) == {
        "DATA_DIR": "/d/x",
        "DEBUG": "true",
        "WORKERS": "2",
    }
    assert svc.workdir == tmp_path
    assert c.instances == {"notes": ("demo", "b")}
    assert c.default_service == "notes"
    assert c.to_dict()["service"]["notes"]["health"] == "/health"


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        cfg.parse(text, Path("/etc/slum/tenement.toml"), strict=True)
    return info.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[service.a\ncommand='x'", r"tenement.toml: invalid TOML: .*line 1"),
        ("[settings]\nbogus = 1\n", r"tenement.toml:2: settings.bogus: unknown key"),
        ("[service.web]\nhealth = '/h'\n", r"tenement.toml:1: service.web: missing required key 'command'"),
        (
            "[service.web]\ncommand = 'x'\n\nrestart = 'sometimes'\n",
            r":4: service.web.restart: must be one of",
        ),
        ("[service.Web]\ncommand = 'x'\n", r":1: service.Web: service names are DNS labels.*'web'"),
        (
            "[service.web]\ncommand = 'x'\n[instances]\nweb = ['../x']\n",
            r":4: instances.web: invalid instance id",
        ),
        (
            "[service.web]\ncommand = 'x'\n[instances]\nother = ['a']\n",
            r":4: instances.other: no \[service.other\]",
        ),
        (
            "[settings]\nmax_restarts = 'three'\n",
            r":2: settings.max_restarts: must be an integer, not a string",
        ),
        ("[settings]\nhealth_check_interval = -1\n", r":2: settings.health_check_interval: must be >="),
        (
            "[service.web]\ncommand = 'x'\nhealth = 'health'\n",
            r":3: service.web.health: must be an HTTP path",
        ),
        ("[service.web]\ncommand = []\n", r":2: service.web.command: must be a non-empty"),
        ("[service.web]\ncommand = 'x \"unclosed'\n", r":2: service.web.command: cannot split"),
        ("[routing]\ndefault = 'nope'\n", r":2: routing.default: no \[service.nope\]"),
        ("[server]\nx = 1\n", r":1: server: unknown section"),
        ("[settings]\nbackoff_base_ms = 5000\nbackoff_max_ms = 100\n", r":3: settings.backoff_max_ms"),
    ],
)
def test_errors_name_file_line_and_key(text: str, expected: str) -> None:
    assert re.search(expected, error_of(text)), error_of(text)


def test_tenement_keys_are_tolerated_with_a_warning() -> None:
    c = cfg.parse("[service.api]\ncommand = 'x'\nport = 3000\n")
    assert "service.api.port" in c.warnings[0] and "api" in c.services


def test_unknown_keys_warn_by_default_and_fail_when_strict() -> None:
    text = "[settings]\nbogus = 1\n[service.api]\ncommand = 'x'\nfoo = 2\n[extra]\na = 1\n"
    c = cfg.parse(text, Path("t.toml"))
    assert [w.split(": ")[1] for w in c.warnings] == ["extra", "settings.bogus", "service.api.foo"]
    assert all("ignored" in w for w in c.warnings)
    with pytest.raises(ConfigError, match=r"t.toml:6: extra: unknown section .*--strict"):
        cfg.parse(text, Path("t.toml"), strict=True)


def test_socket_is_interpolated() -> None:
    c = cfg.parse(
        "[service.api]\ncommand = 'app --listen {socket}'\n"
        "socket = '/run/x/{name}-{id}.sock'\n[service.api.env]\nS = '{socket}'\n"
    )
    svc = c.services["api"]
    assert svc.argv(instance_id="a", port=1, data_dir=Path("/d")) == ["app", "--listen", "/run/x/api-a.sock"]
    assert svc.environment(instance_id="a", port=1, data_dir=Path("/d")) == {"S": "/run/x/api-a.sock"}


def test_tenement_names_are_refused_with_a_rename() -> None:
    with pytest.raises(ConfigError, match=r"service.user_code: .*rename it to 'user-code'"):
        cfg.parse("[service.user_code]\ncommand = 'x'\n")
    with pytest.raises(ConfigError, match=r"instances.api: .*'wr_a'.*rename it to 'wr-a'"):
        cfg.parse("[service.api]\ncommand = 'x'\n[instances]\napi = ['wr_a']\n")


def test_data_dir_defaults_to_tenements_and_refuses_tilde(tmp_path: Path) -> None:
    # As tenement 0.2.2: the default is relative to where it runs, not to the file.
    c = cfg.parse("[service.api]\ncommand = 'x'\n", tmp_path / "tenement.toml")
    assert c.settings.data_dir == Path.cwd() / "tenement-data"
    written = cfg.parse("[settings]\ndata_dir = 'd'\n", tmp_path / "tenement.toml")
    assert written.settings.data_dir == tmp_path / "d"
    with pytest.raises(ConfigError, match=r":2: settings.data_dir: '~/x' starts with '~'"):
        cfg.parse("[settings]\ndata_dir = '~/x'\n")
    override = cfg.parse(
        "[settings]\ndata_dir = '~/x'\n", tmp_path / "t.toml", data_dir=str(tmp_path / "elsewhere")
    )
    assert override.settings.data_dir == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    ("value", "ok"),
    [("30000-40000", True), ("2000-2000", True), ("40000-30000", False), ("80-90", False), ("x", False)],
)
def test_port_range(value: str, ok: bool) -> None:
    text = f"[settings]\nport_range = '{value}'\n"
    if ok:
        lo, hi = value.split("-")
        assert cfg.parse(text).settings.port_range == (int(lo), int(hi))
    else:
        with pytest.raises(ConfigError, match=r"settings\.port_range"):
            cfg.parse(text)


def test_find_config_walks_up(tmp_path: Path) -> None:
    (tmp_path / "tenement.toml").write_text("")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert cfg.find_config(deep) == tmp_path / "tenement.toml"


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="no such file"):
        cfg.load("/nonexistent/tenement.toml")


@pytest.mark.parametrize("bad", ["../x", "Alice", "a_b", "-a", "a-", "", "a" * 64, "a.b"])
def test_labels_refuse(bad: str) -> None:
    with pytest.raises(BadRequest):
        cfg.check_label(bad, "instance id")


def test_instance_ref() -> None:
    assert cfg.parse_instance_ref("notes:alice") == ("notes", "alice")
    with pytest.raises(BadRequest, match="expected SERVICE:ID"):
        cfg.parse_instance_ref("notes")
    with pytest.raises(BadRequest):
        cfg.parse_instance_ref("notes:../x")


def test_every_key_is_documented() -> None:
    doc = (ROOT / "specs" / "config.md").read_text()
    for key in cfg.SETTINGS_KEYS + cfg.SERVICE_KEYS:
        assert f"`{key.name}`" in doc, f"{key.name} is not documented in specs/config.md"


def test_example_config_is_valid() -> None:
    c = cfg.load(ROOT / "examples" / "notes" / "tenement.toml")
    assert c.instances == {"notes": ("demo",)}


def test_control_socket_path(tmp_path: Path) -> None:
    from slum.client import control_socket_path

    assert control_socket_path(tmp_path / "slum.db") == tmp_path / "slum.sock"
    deep = tmp_path / ("x" * 120) / "slum.db"
    long_path = control_socket_path(deep)
    assert len(str(long_path)) < 108 and long_path == control_socket_path(deep)
