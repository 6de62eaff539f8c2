"""tenement.toml: parse, validate, and describe every key.

Settings are declared as data (name, type, default, help) so that `specs/config.md` and the checks
stay in step with the code; a test fails when a key is undocumented. Errors name the file, the line
and the key, and never carry a traceback to the user.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slum.errors import BadRequest, ConfigError

DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
RESTART_POLICIES = ("always", "on-failure", "never")


@dataclass(frozen=True)
class Key:
    name: str
    kind: type | tuple[type, ...]
    default: Any
    help: str
    minimum: float | None = None


SETTINGS_KEYS: tuple[Key, ...] = (
    Key("data_dir", str, "./data", "Root of per-instance data dirs: {data_dir}/{service}/{id}. "
        "Relative to the config file."),
    Key("health_check_interval", (int, float), 10, "Seconds between health checks of a running "
        "instance.", 0.05),
    Key("max_restarts", int, 3, "Restarts allowed within restart_window before the instance is "
        "`failed` until an operator acts.", 0),
    Key("restart_window", (int, float), 300, "Seconds over which restarts are counted.", 1),
    Key("backoff_base_ms", int, 1000, "First delay before a restart; doubles each time, with "
        "jitter.", 0),
    Key("backoff_max_ms", int, 60000, "Upper bound of the restart delay.", 0),
    Key("stop_grace_s", (int, float), 10, "Seconds between SIGTERM and SIGKILL when stopping.", 0),
    Key("log_retention_days", (int, float), 7, "Log lines older than this are deleted.", 0),
    Key("log_max_mb", int, 1024, "Total size of stored logs; the oldest lines go first.", 1),
    Key("max_held_requests", int, 100, "Requests held per waking instance; beyond it: 503.", 1),
    Key("max_body_mb", int, 0, "Largest request body the proxy accepts (0 = no limit); larger: "
        "413.", 0),
    Key("request_metrics", bool, True, "Count and time every request (a few microseconds each); "
        "false turns it off."),
    Key("node_check_interval", (int, float), 2, "Seconds between health checks of the fleet's "
        "other servers; two failures in a row mark one offline.", 0.1),
    Key("connect_timeout_s", (int, float), 5, "Seconds to connect to an upstream; then 502.", 0.01),
    Key("response_timeout_s", (int, float), 60, "Seconds to wait for an upstream's response "
        "head; then 504.", 0.01),
    Key("upstream_idle_timeout_s", (int, float), 300, "Seconds an upstream may stay silent in "
        "the middle of a response before the response is ended.", 0.01),
    Key("public_metrics", bool, False, "Serve GET /metrics (Prometheus) without a token."),
)

SERVICE_KEYS: tuple[Key, ...] = (
    Key("command", (str, list), None, "Program to run: a string (shell-split, not run by a shell) "
        "or a list. Required."),
    Key("args", list, [], "Extra arguments appended to command."),
    Key("health", str, None, "HTTP path checked with GET (2xx/3xx = healthy); absent = TCP connect "
        "check."),
    Key("idle_timeout", (int, float), 0, "Seconds without requests before the instance is stopped "
        "(0 = never); the next request wakes it.", 0),
    Key("startup_timeout", (int, float), 10, "Seconds to become healthy after start; a held "
        "request gets 503 after this.", 0.1),
    Key("restart", str, "on-failure", "always | on-failure | never."),
    Key("workdir", str, ".", "Working directory of the process, relative to the config file."),
    Key("memory_limit_mb", int, None, "Memory limit (cgroup v2 where available, else a warning).",
        1),
    Key("env", dict, {}, "Environment variables; {name} {id} {data_dir} {port} interpolate."),
)

# Keys of tenement's format that slum accepts and ignores (with a warning), so configs move over.
TOLERATED_SERVICE_KEYS = {"socket", "isolation", "cpu_shares", "storage_quota_mb",
                          "storage_persist"}

_TYPE_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "list": "a list",
               "dict": "a table", "bool": "a boolean"}

TOP_KEYS = {"settings", "service", "instances", "routing"}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    health_check_interval: float = 10
    max_restarts: int = 3
    restart_window: float = 300
    backoff_base_ms: int = 1000
    backoff_max_ms: int = 60000
    stop_grace_s: float = 10
    log_retention_days: float = 7
    log_max_mb: int = 1024
    max_held_requests: int = 100
    max_body_mb: int = 0
    request_metrics: bool = True
    node_check_interval: float = 2
    connect_timeout_s: float = 5
    response_timeout_s: float = 60
    upstream_idle_timeout_s: float = 300
    public_metrics: bool = False


@dataclass(frozen=True)
class Service:
    name: str
    command: tuple[str, ...]
    health: str | None = None
    idle_timeout: float = 0
    startup_timeout: float = 10
    restart: str = "on-failure"
    workdir: Path = Path(".")
    memory_limit_mb: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    def argv(self, *, instance_id: str, port: int, data_dir: Path) -> list[str]:
        return [interpolate(a, self.name, instance_id, port, data_dir) for a in self.command]

    def environment(self, *, instance_id: str, port: int, data_dir: Path) -> dict[str, str]:
        return {k: interpolate(v, self.name, instance_id, port, data_dir)
                for k, v in self.env.items()}


@dataclass(frozen=True)
class Config:
    path: Path | None
    settings: Settings
    services: dict[str, Service]
    instances: dict[str, tuple[str, ...]]
    default_service: str | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "path": str(self.path) if self.path else None,
            "settings": {k.name: (str(getattr(s, k.name)) if k.name == "data_dir"
                                  else getattr(s, k.name)) for k in SETTINGS_KEYS},
            "service": {
                name: {
                    "command": list(svc.command), "health": svc.health,
                    "idle_timeout": svc.idle_timeout, "startup_timeout": svc.startup_timeout,
                    "restart": svc.restart, "workdir": str(svc.workdir),
                    "memory_limit_mb": svc.memory_limit_mb, "env": dict(svc.env),
                }
                for name, svc in self.services.items()
            },
            "instances": {k: list(v) for k, v in self.instances.items()},
            "routing": {"default": self.default_service},
            "warnings": list(self.warnings),
        }


def empty_config(data_dir: Path | None = None) -> Config:
    """No tenement.toml: a fleet router with no local processes."""
    return Config(None, Settings(data_dir=data_dir or Path("data").absolute()), {}, {})


_PLACEHOLDER = re.compile(r"\{(name|id|data_dir|port)\}")


def interpolate(value: str, name: str, instance_id: str, port: int, data_dir: Path) -> str:
    values = {"name": name, "id": instance_id, "port": str(port), "data_dir": str(data_dir)}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], value)


def check_label(value: str, what: str) -> str:
    """Service names and instance ids are DNS labels: they end up in hostnames and paths."""
    if not isinstance(value, str) or not DNS_LABEL.fullmatch(value):
        raise BadRequest(
            f"invalid {what} {value!r}: use 1-63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def parse_instance_ref(ref: str) -> tuple[str, str]:
    """'notes:alice' -> ('notes', 'alice'), both validated."""
    service, sep, instance_id = ref.partition(":")
    if not sep:
        raise BadRequest(f"invalid instance {ref!r}: expected SERVICE:ID, like notes:alice")
    return check_label(service, "service name"), check_label(instance_id, "instance id")


class _Locator:
    """Finds the line of `[table] key = ...` in the source, for error messages."""

    _header = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def line(self, table: str, key: str | None = None) -> int | None:
        current = ""
        header_line = None
        for number, raw in enumerate(self.lines, start=1):
            m = self._header.match(raw)
            if m:
                current = ".".join(p.strip().strip("\"'") for p in m.group(1).split("."))
                if current == table:
                    header_line = number
                continue
            if key is not None and current == table and re.match(
                    rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", raw):
                return number
        if key is not None and table:
            # `[service]` + `notes.command = ...` or an inline table: fall back to the parent.
            parent, _, last = table.rpartition(".")
            dotted = self.line(parent, f"{last}.{key}") if parent else None
            if dotted is not None:
                return dotted
        return header_line


def load(path: str | os.PathLike[str]) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read: {e}") from None
    return parse(text, p)


def parse(text: str, path: Path | None = None) -> Config:
    where = str(path) if path else "<config>"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: invalid TOML: {e}") from None
    loc = _Locator(text)
    base = path.parent.absolute() if path else Path.cwd()
    warnings: list[str] = []

    def fail(table: str, key: str | None, message: str) -> ConfigError:
        line = loc.line(table, key)
        at = f":{line}" if line else ""
        name = f"{table}.{key}" if key else table
        return ConfigError(f"{where}{at}: {name}: {message}")

    for top in raw:
        if top not in TOP_KEYS:
            raise fail(top, None, f"unknown section (expected one of {', '.join(sorted(TOP_KEYS))})")

    settings_raw = _table(raw, "settings", fail)
    values = _check_keys("settings", settings_raw, SETTINGS_KEYS, fail, set())
    if values["backoff_max_ms"] < values["backoff_base_ms"]:
        raise fail("settings", "backoff_max_ms", "must be >= backoff_base_ms")
    values["data_dir"] = (base / values["data_dir"]).absolute()
    settings = Settings(**values)

    services: dict[str, Service] = {}
    for name, svc_raw in _table(raw, "service", fail).items():
        table = f"service.{name}"
        if not DNS_LABEL.fullmatch(name):
            raise fail(table, None, "service names are DNS labels (lowercase letters, digits, '-')")
        if not isinstance(svc_raw, dict):
            raise fail(table, None, "must be a table")
        v = _check_keys(table, svc_raw, SERVICE_KEYS, fail, TOLERATED_SERVICE_KEYS)
        for key in TOLERATED_SERVICE_KEYS & svc_raw.keys():
            warnings.append(f"{where}: {table}.{key} is a tenement key that slum ignores")
        command = v["command"]
        if command is None:
            raise fail(table, None, "missing required key 'command'")
        if isinstance(command, str):
            try:
                argv = shlex.split(command)
            except ValueError as e:
                raise fail(table, "command", f"cannot split: {e}") from None
        else:
            argv = command
        argv = [*argv, *v["args"]]
        if not argv or not all(isinstance(a, str) and a for a in argv):
            raise fail(table, "command", "must be a non-empty string or list of strings")
        health = v["health"]
        if health is not None and not health.startswith("/"):
            raise fail(table, "health", "must be an HTTP path starting with '/'")
        if v["restart"] not in RESTART_POLICIES:
            raise fail(table, "restart", f"must be one of {', '.join(RESTART_POLICIES)}")
        env = v["env"]
        for k, ev in env.items():
            if not isinstance(ev, str | int | float | bool):
                raise fail(f"{table}.env", k, "values must be strings or numbers")
        services[name] = Service(
            name=name,
            command=tuple(argv),
            health=health,
            idle_timeout=float(v["idle_timeout"]),
            startup_timeout=float(v["startup_timeout"]),
            restart=v["restart"],
            workdir=(base / v["workdir"]).absolute(),
            memory_limit_mb=v["memory_limit_mb"],
            env={k: (str(ev).lower() if isinstance(ev, bool) else str(ev)) for k, ev in env.items()},
        )

    instances: dict[str, tuple[str, ...]] = {}
    for svc_name, ids in _table(raw, "instances", fail).items():
        if svc_name not in services:
            raise fail("instances", svc_name, f"no [service.{svc_name}] is defined")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise fail("instances", svc_name, "must be a list of instance ids")
        for i in ids:
            if not DNS_LABEL.fullmatch(i):
                raise fail("instances", svc_name, f"invalid instance id {i!r} (DNS label)")
        instances[svc_name] = tuple(dict.fromkeys(ids))

    routing = _table(raw, "routing", fail)
    for key in routing:
        if key != "default":
            raise fail("routing", key, "unknown key (expected 'default')")
    default = routing.get("default")
    if default is not None and default not in services:
        raise fail("routing", "default", f"no [service.{default}] is defined")

    return Config(path.absolute() if path else None, settings, services, instances, default,
                  tuple(warnings))


def _table(raw: dict[str, Any], name: str, fail: Any) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise fail(name, None, "must be a table")
    return value


def _check_keys(table: str, raw: dict[str, Any], keys: tuple[Key, ...], fail: Any,
                tolerated: set[str]) -> dict[str, Any]:
    known = {k.name: k for k in keys}
    for name in raw:
        if name not in known and name not in tolerated:
            raise fail(table, name, f"unknown key (expected one of {', '.join(sorted(known))})")
    out: dict[str, Any] = {}
    for k in keys:
        if k.name not in raw:
            out[k.name] = k.default
            continue
        value = raw[k.name]
        kinds = k.kind if isinstance(k.kind, tuple) else (k.kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            expected = " or ".join(_TYPE_WORDS.get(t.__name__, t.__name__) for t in kinds)
            got = _TYPE_WORDS.get(type(value).__name__, type(value).__name__)
            raise fail(table, k.name, f"must be {expected}, not {got}")
        if k.minimum is not None and value < k.minimum:  # type: ignore[operator]
            raise fail(table, k.name, f"must be >= {k.minimum:g}")
        out[k.name] = value
    return out

