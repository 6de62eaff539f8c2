"""The commands. Process commands talk to the running server through slum.Client; the fleet
registry's commands are in cli/fleet.py."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated, Any

from cyclopts import App, Parameter

from slum import __version__
from slum.cli import ops
from slum.cli.output import duration, error, log_line, print_json, ps_command, size, table
from slum.errors import BadRequest, ServerUnreachable, SlumError


def _version() -> str:
    import apsw

    return f"slum {__version__} (SQLite {apsw.sqlite_lib_version()}, FTS5)"


def _format_error(e: Any) -> str:
    return f"slum: error: {e}"


app = App(
    name="slum",
    help="One process per tenant, routed by subdomain, woken on request. Run `slum serve`.",
    version=_version,
    version_flags=["--version", "-V"],
    error_formatter=_format_error,
)

Server = Annotated[
    str | None,
    Parameter(
        name=["--server"],
        help="http://host:port or unix:/path (env SLUM_SERVER; default: the local control socket)",
    ),
]
Token = Annotated[str | None, Parameter(name=["--token"], help="API token (env SLUM_TOKEN)")]
Database = Annotated[
    str, Parameter(name=["--database", "-d"], help="SQLite database file (env SLUM_DATABASE)")
]
DEFAULT_DATABASE = os.environ.get("SLUM_DATABASE") or "slum.db"
Json = Annotated[bool, Parameter(name=["--json"], negative="", help="print JSON")]


def _client(server: str | None, token: str | None, database: str | None = None) -> Any:
    from slum.client import Client

    return Client(server, token, database=database)


def _ref(ref: str, instance_id: str | None = None) -> str:
    from slum.config import parse_instance_ref

    if instance_id is not None:
        ref = f"{ref}:{instance_id}"
    service, name = parse_instance_ref(ref)
    return f"{service}:{name}"


# --- server ---
@app.command
def serve(
    *,
    host: str = "0.0.0.0",
    port: Annotated[int, Parameter(name=["--port", "-p"])] = 8080,
    database: Database = DEFAULT_DATABASE,
    config: Annotated[str | None, Parameter(name=["--config", "-c"])] = None,
    domain: str = "localhost",
    strict: Annotated[
        bool, Parameter(negative="", help="unknown config keys are errors, not warnings")
    ] = False,
    data_dir: Annotated[
        str | None, Parameter(help="overrides [settings] data_dir (env SLUM_DATA_DIR, TENEMENT_DATA_DIR)")
    ] = None,
    registry: Annotated[
        str | None,
        Parameter(
            help="the fleet registry in etcd, shared by "
            "several routers: etcd://HOST:PORT[,...] "
            "(overrides [settings] registry)"
        ),
    ] = None,
) -> int:
    """Run slum: supervise the config's instances, route requests, serve the API and dashboard."""
    import logging
    import os

    import trio

    from slum.app import ServeOptions
    from slum.app import serve as run

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    _warn_domain_like_database(database)
    data_dir = data_dir or os.environ.get("SLUM_DATA_DIR") or os.environ.get("TENEMENT_DATA_DIR")
    opts = ServeOptions(
        host=host,
        port=port,
        database=database,
        config=config,
        domain=domain,
        strict=strict,
        data_dir=data_dir,
        registry=registry,
    )

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            running = await nursery.start(run, opts)
            for warning in running.warnings:
                sys.stderr.write(f"slum: warning: {warning}\n")
            shown = "localhost" if host in ("0.0.0.0", "::") else host
            sys.stderr.write(
                f"slum {__version__} serving http://{host}:{running.port} (domain {domain})\n"
                f"  dashboard:      http://{shown}:{running.port}/_/\n"
                f"  control socket: {running.control_socket}\n"
                f"  instances:      {len(running.supervisor.instances)}\n"
            )

    trio.run(main)
    return 0


def _warn_domain_like_database(database: str) -> None:
    """tenement's `-d` is --domain, slum's is --database: `slum serve -d example.com` would
    quietly create a database file named example.com."""
    from pathlib import Path

    suffix = Path(database).suffix.lower()
    if suffix not in (".db", ".sqlite", ".sqlite3", ".db3") and not Path(database).exists():
        sys.stderr.write(
            f"slum: warning: -d/--database {database!r} does not look like a "
            "database file and does not exist; it will be created. For the "
            "routing domain use --domain (tenement's -d).\n"
        )


