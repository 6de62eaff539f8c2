"""Logs: a JSON query over the store, and a live stream of server-sent events. Both read their
filters through `LogQuery.from_args`, so a filter the one refuses the other refuses too, before
any stream starts. The stream keeps one bounded queue per client: a slow client gets a `lagged`
event with the count it missed; nobody else waits for it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, Literal, TypedDict
from urllib.parse import urlencode

import trio
from quart import Blueprint, Response, jsonify, make_response, request

from slum.errors import NotFound
from slum.events import StateChanged, StoredLog
from slum.fleet import nodes
from slum.store import logs
from slum.store.registry import Server
from slum.web.auth import scope_log_query, scope_tenant
from slum.web.context import context
from slum.web.routes import API, BOTH, endpoint

bp = Blueprint("logs", __name__)

PING_S = 15.0
QUEUE = 1024
BACKLOG_MAX = 5000


class LogEntry(TypedDict):
    id: int
    timestamp: str  # ISO-8601, UTC, milliseconds
    level: Literal["debug", "info", "warn", "error"]
    stream: Literal["stdout", "stderr", "system"]
    instance_id: str
    tenant_id: str | None
    message: str


class LogArgs(TypedDict, total=False):
    instance_id: str
    tenant_id: str
    # a level, or `warn+` (also `warn `: a + in a URL decodes to a space): that level and above
    level: Literal["debug", "info", "warn", "error", "debug+", "info+", "warn+", "error+"]
    min_level: Literal["debug", "info", "warn", "error"]
    search: str  # words (all must match), "quoted phrases", prefix*
    since: str  # 10m, 2h, 7d, a unix time or ISO-8601
    until: str
    limit: int
    offset: int
    before_id: int
    after_id: int
    process: str  # tenement's filters: a service ...
    id: str  # ... and an instance id; both: that one instance
    stream: Literal["stdout", "stderr", "system"]


class StreamArgs(LogArgs, total=False):
    states: str  # 1: also `state` events (instance state changes)
    logs: str  # 0: no `log` events


def log_query() -> logs.LogQuery:
    """The request's log filters, validated and narrowed to the token's scope."""
    return scope_log_query(logs.LogQuery.from_args(request.args))


def _named(name: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _unnamed(data: Any, event_id: int | None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def remote(tenant_id: str | None) -> Server | None:
    """The server holding a tenant, when it is not this node."""
    if not tenant_id:
        return None
    fleet = context().fleet
    try:
        tenant = await fleet.tenant(tenant_id)
        server = await fleet.server(tenant.server_id)
    except NotFound:
        return None
    return None if server.local else server


@endpoint(bp, "GET", "/logs", prefixes=BOTH, response=list[LogEntry], query=LogArgs)
async def log_entries() -> Response:
    """Log lines, newest first (oldest first with `after_id`). A tenant on another node: that
    node's lines, asked within nodes.READ_TIMEOUT_S; a 502 naming the server when it is marked
    offline (it is not asked) or does not answer."""
    q = log_query()
    server = await remote(q.tenant_id)
    if server is not None:
        why = nodes.unreachable(server)
        if why is not None:
            raise nodes.NodeFailed(f"{why}: the logs of {q.tenant_id} are stored there")
        args = {k: v for k, v in request.args.items() if v}
        args["tenant_id"] = q.tenant_id or ""
        path = "/_/api/logs?" + urlencode(args)
        return jsonify(await nodes.call(server, "GET", path, timeout_s=nodes.READ_TIMEOUT_S))
    return jsonify(await context().store.read(lambda c: logs.query(c, q)))


def _resume_id() -> int | None:
    last = request.headers.get("last-event-id") or request.args.get("after_id")
    try:
        last_id = int(last) if last else None
    except ValueError:
        return None
    return last_id if last_id is not None and 0 <= last_id <= logs.MAX_ID else None


@endpoint(
    bp, "GET", "/logs/stream", prefixes=BOTH, query=StreamArgs, response=str, content="text/event-stream"
)
async def log_stream() -> Any:
    """Live log lines as server-sent events (`log`, `state`, `lagged`); `Last-Event-ID`
    resumes from the store. Under /api, tenement's shape: unnamed `data:` events (so a
    browser's `onmessage` sees them), the log lines only."""
    ctx = context()
    if request.path.startswith(API + "/"):

        def event(name: str, data: Any, event_id: int | None = None) -> bytes:
            return _unnamed(data, event_id) if name == "log" else b""
    else:
        event = _named
    q = log_query()
    last_id = _resume_id()
    states = request.args.get("states") in ("1", "true")
    want_logs = request.args.get("logs") not in ("0", "false")
    tenant = scope_tenant()  # the generator runs outside the request's context: ask now

    def keep(item: Any) -> bool:
        """Asked at publish time, so that what this stream does not show (another instance's
        flood) never takes room in its queue (specs/performance.md)."""
        if isinstance(item, StoredLog):
            return want_logs and q.matches(item.line)
        return states and isinstance(item, StateChanged)

    async def stream() -> AsyncIterator[bytes]:
        with ctx.hub.subscribe(QUEUE, keep=keep) as sub:
            sent = last_id or 0
            if last_id is not None and want_logs:
                # Resume from the store: what the client missed while disconnected.
                while True:
                    back = logs.LogQuery(**{**q.__dict__, "after_id": sent, "limit": 1000, "offset": 0})
                    rows = await ctx.store.read(partial(logs.query, q=back))
                    for row in rows:
                        yield event("log", row, row["id"])
                        sent = row["id"]
                    if len(rows) < 1000:
                        break
            yield b": connected\n\n"
            while True:
                with trio.move_on_after(PING_S) as timer:
                    item = await sub.receive()
                if timer.cancelled_caught:
                    yield b": ping\n\n"
                    continue
                missed = sub.take_missed()
                if missed:
                    yield event("lagged", {"missed": missed})
                if isinstance(item, StoredLog):
                    if want_logs and item.id > sent and q.matches(item.line):
                        sent = item.id
                        yield event("log", logs.stored_to_entry(item), item.id)
                elif (
                    states
                    and isinstance(item, StateChanged)
                    and (tenant is None or item.instance_id.partition(":")[2] == tenant)
                ):
                    yield event(
                        "state",
                        {
                            "id": item.instance_id,
                            "old": item.old,
                            "new": item.new,
                            "reason": item.reason,
                            "ts": item.ts,
                        },
                    )

    response = await make_response(
        stream(),
        200,
        {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # type: ignore[union-attr]
    return response
