"""JSON endpoints: health, the fleet registry, instances, logs, overview, config, login."""

from __future__ import annotations

import json
import time
from typing import Any

import trio
from quart import Response, jsonify, request
from quart_trio import QuartTrio

from slum import __version__
from slum.config import parse_instance_ref
from slum.errors import BadRequest, NotFound, SlumError
from slum.events import LEVELS
from slum.fleet import nodes, registry
from slum.store import logs
from slum.supervisor.states import State
from slum.web.auth import SESSION_COOKIE, SESSION_TTL_S, client_address
from slum.web.context import WebContext

LOGIN_PATHS = ("/_/api/login", "/_/api/logout")


async def body() -> dict[str, Any]:
    data: Any = await request.get_json(force=True, silent=True)
    if not isinstance(data, dict):
        raise BadRequest("expected a JSON object in the request body")
    return data


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value


def _int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {raw!r}") from None


def log_query_from_args() -> logs.LogQuery:
    a = request.args
    level: str | None = a.get("level") or None
    min_level: str | None = a.get("min_level") or None
    if level and level.endswith("+"):  # level=warn+ : warn and above
        min_level = level[:-1]
        level = None
    return logs.LogQuery(
        instance_id=a.get("instance_id") or None,
        tenant_id=a.get("tenant_id") or None,
        level=level,
        min_level=min_level,
        search=a.get("search") or None,
        since=logs.parse_since(a.get("since")),
        until=logs.parse_since(a.get("until")),
        limit=_int_arg("limit", 100),
        offset=_int_arg("offset", 0),
        before_id=_int_arg("before_id", 0) or None,
        after_id=_int_arg("after_id", 0) or None,
    ).validate()