# --- processes ---
@app.command
def spawn(
    ref: str,
    *,
    id: Annotated[str | None, Parameter(name=["--id"])] = None,
    server: Server = None,
    token: Token = None,
    json: Json = False,
) -> int:
    """Start an instance: `slum spawn notes --id alice` or `slum spawn notes:alice`."""
    inst = _client(server, token).spawn(*_ref(ref, id).split(":"))
    if json:
        print_json(inst)
    else:
        print(
            f"{inst['id']} {inst['status']}"
            + (f" on port {inst['port']}" if inst["port"] else "")
            + (f" ({inst['reason']})" if inst.get("reason") else "")
        )
    return 0 if inst["status"] in ("healthy", "degraded", "unhealthy", "starting") else 1


@app.command
def stop(ref: str, *, server: Server = None, token: Token = None, json: Json = False) -> int:
    """Stop an instance (SIGTERM to its process group, SIGKILL after the grace period)."""
    inst = _client(server, token).stop(_ref(ref))
    print_json(inst) if json else print(f"{inst['id']} {inst['status']}")
    return 0


@app.command
def restart(ref: str, *, server: Server = None, token: Token = None, json: Json = False) -> int:
    """Restart an instance and wait until it is healthy again."""
    inst = _client(server, token).restart(_ref(ref))
    print_json(inst) if json else print(
        f"{inst['id']} {inst['status']}" + (f" on port {inst['port']}" if inst["port"] else "")
    )
    return 0 if inst["status"] in ("healthy", "degraded") else 1


@app.command
def health(ref: str, *, server: Server = None, token: Token = None, json: Json = False) -> int:
    """Health of one instance: healthy, unhealthy or unknown."""
    h = _client(server, token).health(_ref(ref))
    print_json(h) if json else print(
        h["health"] if h["status"] not in ("stopped", "sleeping") else f"{h['health']} (stopped)"
    )
    return 0 if h["health"] == "healthy" else 1


@app.command(name=["ps", "ls"])
def ps(
    *,
    all: Annotated[bool, Parameter(name=["--all", "-a"], negative="")] = False,
    server: Server = None,
    token: Token = None,
    json: Json = False,
) -> int:
    """List instances: status, health, port, pid, uptime, restarts (--all: the whole fleet)."""
    return ps_command(_client(server, token), all=all, json=json)


@app.command
def top(
    *,
    interval: float = 1.0,
    once: Annotated[bool, Parameter(negative="")] = False,
    server: Server = None,
    token: Token = None,
) -> int:
    """A live table of instances: CPU, memory, requests/s, p99 latency (like `pm2 monit`)."""
    client = _client(server, token)
    interactive = sys.stdout.isatty() and not once
    try:
        while True:
            instances = client.instances()
            metrics = client.request("GET", "/_/api/metrics")
            rate = {m["labels"]["target"]: m["value"] for m in metrics if m["name"] == "requests_per_s"}
            p99 = {m["labels"]["target"]: m["value"] for m in metrics if m["name"] == "latency_recent_ms"}
            rows = [
                (
                    i["id"],
                    i["status"],
                    "-" if i["cpu_percent"] is None else f"{i['cpu_percent']:.1f}",
                    size(i["rss_bytes"]),
                    f"{rate.get(i['id'], 0.0):.1f}",
                    f"{p99[i['id']]:.1f}" if i["id"] in p99 else "-",
                    i["restarts"],
                )
                for i in instances
            ]
            text = table(["INSTANCE", "STATUS", "CPU%", "MEM", "REQ/S", "P99MS", "RESTARTS"], rows)
            if interactive:
                sys.stdout.write("\x1b[H\x1b[2J")
                text += f"\n\n{time.strftime('%H:%M:%S')}  every {interval:g}s, Ctrl-C to quit"
            print(text, flush=True)
            if once:
                return 0
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0


