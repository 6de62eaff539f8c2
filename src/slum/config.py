"""tenement.toml: parse, validate, and describe every key.

Settings are declared as data (name, type, default, help) so that `specs/config.md` and the checks
stay in step with the code; a test fails when a key is undocumented. Errors name the file, the line
and the key, and never carry a traceback to the user.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field, replace
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
    Key(
        "data_dir",
        str,
        "./tenement-data",
        "Root of per-instance data dirs: "
        "{data_dir}/{service}/{id}. Relative to the config file; the default is tenement's, "
        "relative to the directory slum runs in as in tenement, so a config moved over finds "
        "its tenants' data. A leading `~` is refused (it is not expanded).",
    ),
    Key(
        "health_check_interval",
        (int, float),
        10,
        "Seconds between health checks of a running instance.",
        0.05,
    ),
    Key(
        "max_restarts",
        int,
        3,
        "Restarts allowed within restart_window before the instance is `failed` until an operator acts.",
        0,
    ),
    Key("restart_window", (int, float), 300, "Seconds over which restarts are counted.", 1),
    Key("backoff_base_ms", int, 1000, "First delay before a restart; doubles each time, with jitter.", 0),
    Key("backoff_max_ms", int, 60000, "Upper bound of the restart delay.", 0),
    Key("stop_grace_s", (int, float), 10, "Seconds between SIGTERM and SIGKILL when stopping.", 0),
    Key("log_retention_days", (int, float), 7, "Log lines older than this are deleted.", 0),
    Key("log_max_mb", int, 1024, "Total size of stored logs; the oldest lines go first.", 1),
    Key(
        "log_rate_kb",
        int,
        256,
        "Per instance: KiB a second of stdout and stderr that slum takes in (4 s of it at once); "
        "past it the app's writes wait on its pipe, nothing is dropped. 0 = no limit.",
        0,
    ),
    Key("max_held_requests", int, 100, "Requests held per waking instance; beyond it: 503.", 1),
    Key("max_body_mb", int, 0, "Largest request body the proxy accepts (0 = no limit); larger: 413.", 0),
    Key(
        "request_metrics",
        bool,
        True,
        "Count and time every request (a few microseconds each); false turns it off.",
    ),
    Key(
        "node_check_interval",
        (int, float),
        2,
        "Seconds between health checks of the fleet's other servers; two failures in a row mark one offline.",
        0.1,
    ),
    Key("connect_timeout_s", (int, float), 5, "Seconds to connect to an upstream; then 502.", 0.01),
    Key(
        "response_timeout_s",
        (int, float),
        60,
        "Seconds to wait for an upstream's response head; then 504.",
        0.01,
    ),
    Key(
        "upstream_idle_timeout_s",
        (int, float),
        300,
        "Seconds an upstream may stay silent in the middle of a response before the response is ended.",
        0.01,
    ),
    Key("public_metrics", bool, False, "Serve GET /metrics (Prometheus) without a token."),
    Key(
        "trusted_proxies",
        list,
        [],
        "Addresses or networks of proxies in front of slum (e.g. "
        "Caddy): X-Forwarded-For and X-Forwarded-Proto are believed only from these.",
    ),
    Key(
        "port_range",
        str,
        "30000-40000",
        "Ports handed to instances (PORT), as `LOW-HIGH` "
        "(tenement's range by default); checked against the OS's ephemeral port range.",
    ),
    Key(
        "auto_spawn_per_minute",
        int,
        30,
        "New ids a service with auto_spawn may start per "
        "minute, so a scan of random subdomains cannot start thousands of processes.",
        1,
    ),
    Key(
        "header_timeout",
        (int, float),
        30,
        "Seconds a client has to send a request head (from "
        "its first byte, or from the connection for the first request); then 408 and close.",
        0.01,
    ),
    Key(
        "keepalive_timeout",
        (int, float),
        60,
        "Seconds an idle keep-alive client connection stays open.",
        0.01,
    ),
    Key(
        "body_timeout",
        (int, float),
        60,
        "Seconds a request body may pause between two reads "
        "(then 408 and close), and a client may take none of its response (then close).",
        0.01,
    ),
    Key(
        "max_connections",
        int,
        0,
        "Concurrent client connections; at the cap new ones wait in "
        "the listen backlog. 0 = derived from the open-files limit (raised to the hard limit).",
        0,
    ),
    Key(
        "registry",
        str,
        "",
        "Where the fleet registry (servers, tenants, aliases, node "
        "tokens) lives: empty = this node's database (SQLite); `etcd://HOST:PORT[,HOST:PORT...]` "
        "(optionally with a key prefix, `.../slum/` by default) = an etcd cluster that several "
        "routers share, so that losing one loses no tenant. `serve --registry` overrides it.",
    ),
    Key(
        "shutdown_grace",
        (int, float),
        10,
        "Seconds requests in flight get to finish on SIGTERM, after the edge stops accepting.",
        0,
    ),
)

SERVICE_KEYS: tuple[Key, ...] = (
    Key(
        "command",
        (str, list),
        None,
        "Program to run: a string (shell-split, not run by a shell) or a list. Required.",
    ),
    Key("args", list, [], "Extra arguments appended to command."),
    Key("health", str, None, "HTTP path checked with GET (2xx/3xx = healthy); absent = TCP connect check."),
    Key(
        "idle_timeout",
        (int, float),
        0,
        "Seconds without requests before the instance is stopped (0 = never); the next request wakes it.",
        0,
    ),
    Key(
        "startup_timeout",
        (int, float),
        10,
        "Seconds to become healthy after start; a held request gets 503 after this.",
        0.1,
    ),
    Key("restart", str, "on-failure", "always | on-failure | never."),
    Key("workdir", str, ".", "Working directory of the process, relative to the config file."),
    Key(
        "memory_limit_mb",
        int,
        None,
        "Memory limit of the instance's whole process tree, in MB "
        "(0 = unlimited); at it the kernel kills a process: `killed: out of memory`. Enforced "
        "through the instance's cgroup; where it cannot be, the spawn is refused.",
        0,
    ),
    Key(
        "memory_swap_max",
        int,
        None,
        "Swap the instance may use beyond memory_limit_mb, in MB (absent with a memory limit = none).",
        0,
    ),
    Key(
        "cpu_shares",
        int,
        None,
        "CPU weight against the other instances when the CPU is busy "
        "(100 = the default; clamped to 1-10000).",
        1,
    ),
    Key(
        "pids_max",
        int,
        None,
        "Most processes and threads the instance may have at once (a fork bomb stops there).",
        1,
    ),
    Key(
        "isolation",
        str,
        "process",
        "process | namespace (own PID and mount namespaces, private /tmp) | sandbox (gVisor's runsc).",
    ),
    Key("env", dict, {}, "Environment variables; {name} {id} {data_dir} {port} {socket} interpolate."),
    Key(
        "socket",
        str,
        None,
        "Unix socket path given to the app as SOCKET_PATH and {socket} "
        "(default: a per-user runtime dir); an app that listens there instead of on PORT is "
        "proxied over the socket.",
    ),
    Key(
        "request_timeout",
        (int, float),
        None,
        "Seconds to wait for this service's response "
        "head; then 504 (default: [settings] response_timeout_s).",
        0.01,
    ),
    Key("storage_persist", bool, True, "false: the instance's data dir is deleted when it stops."),
    Key(
        "storage_quota_mb",
        int,
        None,
        "Data dir size to warn about: measured every minute; "
        "past 80% and 100% `ps`, status and the instance's JSON say so.",
        1,
    ),
    Key(
        "auto_spawn",
        bool,
        False,
        "Start `{id}.{service}.{domain}` for an unknown (valid) id on "
        "its first request, as tenement does; bounded by max_instances and "
        "[settings] auto_spawn_per_minute.",
    ),
    Key("max_instances", int, 0, "Most instances of this service auto_spawn may create (0 = no limit).", 0),
)

# Keys of tenement's format that slum accepts but does not act on, and what it does instead.
TOLERATED_SERVICE_KEYS = {
    "runtime": "slum runs each instance as a process in its own process group",
    "port": "each instance gets its own free port in PORT (from [settings] port_range), so "
    "more than one instance of the service can run",
    "kernel": "Firecracker VMs are not supported: the service runs as a process",
    "rootfs": "Firecracker VMs are not supported: the service runs as a process",
    "memory_mb": "Firecracker VMs are not supported: use memory_limit_mb",
    "vcpus": "Firecracker VMs are not supported: the service runs as a process",
    "vsock_port": "Firecracker VMs are not supported: the service talks over PORT or its socket",
}
TOLERATED_SETTINGS = {
    "tls": "slum does not terminate TLS: put Caddy in front (`slum caddy` writes its config)",
}
TOLERATED_ROUTING = {
    "subdomain": "slum routes `{id}.{service}` and `{service}` subdomains itself",
    "path": "slum routes by host name only (`{id}.{service}`, `{service}`, custom domains)",
}
ISOLATION_MODES = ("process", "namespace", "sandbox")

_TYPE_WORDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "list": "a list",
    "dict": "a table",
    "bool": "a boolean",
}

TOP_KEYS = {"settings", "service", "process", "instances", "routing", "alerts"}

ALERT_FORMATS = ("json", "slack", "ntfy")
ALERT_EVENTS = (
    "instance_failed",
    "crash_loop",
    "health_flapping",
    "node_offline",
    "disk_full",
    "logs_dropped",
    "registry_down",
)
ALERT_KEYS: tuple[Key, ...] = (
    Key("url", str, None, "Webhook URL (http or https) the alert is POSTed to. Required."),
    Key("format", str, "json", "json | slack | ntfy: the body the receiver expects."),
    Key("events", list, [], "Only these events (default: all): " + ", ".join(ALERT_EVENTS) + "."),
    Key(
        "min_interval",
        (int, float),
        300,
        "Seconds before the same event for the same subject "
        "is sent again (a new episode sooner is counted, not sent).",
        0,
    ),
)


@dataclass(frozen=True)
class AlertRule:
    url: str
    format: str = "json"
    events: tuple[str, ...] = ()
    min_interval: float = 300


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
    log_rate_kb: int = 256
    max_held_requests: int = 100
    max_body_mb: int = 0
    request_metrics: bool = True
    node_check_interval: float = 2
    connect_timeout_s: float = 5
    response_timeout_s: float = 60
    upstream_idle_timeout_s: float = 300
    public_metrics: bool = False
    trusted_proxies: tuple[str, ...] = ()
    port_range: tuple[int, int] = (30000, 40000)
    auto_spawn_per_minute: int = 30
    header_timeout: float = 30
    keepalive_timeout: float = 60
    body_timeout: float = 60
    max_connections: int = 0
    registry: str = ""
    shutdown_grace: float = 10


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
    memory_swap_max: int | None = None
    cpu_shares: int | None = None
    pids_max: int | None = None
    isolation: str = "process"
    env: dict[str, str] = field(default_factory=dict)
    socket: str | None = None
    request_timeout: float | None = None
    storage_persist: bool = True
    storage_quota_mb: int | None = None
    auto_spawn: bool = False
    max_instances: int = 0

    def socket_path(self, instance_id: str, data_dir: Path) -> str:
        if self.socket:
            return interpolate(self.socket, self.name, instance_id, 0, data_dir)
        # One directory per data_dir: two slums on one machine may both run `web:one`.
        digest = hashlib.sha256(os.fsencode(data_dir)).hexdigest()[:10]
        # A directory per instance: a namespaced instance is shown its own, not its neighbours'.
        return str(runtime_dir() / f"sockets-{digest}" / f"{self.name}-{instance_id}" / "app.sock")

    def argv(self, *, instance_id: str, port: int, data_dir: Path) -> list[str]:
        sock = self.socket_path(instance_id, data_dir)
        return [interpolate(a, self.name, instance_id, port, data_dir, sock) for a in self.command]

    def environment(self, *, instance_id: str, port: int, data_dir: Path) -> dict[str, str]:
        sock = self.socket_path(instance_id, data_dir)
        return {k: interpolate(v, self.name, instance_id, port, data_dir, sock) for k, v in self.env.items()}


@dataclass(frozen=True)
class Config:
    path: Path | None
    settings: Settings
    services: dict[str, Service]
    instances: dict[str, tuple[str, ...]]
    default_service: str | None = None
    warnings: tuple[str, ...] = ()
    alerts: tuple[AlertRule, ...] = ()

    @property
    def tenant_service(self) -> str | None:
        """The service of a tenant registered without one: `[routing] default`, else the only
        service there is. Routing and the fleet's stop of a departing tenant both ask here."""
        if self.default_service:
            return self.default_service
        if len(self.services) == 1:
            return next(iter(self.services))
        return None

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "path": str(self.path) if self.path else None,
            "settings": {k.name: _setting_value(s, k.name) for k in SETTINGS_KEYS},
            "service": {
                name: {
                    "command": list(svc.command),
                    "health": svc.health,
                    "idle_timeout": svc.idle_timeout,
                    "startup_timeout": svc.startup_timeout,
                    "restart": svc.restart,
                    "workdir": str(svc.workdir),
                    "memory_limit_mb": svc.memory_limit_mb,
                    "memory_swap_max": svc.memory_swap_max,
                    "cpu_shares": svc.cpu_shares,
                    "pids_max": svc.pids_max,
                    "isolation": svc.isolation,
                    "env": dict(svc.env),
                    "socket": svc.socket,
                    "request_timeout": svc.request_timeout,
                    "storage_persist": svc.storage_persist,
                    "storage_quota_mb": svc.storage_quota_mb,
                    "auto_spawn": svc.auto_spawn,
                    "max_instances": svc.max_instances,
                }
                for name, svc in self.services.items()
            },
            "instances": {k: list(v) for k, v in self.instances.items()},
            "routing": {"default": self.default_service},
            # Webhook URLs can carry secrets (Slack's do): show where they go, not the path.
            "alerts": [
                {
                    "url": _redact_url(a.url),
                    "format": a.format,
                    "events": list(a.events),
                    "min_interval": a.min_interval,
                }
                for a in self.alerts
            ],
            "warnings": list(self.warnings),
        }


