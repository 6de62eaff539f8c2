"""Day-2 commands: `init` (a starter tenement.toml), `install`/`uninstall` (a systemd unit),
`caddy` (a Caddyfile that puts TLS in front of slum) and `reload` (apply a changed config)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

from cyclopts import App, Parameter

from slum.errors import BadRequest, SlumError

MARKER = "written by `slum"
UNIT_PATH = "/etc/systemd/system/slum.service"
CADDYFILE_PATH = "/etc/caddy/Caddyfile"
DEFAULT_SHUTDOWN_GRACE_S = 10.0
STOP_MARGIN_S = 15
NOFILE = 65536


# --- init ------------------------------------------------------------------------------------
def detect(directory: Path) -> tuple[str, str, float] | None:
    """(kind, command, startup_timeout) for the app in `directory`, as tenement detects it."""

    def has(name: str) -> bool:
        return (directory / name).is_file()

    if has("pyproject.toml") or has("requirements.txt"):
        entry = next((f for f in ("app.py", "main.py", "server.py", "wsgi.py") if has(f)), "app.py")
        return "python", f"python3 {entry}", 10
    if has("package.json"):
        import json

        try:
            scripts = json.loads((directory / "package.json").read_text()).get("scripts") or {}
        except (ValueError, OSError, AttributeError):
            scripts = {}
        if isinstance(scripts, dict) and "start" in scripts:
            return "node", "npm start", 30
        entry = next((f for f in ("server.js", "index.js", "app.js", "main.js") if has(f)), "index.js")
        return "node", f"node {entry}", 30
    if has("go.mod"):
        return "go", "go run .", 120  # the first start compiles
    if has("Cargo.toml"):
        return "rust", "cargo run --release", 300
    return None


def label(text: str) -> str:
    """A directory name -> a service name (a DNS label)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return name or "app"