def register(app: QuartTrio, ctx: WebContext) -> None:
    sup = ctx.supervisor

    async def fleet(fn: Any, *args: Any) -> Any:
        """Run a fleet operation (registry writes + calls to other nodes) in a worker thread,
        its database work going through the single writer."""
        def transact(step: Any) -> Any:
            return trio.from_thread.run(ctx.store.write, step)

        return await trio.to_thread.run_sync(lambda: fn(transact, *args))

    async def remote(tenant_id: str | None) -> tuple[dict[str, Any], str | None] | None:
        """The server holding a tenant, when it is not this node."""
        if not tenant_id:
            return None

        def find(c: Any) -> tuple[dict[str, Any], str | None] | None:
            try:
                tenant = registry.get_tenant(c, tenant_id)
            except NotFound:
                return None
            server = registry.get_server(c, tenant["server_id"])
            if server["name"] == registry.LOCAL:
                return None
            return server, registry.server_token(c, server["id"])

        return await ctx.store.read(find)

    @app.get("/api/health")
    async def health() -> Response:
        return jsonify({"status": "ok", "version": __version__,
                        "uptime_secs": round(time.time() - ctx.started_at, 1),
                        "instances": len(sup.instances)})

    # --- fleet registry (also under /_/api for the dashboard) ---
    async def routes_changed(result: Any) -> Any:
        await ctx.refresh_routes()
        return result

    @app.get("/api/servers")
    @app.get("/_/api/servers")
    async def servers() -> Response:
        return jsonify(await ctx.store.read(registry.list_servers))

    @app.get("/_/api/servers/<ref>")
    async def server(ref: str) -> Response:
        return jsonify(await ctx.store.read(lambda c: registry.get_server(c, ref)))

    @app.post("/api/servers")
    @app.post("/_/api/servers")
    async def server_add() -> tuple[Response, int]:
        data = await body()
        address = _opt_str(data, "address")
        if not address:
            raise BadRequest("address is required")
        name, token = _opt_str(data, "name"), _opt_str(data, "token")
        capacity = data.get("capacity")
        if capacity is not None and (not isinstance(capacity, int) or isinstance(capacity, bool)):
            raise BadRequest("capacity must be an integer")
        result = await ctx.store.write(
            lambda c: registry.add_server(c, address, name, token, capacity))
        return jsonify(await routes_changed(result)), 201

    @app.delete("/api/servers/<ref>")
    @app.delete("/_/api/servers/<ref>")
    async def server_remove(ref: str) -> Response:
        result = await ctx.store.write(lambda c: registry.remove_server(c, ref))
        return jsonify(await routes_changed(result))

    @app.get("/api/tenants")
    @app.get("/_/api/tenants")
    async def tenants() -> Response:
        return jsonify(await ctx.store.read(registry.list_tenants))

    @app.get("/_/api/tenants/<tenant_id>")
    async def tenant(tenant_id: str) -> Response:
        result = await ctx.store.read(lambda c: registry.get_tenant(c, tenant_id))
        service = result["service"] or ctx.config.default_service
        inst = sup.instances.get(f"{service}:{tenant_id}")
        result["instance"] = ctx.instance_dict(inst) if inst else None
        return jsonify(result)

    @app.post("/api/tenants")
    @app.post("/_/api/tenants")
    async def tenant_add() -> tuple[Response, int]:
        data = await body()
        tenant_id = _opt_str(data, "id")
        if not tenant_id:
            raise BadRequest("id is required")
        server_ref, service = _opt_str(data, "server"), _opt_str(data, "service")
        config = data.get("config")
        config_text = None if config is None else (config if isinstance(config, str)
                                                    else json.dumps(config))
        if config_text is not None:
            result = await ctx.store.write(
                lambda c: registry.add_tenant(c, tenant_id, server_ref, service, config_text))
        else:
            result = await fleet(nodes.place_tenant, tenant_id, server_ref, service)
        return jsonify(await routes_changed(result)), 201

    @app.delete("/api/tenants/<tenant_id>")
    @app.delete("/_/api/tenants/<tenant_id>")
    async def tenant_remove(tenant_id: str) -> Response:
        result = await fleet(nodes.remove_tenant, tenant_id)
        await routes_changed(result)
        # A tenant removed from this node: its instance here stops.
        service = result["service"] or ctx.config.default_service
        inst = sup.instances.get(f"{service}:{tenant_id}")
        if result["server"] == registry.LOCAL and inst is not None and inst.want_running:
            await sup.stop(inst.id)
        return jsonify(result)

    @app.post("/api/tenants/<tenant_id>/move")
    @app.post("/_/api/tenants/<tenant_id>/move")
    async def tenant_move(tenant_id: str) -> Response:
        to = _opt_str(await body(), "to")
        if not to:
            raise BadRequest("to (a server name) is required")
        result = await fleet(nodes.move_tenant, tenant_id, to)
        await routes_changed(result)
        # Moved away from this node: its instance here stops.
        inst = sup.instances.get(f"{result['service'] or ctx.config.default_service}:{tenant_id}")
        if result["moved_from"] == registry.LOCAL and inst is not None and inst.want_running:
            await sup.stop(inst.id)
        return jsonify(result)

    # --- instances ---
    @app.get("/_/api/instances")
    async def instances() -> Response:
        local = [{**ctx.instance_dict(i), "server": registry.LOCAL} for i in sup.list()]
        if request.args.get("all") not in ("1", "true"):
            return jsonify(local)
        servers = [s for s in await ctx.store.read(registry.list_servers)
                   if s["name"] != registry.LOCAL]
        tokens = await ctx.store.read(
            lambda c: {s["id"]: registry.server_token(c, s["id"]) for s in servers})
        results: list[dict[str, Any]] = list(local)

        async def one(server: dict[str, Any]) -> None:
            try:
                results.extend(await trio.to_thread.run_sync(
                    nodes.remote_instances, server, tokens[server["id"]]))
            except SlumError as e:
                results.append({"id": f"{server['name']}:?", "server": server["name"],
                                "status": "unknown", "reason": e.message})

        async with trio.open_nursery() as nursery:
            for server in servers:
                nursery.start_soon(one, server)
        return jsonify(results)

    @app.post("/_/api/instances")
    async def spawn() -> tuple[Response, int]:
        data = await body()
        service, name = _opt_str(data, "service"), _opt_str(data, "id")
        if service and not name and ":" in service:
            service, name = parse_instance_ref(service)
        if not service or not name:
            raise BadRequest("service and id are required")
        inst = await sup.spawn(service, name)
        return jsonify(ctx.instance_dict(inst)), 201

    @app.get("/_/api/instances/<ref>")
    async def instance(ref: str) -> Response:
        parse_instance_ref(ref)
        inst = sup.get(ref)
        d = ctx.instance_dict(inst)
        d["history"] = [{"ts": t.ts, "state": t.state, "reason": t.reason} for t in inst.history]
        svc = inst.service
        d["config"] = {"command": list(svc.command), "health": svc.health,
                       "idle_timeout": svc.idle_timeout, "startup_timeout": svc.startup_timeout,
                       "restart": svc.restart, "workdir": str(svc.workdir), "env": svc.env}
        return jsonify(d)

    @app.post("/_/api/instances/<ref>/restart")
    async def restart(ref: str) -> Response:
        parse_instance_ref(ref)
        return jsonify(ctx.instance_dict(await sup.restart(ref)))

    @app.post("/_/api/instances/<ref>/stop")
    async def stop(ref: str) -> Response:
        parse_instance_ref(ref)
        return jsonify(ctx.instance_dict(await sup.stop(ref)))

    @app.get("/_/api/instances/<ref>/health")
    async def instance_health(ref: str) -> Response:
        parse_instance_ref(ref)
        inst = sup.get(ref)
        return jsonify({"id": inst.id, "health": inst.health, "status": inst.state.value,
                        "reason": inst.reason})

    # --- logs ---
    @app.get("/_/api/logs")
    async def log_entries() -> Response:
        q = log_query_from_args()
        where = await remote(q.tenant_id)
        if where is not None:
            # The tenant lives on another node: its logs are there.
            server, token = where
            args = {k: v for k, v in request.args.items() if v}
            return jsonify(await trio.to_thread.run_sync(
                lambda: nodes.remote_logs(server, token, **args)))
        return jsonify(await ctx.store.read(lambda c: logs.query(c, q)))

    # --- overview, status, config ---
    @app.get("/_/api/overview")
    async def overview() -> Response:
        return jsonify(await _overview(ctx))

    @app.get("/_/api/status")
    async def status() -> Response:
        data = await _overview(ctx)
        data["version"] = __version__
        data["uptime_secs"] = round(time.time() - ctx.started_at, 1)
        data["domain"] = ctx.domain
        data["log_queue"] = ctx.hub.statistics().log_queue
        data["dropped_logs"] = ctx.hub.dropped_logs
        data["logs_stored"] = ctx.ingest.lines
        data["log_batches"] = ctx.ingest.batches
        if ctx.sampler is not None:
            stats = ctx.sampler.stats
            data["sampler"] = {"ticks": stats.ticks, "last_tick_ms": stats.last_tick_ms,
                               "busy_s": round(stats.busy_s, 4)}
        data["edge_connections"] = ctx.extras.get("edge_connections", lambda: 0)()
        data["requests_metrics"] = ctx.requests.enabled
        return jsonify(data)

    @app.get("/_/api/config")
    async def config() -> Response:
        return jsonify(ctx.config.to_dict())

    # --- dashboard login (token once, then an HttpOnly cookie) ---
    @app.post("/_/api/login")
    async def login() -> Response:
        data = await body()
        token = _opt_str(data, "token")
        if not token:
            raise BadRequest("token is required")
        token_id = await ctx.auth.verify_token(token.strip(),
                                               client_address(request.headers))
        response = jsonify({"ok": True})
        response.set_cookie(SESSION_COOKIE, ctx.auth.new_session(token_id),
                            max_age=SESSION_TTL_S, httponly=True, samesite="Strict", path="/")
        return response

    @app.post("/_/api/logout")
    async def logout() -> Response:
        ctx.auth.end_session(request.cookies.get(SESSION_COOKIE))
        response = jsonify({"ok": True})
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    @app.get("/_/api/session")
    async def session() -> Response:
        return jsonify({"authenticated": True})