def _setting_value(s: Settings, name: str) -> Any:
    value = getattr(s, name)
    if name == "data_dir":
        return str(value)
    if name == "port_range":
        return f"{value[0]}-{value[1]}"
    return value


def empty_config(data_dir: Path | None = None) -> Config:
    """No tenement.toml: a fleet router with no local processes."""
    return Config(None, Settings(data_dir=data_dir or Path("tenement-data").absolute()), {}, {})


CONFIG_NAME = "tenement.toml"


def find_config(start: Path | None = None) -> Path | None:
    """tenement.toml in the current directory or the nearest parent, as tenement finds it."""
    here = (start or Path.cwd()).absolute()
    for directory in (here, *here.parents):
        candidate = directory / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def runtime_dir() -> Path:
    """A per-user directory for sockets (unix socket paths must stay under 108 bytes)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "slum" if xdg else Path(f"/tmp/slum-{os.getuid()}")


_PLACEHOLDER = re.compile(r"\{(name|id|data_dir|port|socket)\}")


def interpolate(value: str, name: str, instance_id: str, port: int, data_dir: Path, socket: str = "") -> str:
    values = {"name": name, "id": instance_id, "port": str(port), "data_dir": str(data_dir), "socket": socket}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], value)


def suggest_label(value: str) -> str:
    """What a tenement name (`user_code`, `API`) becomes as a DNS label."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", value.lower())).strip("-")[:63] or "x"


