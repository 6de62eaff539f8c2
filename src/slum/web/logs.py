"""Server-sent events: live logs and state changes. One bounded queue per client: a slow client
gets a `lagged` event with the count it missed; nobody else waits for it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import trio
from quart import make_response, request
from quart_trio import QuartTrio

from slum.events import StateChanged, StoredLog
from slum.store import logs
from slum.web.fleet import log_query_from_args
from slum.web.context import WebContext

PING_S = 15.0
QUEUE = 1024
BACKLOG_MAX = 5000


def event(name: str, data: Any, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def register(app: QuartTrio, ctx: WebContext) -> None:
    @app.get("/_/api/logs/stream")
    async def log_stream() -> Any:
        q = log_query_from_args()
        last = request.headers.get("last-event-id") or request.args.get("after_id")
        try:
            last_id = int(last) if last else None
        except ValueError:
            last_id = None
        states = request.args.get("states") in ("1", "true")
        want_logs = request.args.get("logs") not in ("0", "false")

        async def stream() -> AsyncIterator[bytes]:
            with ctx.hub.subscribe(QUEUE) as sub:
                sent = last_id or 0
                if last_id is not None and want_logs:
                    # Resume from the store: what the client missed while disconnected.
                    while True:
                        back = logs.LogQuery(**{**q.__dict__, "after_id": sent,
                                                "limit": 1000, "offset": 0})
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
                    elif states and isinstance(item, StateChanged):
                        yield event("state", {"id": item.instance_id, "old": item.old,
                                              "new": item.new, "reason": item.reason,
                                              "ts": item.ts})

        response = await make_response(stream(), 200, {
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no"})
        response.timeout = None  # type: ignore[union-attr]
        return response