TEMPLATE = """\
# tenement.toml, written by `slum init` for a {kind} app. Check it, then run `slum serve`.
# `slum config` shows what slum read; a wrong key is refused with its line number.

[settings]
data_dir = "./data"            # per-instance data dirs: {{data_dir}}/{{service}}/{{id}}
health_check_interval = 10     # seconds between health checks of a running instance

[service.{name}]
# Run with PORT set: the app must listen on 127.0.0.1:$PORT.
command = {command}
health = "/health"             # GET this path, 2xx/3xx = healthy (remove it for a TCP check)
idle_timeout = 300             # stop after 5 minutes without requests; the next one wakes it
startup_timeout = {startup:g}{startup_pad}# seconds to become healthy after a start
restart = "on-failure"         # always | on-failure | never

[service.{name}.env]
# The instance's own directory; the app should write only there.
DATA_DIR = "{{data_dir}}/{{name}}/{{id}}"

[instances]                    # started with slum; add more with `slum spawn {name} --id ID`
{name} = ["default"]
"""


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def init(
    *,
    name: Annotated[str | None, Parameter(name=["--name", "-n"])] = None,
    command: Annotated[str | None, Parameter(name=["--command", "-c"])] = None,
) -> int:
    """Write a starter tenement.toml for the app in the current directory."""
    from slum import config as cfg

    target = Path("tenement.toml")
    if target.exists():
        raise BadRequest(f"{target.absolute()} already exists: not overwriting it")
    here = Path.cwd()
    found = detect(here)
    if found is None and command is None:
        raise BadRequest(
            "no app found here (pyproject.toml, requirements.txt, package.json, "
            "go.mod or Cargo.toml): pass --command"
        )
    kind, detected, startup = found or ("custom", "", 10)
    service = name or label(here.name)
    cfg.check_label(service, "service name")
    command = command or detected
    text = TEMPLATE.format(
        kind=kind,
        name=service,
        command=_toml_string(command),
        startup=startup,
        startup_pad=" " * max(1, 13 - len(f"{startup:g}")),
    )
    cfg.parse(text, here / target.name)  # what we write must load
    with target.open("x", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {target} ({kind} app, service {service}: {command})")
    print("next: `slum serve`, then open http://default." + service + ".localhost:8080/")
    return 0


# --- install / uninstall ---------------------------------------------------------------------
def slum_command() -> list[str]:
    """How systemd starts this very slum: the frozen binary itself, or this Python with -m."""
    if getattr(sys, "frozen", False):
        return [str(Path(sys.executable).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "slum"]


def _quote(arg: str) -> str:
    # systemd splits ExecStart like a shell, without expanding anything but % specifiers.
    arg = arg.replace("%", "%%")
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else '"' + arg.replace('"', '\\"') + '"'


def unit(
    *,
    domain: str,
    port: int,
    host: str,
    config: Path | None,
    database: Path,
    workdir: Path,
    read_write: list[Path],
    shutdown_grace: float,
    user: str | None,
) -> str:
    argv = [
        *slum_command(),
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--domain",
        domain,
        "--database",
        str(database),
    ]
    if config is not None:
        argv += ["--config", str(config)]
    lines = [
        f"# slum.service, {MARKER} install`; `slum uninstall` removes it.",
        "[Unit]",
        "Description=slum: one process per tenant, routed by subdomain",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=exec",
        f"WorkingDirectory={_quote(str(workdir))}",
        "ExecStart=" + " ".join(_quote(a) for a in argv),
        "# `systemctl reload slum` re-reads the config like `slum reload`",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=always",
        "RestartSec=2",
        "# SIGTERM to slum only: it stops its instances itself (their grace period, then",
        "# SIGKILL); systemd kills what is left after TimeoutStopSec.",
        "KillMode=mixed",
        f"TimeoutStopSec={int(shutdown_grace) + STOP_MARGIN_S}",
        f"LimitNOFILE={NOFILE}",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "PrivateTmp=true",
        "ReadWritePaths=" + " ".join(_quote(str(p)) for p in read_write),
    ]
    if user:
        lines.append(f"User={user}")
    if port < 1024:
        lines += [
            "AmbientCapabilities=CAP_NET_BIND_SERVICE",
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_KILL CAP_SETUID CAP_SETGID "
            "CAP_DAC_OVERRIDE CAP_CHOWN CAP_FOWNER",
        ]
    lines += ["", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def _systemd() -> bool:
    """systemctl is there and systemd runs this machine (sd_booted: /run/systemd/system)."""
    return shutil.which("systemctl") is not None and Path("/run/systemd/system").is_dir()


def _systemctl(*args: str) -> None:
    from slum.supervisor.runner import child_environ

    # From the frozen binary, without the bootloader's LD_LIBRARY_PATH (its bundled libraries).
    result = subprocess.run(["systemctl", *args], capture_output=True, text=True, env=child_environ())
    if result.returncode != 0:
        raise SlumError(f"systemctl {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")
    print(f"ran: systemctl {' '.join(args)}")


def _check_ours(path: Path) -> None:
    if path.exists() and MARKER not in path.read_text(errors="replace"):
        hint = (
            " (merge `slum caddy` into it, or write ours elsewhere with --caddyfile)"
            if path.name == "Caddyfile"
            else ""
        )
        raise BadRequest(f"{path} exists and was not written by slum: not overwriting it{hint}")


def _write(path: Path, text: str) -> None:
    _check_ours(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except PermissionError:
        raise SlumError(
            f"cannot write {path}: permission denied (run as root, or --dry-run to see the files)"
        ) from None
    print(f"wrote {path}")


def _unit_path(option: str | None) -> Path:
    return Path(option or os.environ.get("SLUM_SYSTEMD_UNIT") or UNIT_PATH)


def _caddyfile_path(option: str | None) -> Path:
    return Path(option or os.environ.get("SLUM_CADDYFILE") or CADDYFILE_PATH)


def install(
    *,
    domain: str,
    port: int = 8080,
    config: Annotated[str | None, Parameter(name=["--config", "-c"])] = None,
    database: Annotated[str, Parameter(name=["--database", "-d"])] = "slum.db",
    dry_run: Annotated[bool, Parameter(name=["--dry-run"], negative="")] = False,
    caddy: Annotated[bool, Parameter(name=["--caddy"], negative="")] = False,
    user: str | None = None,
    unit_path: Annotated[str | None, Parameter(name=["--unit-path"])] = None,
    caddyfile: Annotated[str | None, Parameter(name=["--caddyfile"])] = None,
) -> int:
    """Run slum as a systemd service (and with --caddy, behind Caddy for TLS)."""
    from slum import config as cfg

    config_path = (
        Path(config) if config else (Path("tenement.toml") if Path("tenement.toml").is_file() else None)
    )
    loaded = cfg.load(config_path) if config_path else cfg.empty_config()
    config_path = config_path.absolute() if config_path else None
    db = Path(database).absolute()
    workdir = config_path.parent if config_path else Path.cwd()
    settings = loaded.settings
    grace = max(
        float(getattr(settings, "shutdown_grace", DEFAULT_SHUTDOWN_GRACE_S)), float(settings.stop_grace_s)
    )
    writable = list(dict.fromkeys([settings.data_dir, db.parent]))
    text = unit(
        domain=domain,
        port=port,
        host="127.0.0.1" if caddy else "0.0.0.0",
        config=config_path,
        database=db,
        workdir=workdir,
        read_write=writable,
        shutdown_grace=grace,
        user=user,
    )
    files = {_unit_path(unit_path): text}
    if caddy:
        files[_caddyfile_path(caddyfile)] = caddyfile_text(domain, f"127.0.0.1:{port}")
    systemd = _systemd() and files and next(iter(files)).parent == Path(UNIT_PATH).parent
    name = next(iter(files)).name
    if dry_run:
        for path, content in files.items():
            print(f"# --- {path}")
            print(content)
        print(
            f"# then: systemctl daemon-reload && systemctl enable --now {name}"
            + ("" if systemd else "  (systemd is not running here)")
        )
        return 0
    for path in files:
        _check_ours(path)  # all or nothing: no unit without its Caddyfile
    for path in settings.data_dir, db.parent:
        path.mkdir(parents=True, exist_ok=True)
    for path, content in files.items():
        _write(path, content)
    if systemd:
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", name)
        if caddy:
            print("reload Caddy to use the new Caddyfile: systemctl reload caddy")
    else:
        print(
            f"systemd is not running here (or the unit is outside {Path(UNIT_PATH).parent}): "
            f"start slum yourself, or run `systemctl daemon-reload && systemctl enable --now "
            f"{name}` where systemd runs"
        )
    return 0


def uninstall(
    *,
    unit_path: Annotated[str | None, Parameter(name=["--unit-path"])] = None,
    caddyfile: Annotated[str | None, Parameter(name=["--caddyfile"])] = None,
) -> int:
    """Undo `slum install`: stop and disable the service, remove the files it wrote."""
    path = _unit_path(unit_path)
    removed = False
    if path.exists():
        if MARKER not in path.read_text(errors="replace"):
            raise BadRequest(f"{path} was not written by slum: not removing it")
        if _systemd() and path.parent == Path(UNIT_PATH).parent:
            _systemctl("disable", "--now", path.name)
        path.unlink()
        print(f"removed {path}")
        removed = True
        if _systemd() and path.parent == Path(UNIT_PATH).parent:
            _systemctl("daemon-reload")
    cf = _caddyfile_path(caddyfile)
    if cf.exists() and MARKER in cf.read_text(errors="replace"):
        cf.unlink()
        print(f"removed {cf} (reload or stop Caddy: systemctl reload caddy)")
        removed = True
    if not removed:
        print("nothing to remove: slum is not installed here")
    print("data, database and tenement.toml are left where they are")
    return 0


# --- caddy -----------------------------------------------------------------------------------
CADDYFILE = """\
# Caddyfile, {marker} caddy`: Caddy terminates TLS and forwards to slum.
#
# Caddy sets X-Forwarded-For/-Proto/-Host. For slum to pass them on to the apps (instead of its
# own view: the client is Caddy, the scheme http), trust Caddy in tenement.toml:
#   [settings]
#   trusted_proxies = ["127.0.0.1/32", "::1/128"]
{{
	# A certificate is requested on a name's first TLS handshake, and only when slum says it
	# routes the name: nobody can make Caddy ask the CA for names of their choosing.
	on_demand_tls {{
		ask http://{upstream}/api/tls/ask
	}}
}}

# The domain, tenants ({{tenant}}.{domain}) and instances ({{id}}.{{service}}.{domain}): one
# certificate per name. For one wildcard certificate instead, use a Caddy built with your DNS
# provider's module and replace on_demand below with:  dns <provider> <credentials>
{domain}, *.{domain}, *.*.{domain} {{
	tls {{
		on_demand
	}}
	reverse_proxy {upstream}
}}

# Custom domains (`slum alias-add shop.example.org TENANT`), point their DNS at this machine.
https:// {{
	tls {{
		on_demand
	}}
	reverse_proxy {upstream}
}}
"""


def caddyfile_text(domain: str, upstream: str) -> str:
    return CADDYFILE.format(marker=MARKER, domain=domain, upstream=upstream)


def caddy(
    *,
    domain: str,
    output: Annotated[str | None, Parameter(name=["--output", "-o"])] = None,
    upstream: str = "127.0.0.1:8080",
) -> int:
    """Write a Caddyfile that serves slum over HTTPS (stdout without --output)."""
    name = domain.lower().rstrip(".")
    if not re.fullmatch(
        r"([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}"
        r"[a-z0-9])?",
        name,
    ):
        raise BadRequest(f"invalid domain {domain!r}")
    if not re.fullmatch(r"[\w.-]+:\d+|\[[0-9a-fA-F:]+\]:\d+", upstream):
        raise BadRequest(f"invalid upstream {upstream!r}: use HOST:PORT, like 127.0.0.1:8080")
    text = caddyfile_text(name, upstream)
    if output is None:
        sys.stdout.write(text)
        return 0
    _write(Path(output), text)
    print(
        "then: caddy run --config " + shlex.quote(output) + " (or reload Caddy), and set "
        "trusted_proxies in tenement.toml"
    )
    return 0


# --- reload ----------------------------------------------------------------------------------
def reload(
    *,
    server: Annotated[str | None, Parameter(name=["--server"])] = None,
    token: Annotated[str | None, Parameter(name=["--token"])] = None,
    json: Annotated[bool, Parameter(name=["--json"], negative="")] = False,
) -> int:
    """Re-read the config file the server started with and apply what changed (like SIGHUP)."""
    from slum.cli.output import print_json
    from slum.client import Client

    # A rollout waits for each restarted instance to be healthy: give it time.
    result: dict[str, Any] = Client(server, token, timeout=900).request("POST", "/_/api/reload")
    if json:
        print_json(result)
    else:
        for key in ("added", "changed", "removed", "started", "restarted", "stopped"):
            if result.get(key):
                print(f"{key}: {', '.join(result[key])}")
        if not any(result.get(k) for k in ("added", "changed", "removed", "started")):
            print("no service changed")
        for item in result.get("restart_needed", []):
            print(f"takes effect at the next start: {item}")
        for e in result.get("errors", []):
            sys.stderr.write(f"slum: error: {e}\n")
    return 1 if result.get("errors") else 0


def register(app: App) -> None:
    for command in (init, install, uninstall, caddy, reload):
        app.command(command)