@app.command
def config(
    *,
    file: Annotated[str | None, Parameter(name=["--config", "-c"])] = None,
    server: Server = None,
    token: Token = None,
    json: Json = False,
) -> int:
    """Show the configuration the server runs with (without a server: the tenement.toml found
    here or in a parent directory, or --config)."""
    c = _config_of(file, server, token)
    if json:
        print_json(c)
        return 0
    print(f"config: {c['path'] or '(none: fleet router only)'}")
    print("settings:")
    for k, v in c["settings"].items():
        print(f"  {k} = {v}")
    for name, svc in c["service"].items():
        print(f"service {name}:")
        for k, v in svc.items():
            print(f"  {k} = {v}")
    for name, ids in c["instances"].items():
        print(f"instances {name}: {', '.join(ids)}")
    if c["routing"]["default"]:
        print(f"routing default: {c['routing']['default']}")
    for warning in c.get("warnings", []):
        print(f"warning: {warning}")
    return 0


def _config_of(file: str | None, server: str | None, token: str | None) -> dict[str, Any]:
    from slum import config as cfg

    if file is None:
        try:
            return _client(server, token).config()  # type: ignore[no-any-return]
        except ServerUnreachable:
            if server:
                raise
        found = cfg.find_config()
        if found is None:
            raise ServerUnreachable(
                "no slum server is running and no tenement.toml was found "
                "here or in a parent directory (use --config FILE)"
            )
        file = str(found)
    sys.stderr.write(f"(no server: read from {file})\n")
    return cfg.load(file).to_dict()


@app.command
def status(*, server: Server = None, token: Token = None, json: Json = False) -> int:
    """A summary: instances by state, servers, tenants, what needs attention."""
    client = _client(server, token)
    s = client.status()
    try:
        s["alerts"] = client.request("GET", "/_/api/alerts", query={"limit": 5})
    except SlumError:
        s["alerts"] = None  # an older server, or a token without access: the rest still shows
    if json:
        print_json(s)
        return 0
    states = ", ".join(f"{n} {k}" for k, n in s["by_state"].items() if n) or "none"
    print(f"slum {s['version']} up {duration(s['uptime_secs'])}, domain {s['domain']}")
    print(f"instances: {s['instances']} ({states})")
    print(f"servers:   {s['servers']}")
    for srv in s["server_list"]:
        print(f"  {srv['name']:<16} {srv['status']:<8} {srv['tenant_count']} tenants  {srv['address']}")
    print(f"tenants:   {s['tenants']}")
    reg = s.get("registry") or {}
    if reg.get("backend", "sqlite") != "sqlite":
        where = ", ".join(reg.get("endpoints") or [])
        print(
            f"registry:  {reg['backend']} {where} "
            + (
                f"up (revision {reg.get('revision')})"
                if reg.get("up")
                else f"DEGRADED: routing with the last known table, writes refused: {reg.get('reason')}"
            )
        )
    print(f"logs:      {s['logs_stored']} lines stored this run, {s['dropped_logs']} dropped")
    for item in s["attention"]:
        print(f"attention: {item['kind']} {item['id']}: {item['message']}")
    edge = s.get("edge") or {}
    if edge.get("upstream_errors") or edge.get("client_errors"):
        failed = ", ".join(f"{k} {v}" for k, v in sorted(edge["upstream_errors"].items()))
        print(
            f"edge:      {edge['client_errors']} requests refused, {edge['timeouts']} timeouts"
            + (f"; failed upstream exchanges: {failed}" if failed else "")
        )
    for name, t in s.get("tasks", {}).items():
        if t["errors"]:
            print(
                f"task:      {name} {'failing' if t['failing'] else 'recovered'}, "
                f"{t['errors']} errors, last: {t['last_error']}"
            )
    if s["alerts"]:
        print(f"alerts:    {len(s['alerts']['open'])} open")
        for a in s["alerts"]["alerts"]:
            print(f"  {a['timestamp']} {a['status']:<8} {a['event']} {a['subject']}: {a['message']}")
    return 0