async def _overview(ctx: WebContext) -> dict[str, Any]:
    def read(conn: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[Any]]:
        recent = logs.query(conn, logs.LogQuery(min_level="warn", limit=10))
        return registry.list_servers(conn), registry.list_tenants(conn), recent

    servers, tenants, recent = await ctx.store.read(read)
    insts = ctx.supervisor.list()
    by_state = {s.value: 0 for s in State}
    for inst in insts:
        by_state[inst.state.value] += 1
    healthy = by_state["healthy"]
    attention = [{"kind": "instance", "id": i.id, "state": i.state.value,
                  "message": f"{i.state.value}: {i.reason}" if i.reason else i.state.value}
                 for i in insts if i.state in (State.FAILED, State.BACKOFF, State.UNHEALTHY)]
    attention += [{"kind": "server", "id": s["name"], "state": s["status"], "message": "offline"}
                  for s in servers if s["status"] != "online"]
    host = ctx.sampler.host if ctx.sampler is not None else {}
    total, free = host.get("disk_total_bytes"), host.get("disk_free_bytes")
    if total and free is not None and free / total < 0.1:
        attention.append({"kind": "disk", "id": str(ctx.config.settings.data_dir),
                          "state": "filling", "message": f"disk {100 - free / total * 100:.0f}% "
                          f"full ({free / 1e9:.1f} GB free)"})
    return {
        "servers": len(servers), "tenants": len(tenants), "instances": len(insts),
        "healthy": healthy, "unhealthy": len(insts) - healthy - by_state["stopped"],
        "by_state": by_state, "recent_logs": recent, "attention": attention,
        "server_list": [{**s, "tenants": [t["id"] for t in tenants if t["server_id"] == s["id"]]}
                        for s in servers],
        "levels": list(LEVELS),
    }