def parse_port_range(value: str) -> tuple[int, int]:
    low, sep, high = value.partition("-")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        raise BadRequest(f"{value!r} is not LOW-HIGH, like 30000-40000") from None
    if not sep or not 1024 <= lo <= hi <= 65535:
        raise BadRequest(f"{value!r}: want 1024 <= LOW <= HIGH <= 65535")
    return lo, hi


def check_label(value: str, what: str) -> str:
    """Service names and instance ids are DNS labels: they end up in hostnames and paths."""
    if not isinstance(value, str) or not DNS_LABEL.fullmatch(value):
        hint = ""
        # Only for names tenement takes (`user_code`, `API`), not for paths or junk.
        if (
            isinstance(value, str)
            and re.fullmatch(r"[A-Za-z0-9_-]{1,63}", value)
            and DNS_LABEL.fullmatch(suggest_label(value))
        ):
            hint = f" (it becomes a host name: try {suggest_label(value)!r})"
        raise BadRequest(
            f"invalid {what} {value!r}: use 1-63 lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit{hint}"
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

    _header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")  # [t] or [[t]]

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
            if (
                key is not None
                and current == table
                and re.match(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", raw)
            ):
                return number
        if key is not None and table:
            # `[service]` + `notes.command = ...` or an inline table: fall back to the parent.
            parent, _, last = table.rpartition(".")
            dotted = self.line(parent, f"{last}.{key}") if parent else None
            if dotted is not None:
                return dotted
        return header_line


def load(path: str | os.PathLike[str], *, strict: bool = False, data_dir: str | None = None) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read: {e}") from None
    config = parse(text, p, strict=strict, data_dir=data_dir)
    clash = ephemeral_overlap(config.settings.port_range)
    if clash:
        config = replace(config, warnings=(*config.warnings, f"{p}: settings.port_range: {clash}"))
    return config


def ephemeral_overlap(
    port_range: tuple[int, int], source: str = "/proc/sys/net/ipv4/ip_local_port_range"
) -> str | None:
    """The OS hands out ports of ip_local_port_range to outgoing connections: an instance port
    range inside it competes with every connection the machine opens (slum skips a taken port,
    but an instance restarting may then move)."""
    try:
        low, high = (int(x) for x in Path(source).read_text().split())
    except (OSError, ValueError):
        return None
    lo, hi = port_range
    if low <= lo and hi <= high:
        return (
            f"{lo}-{hi} lies inside the OS's ephemeral port range {low}-{high} "
            "(net.ipv4.ip_local_port_range): pick a range outside it"
        )
    return None


def parse(
    text: str, path: Path | None = None, *, strict: bool = False, data_dir: str | None = None
) -> Config:
    """`strict`: unknown keys are errors (tenement ignores them, so by default they are warnings).
    `data_dir`: overrides [settings] data_dir (tenement's --data-dir / TENEMENT_DATA_DIR)."""
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

    def unknown(table: str, key: str | None, message: str) -> None:
        if strict:
            raise fail(table, key, f"{message} (refused by --strict)")
        line = loc.line(table, key)
        name = f"{table}.{key}" if key else table
        warnings.append(f"{where}{f':{line}' if line else ''}: {name}: {message}; ignored")

    def tolerate(table: str, key: str, instead: str) -> None:
        line = loc.line(table, key)
        warnings.append(
            f"{where}{f':{line}' if line else ''}: {table}.{key}: "
            f"a tenement key slum does not act on: {instead}"
        )

    for top in raw:
        if top not in TOP_KEYS:
            unknown(top, None, f"unknown section (expected one of {', '.join(sorted(TOP_KEYS))})")

    settings_raw = _table(raw, "settings", fail)
    values = _check_keys("settings", settings_raw, SETTINGS_KEYS, fail, unknown, TOLERATED_SETTINGS, tolerate)
    if values["backoff_max_ms"] < values["backoff_base_ms"]:
        raise fail("settings", "backoff_max_ms", "must be >= backoff_base_ms")
    try:
        values["port_range"] = parse_port_range(values["port_range"])
    except BadRequest as e:
        raise fail("settings", "port_range", e.message) from None
    registry = values["registry"].strip()
    if registry and not registry.startswith("etcd://"):
        raise fail(
            "settings",
            "registry",
            f"{registry!r}: expected etcd://HOST:PORT[,HOST:PORT...] (or nothing, for this node's database)",
        )
    values["registry"] = registry
    if data_dir is not None:
        values["data_dir"] = Path(data_dir).absolute()  # from the command line: the cwd's
    elif values["data_dir"].startswith("~"):
        # Not expanded by tenement either: a directory literally named `~` would be created.
        raise fail(
            "settings",
            "data_dir",
            f"{values['data_dir']!r} starts with '~', which is "
            "not expanded: write an absolute path (e.g. /home/you/tenement-data)",
        )
    # tenement's default is relative to the directory it runs in (tenement 0.2.2 started from a
    # subdirectory makes ./tenement-data there): the default does the same, so a project that
    # never set data_dir finds its tenants' data. A data_dir written in the file stays relative
    # to the file, so the same file works from anywhere.
    written = data_dir is not None or "data_dir" in settings_raw
    values["data_dir"] = ((base if written else Path.cwd()) / values["data_dir"]).absolute()
    settings = Settings(**values)

    services: dict[str, Service] = {}
    # tenement's older name for [service.X]: both are read, a name in both is ambiguous.
    sections = [("service", n, v) for n, v in _table(raw, "service", fail).items()]
    for name, svc_raw in _table(raw, "process", fail).items():
        if name in _table(raw, "service", fail):
            raise fail(
                f"process.{name}", None, f"defined in both [service.{name}] and [process.{name}]: keep one"
            )
        sections.append(("process", name, svc_raw))
    for section, name, svc_raw in sections:
        table = f"{section}.{name}"
        if not DNS_LABEL.fullmatch(name):
            raise fail(
                table,
                None,
                f"service names are DNS labels (lowercase letters, digits, "
                f"'-'): slum routes {{id}}.{{service}} subdomains by them, and a hostname "
                f"cannot hold {name!r}; rename it to {suggest_label(name)!r}",
            )
        if not isinstance(svc_raw, dict):
            raise fail(table, None, "must be a table")
        v = _check_keys(table, svc_raw, SERVICE_KEYS, fail, unknown, TOLERATED_SERVICE_KEYS, tolerate)
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
        if v["isolation"] == "firecracker":
            # Running it as a plain process instead would be less isolation than asked for.
            raise fail(
                table,
                "isolation",
                "firecracker VMs are not supported by slum: use "
                '"namespace" (own PID and mount namespaces) or "sandbox" (gVisor)',
            )
        if v["isolation"] not in ISOLATION_MODES:
            raise fail(table, "isolation", f"must be one of {', '.join(ISOLATION_MODES)}")
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
            memory_limit_mb=v["memory_limit_mb"] or None,
            memory_swap_max=v["memory_swap_max"],
            cpu_shares=v["cpu_shares"],
            pids_max=v["pids_max"],
            isolation=v["isolation"],
            env={k: (str(ev).lower() if isinstance(ev, bool) else str(ev)) for k, ev in env.items()},
            socket=v["socket"],
            request_timeout=(float(v["request_timeout"]) if v["request_timeout"] is not None else None),
            storage_persist=v["storage_persist"],
            storage_quota_mb=v["storage_quota_mb"],
            auto_spawn=v["auto_spawn"],
            max_instances=v["max_instances"],
        )

    instances: dict[str, tuple[str, ...]] = {}
    for svc_name, ids in _table(raw, "instances", fail).items():
        if svc_name not in services:
            raise fail("instances", svc_name, f"no [service.{svc_name}] is defined")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise fail("instances", svc_name, "must be a list of instance ids")
        for i in ids:
            if not DNS_LABEL.fullmatch(i):
                raise fail(
                    "instances",
                    svc_name,
                    f"invalid instance id {i!r}: ids are DNS labels "
                    "(lowercase letters, digits, '-') because they become subdomains; "
                    f"rename it to {suggest_label(i)!r}",
                )
        instances[svc_name] = tuple(dict.fromkeys(ids))

    routing = _table(raw, "routing", fail)
    for key in routing:
        if key in TOLERATED_ROUTING:
            tolerate("routing", key, TOLERATED_ROUTING[key])
        elif key != "default":
            unknown("routing", key, "unknown key (expected 'default')")
    default = routing.get("default")
    if default is not None and default not in services:
        raise fail("routing", "default", f"no [service.{default}] is defined")

    alerts = _alerts(raw.get("alerts", []), fail)
    return Config(
        path.absolute() if path else None, settings, services, instances, default, tuple(warnings), alerts
    )


def _alerts(raw: Any, fail: Any) -> tuple[AlertRule, ...]:
    if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
        raise fail("alerts", None, "must be an array of tables: [[alerts]]")
    rules = []
    for entry in raw:
        v = _check_keys("alerts", entry, ALERT_KEYS, fail, _refuse(fail), {}, None)
        url = v["url"]
        if url is None:
            raise fail("alerts", None, "missing required key 'url'")
        if not re.match(r"^https?://[^/\s]+", url):
            raise fail("alerts", "url", "must be an http:// or https:// URL")
        if v["format"] not in ALERT_FORMATS:
            raise fail("alerts", "format", f"must be one of {', '.join(ALERT_FORMATS)}")
        for event in v["events"]:
            if event not in ALERT_EVENTS:
                raise fail(
                    "alerts", "events", f"unknown event {event!r} (expected one of {', '.join(ALERT_EVENTS)})"
                )
        rules.append(AlertRule(url, v["format"], tuple(v["events"]), float(v["min_interval"])))
    return tuple(rules)


def _redact_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].rpartition('@')[2]}/..."


def _table(raw: dict[str, Any], name: str, fail: Any) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise fail(name, None, "must be a table")
    return value


def _refuse(fail: Any) -> Any:
    """An unknown key is an error here even without --strict: a webhook rule with a typo would
    otherwise send nothing, and nobody would know until the outage it was meant for."""

    def unknown(table: str, key: str, message: str) -> None:
        raise fail(table, key, message)

    return unknown


def _check_keys(
    table: str,
    raw: dict[str, Any],
    keys: tuple[Key, ...],
    fail: Any,
    unknown: Any,
    tolerated: dict[str, str],
    tolerate: Any,
) -> dict[str, Any]:
    known = {k.name: k for k in keys}
    for name in raw:
        if name in tolerated:
            tolerate(table, name, tolerated[name])
        elif name not in known:
            unknown(table, name, f"unknown key (expected one of {', '.join(sorted(known))})")
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