@app.command
def logs(
    ref: Annotated[str | None, Parameter()] = None,
    *,
    follow: Annotated[bool, Parameter(name=["--follow", "-f"], negative="")] = False,
    search: Annotated[str | None, Parameter(name=["--search", "-s"])] = None,
    level: Annotated[str | None, Parameter(name=["--level", "-l"])] = None,
    since: str | None = None,
    tenant: str | None = None,
    lines: Annotated[int, Parameter(name=["-n", "--lines", "--limit"])] = 100,
    stream: Annotated[str | None, Parameter(help="stdout | stderr | system")] = None,
    server: Server = None,
    token: Token = None,
    json: Json = False,
) -> int:
    """Show logs (newest last); -f follows like tail -f, across restarts of the instance."""
    import json as jsonlib

    if level in ("stdout", "stderr"):
        # tenement's `logs --level` filters by stream.
        stream, level = level, None
    client = _client(server, token)
    tty = sys.stdout.isatty()  # a child's output must not drive the operator's terminal
    filters: dict[str, Any] = {
        "instance_id": _ref(ref) if ref else None,
        "tenant_id": tenant,
        "search": search,
        "min_level": level,
        "since": since,
        "stream": stream,
    }
    entries = list(reversed(client.logs(limit=lines, **filters)))
    for entry in entries:
        print(jsonlib.dumps(entry) if json else log_line(entry, escape=tty), flush=True)
    if not follow:
        return 0
    last = entries[-1]["id"] if entries else None
    if last is None:
        newest = client.logs(limit=1)
        last = newest[0]["id"] if newest else 0
    filters.pop("since")
    while True:
        try:
            for entry in client.follow_logs(after_id=last, **filters):
                if "lagged" in entry:
                    error(f"missed {entry['lagged']} lines (too slow)")
                    continue
                last = entry["id"]
                print(jsonlib.dumps(entry) if json else log_line(entry, escape=tty), flush=True)
        except ServerUnreachable:
            time.sleep(1)  # the server restarts: pick up where we were


# --- auth ---
@app.command(name="token-gen")
def token_gen(
    *, description: str | None = None, tenant: str | None = None, database: Database = DEFAULT_DATABASE
) -> int:
    """Create an API token (printed once; only its Argon2 hash is stored). --tenant limits it
    to that tenant's instances, logs and metrics."""
    from slum.store import connect, immediate, tokens
    from slum.web.tokens import check_token_fields

    description, tenant = check_token_fields(description, tenant)
    # Straight into the database, also while `serve` runs on it: the server reads tokens fresh.
    conn = connect(database)
    try:
        with immediate(conn, database):
            public_id, token = tokens.create(conn, description, tenant)
    finally:
        conn.close()
    print(token)
    scope = f" limited to tenant {tenant}" if tenant else ""
    sys.stderr.write(
        f"Token {public_id}{scope}. Save it: it is shown only once. Use it as "
        "`Authorization: Bearer <token>` or SLUM_TOKEN.\n"
    )
    return 0


def _tokens_call(database: str, server: str | None, token: str | None, api: Any, local: Any) -> Any:
    """Through the running server of this database when there is one (its control socket),
    else on the database file directly."""
    from slum.client import control_socket_path

    if server or os.environ.get("SLUM_SERVER") or control_socket_path(database).exists():
        return api(_client(server, token, database))
    from slum.store import connect, immediate

    conn = connect(database)
    try:
        with immediate(conn, database):
            return local(conn)
    finally:
        conn.close()


@app.command(name="token-list")
def token_list(
    *, database: Database = DEFAULT_DATABASE, server: Server = None, token: Token = None, json: Json = False
) -> int:
    """List tokens: id, description, scope, created, last used (never the secret)."""
    from slum.store import tokens

    rows = _tokens_call(database, server, token, lambda c: c.tokens(), tokens.listing)
    if json:
        print_json(rows)
    else:
        print(
            table(
                ["ID", "DESCRIPTION", "SCOPE", "CREATED", "LAST USED"],
                [
                    (
                        r["id"] + (" (old format)" if r.get("legacy") else ""),
                        r["description"],
                        r["scope"],
                        r["created"],
                        r["last_used"],
                    )
                    for r in rows
                ],
            )
        )
    return 0


@app.command(name="token-revoke")
def token_revoke(
    id: str, *, database: Database = DEFAULT_DATABASE, server: Server = None, token: Token = None
) -> int:
    """Revoke a token; its dashboard sessions end at once."""
    from slum.store import tokens

    r = _tokens_call(
        database, server, token, lambda c: c.revoke_token(id), lambda conn: tokens.revoke(conn, id)
    )
    print(f"revoked token {r['id']} ({r['sessions_ended']} sessions ended)")
    return 0


ops.register(app)  # init, install, uninstall, caddy, reload

__all__ = ["BadRequest", "app", "size"]

# Registered on `app` when imported: deploy, route, weight; the fleet registry's commands.
from slum.cli import deploy as _deploy  # noqa: E402,F401
from slum.cli import fleet as _fleet  # noqa: E402,F401
from slum.cli import registry_migrate as _registry_migrate  # noqa: E402,F401
