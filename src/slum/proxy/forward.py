"""Forwarding one request to an upstream over a pooled keep-alive connection, streaming both
bodies, and piping bytes after a websocket upgrade."""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

import trio

from slum.proxy.http import READ, ClientConnection, ClientGone, Request, ResponseHead
from slum.proxy.io import Connection, connect_tcp, connect_unix

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
    b"upgrade", b"proxy-authorization", b"proxy-authenticate",
})
# Set by slum only: a client must not be able to choose them.
SPOOFABLE = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-tenant-id", b"x-slum-edge",
                       b"x-slum-router"})
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
CONNECT_TIMEOUT_S = 5.0
FIRST_BYTE_TIMEOUT_S = 60.0
IDLE_TIMEOUT_S = 300.0
MAX_IDLE_PER_UPSTREAM = 64


class UpstreamError(Exception):
    def __init__(self, status: int, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.refused = refused  # nothing was sent: safe to try again elsewhere


@dataclass(frozen=True, slots=True)
class Upstream:
    key: tuple[object, ...]  # pool key: (port, pid) so a reused port never gets old connections
    port: int = 0
    unix_path: str | None = None
    host: str = "127.0.0.1"
    response_timeout_s: float | None = None  # a service's request_timeout, else the pool's


class Pool:
    def __init__(self, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 response_timeout_s: float = FIRST_BYTE_TIMEOUT_S,
                 idle_timeout_s: float = IDLE_TIMEOUT_S) -> None:
        self._idle: dict[tuple[object, ...], list[Connection]] = {}
        self.connect_timeout_s = connect_timeout_s
        self.response_timeout_s = response_timeout_s
        self.idle_timeout_s = idle_timeout_s

    async def connect(self, up: Upstream, *, fresh: bool = False) -> tuple[Connection, bool]:
        idle = self._idle.get(up.key)
        if idle and not fresh:
            return idle.pop(), True
        with trio.move_on_after(self.connect_timeout_s):
            try:
                if up.unix_path is not None:
                    return await connect_unix(up.unix_path), False
                return await connect_tcp(up.host, up.port), False
            except OSError as e:
                raise UpstreamError(502, f"upstream is not answering ({e.strerror})",
                                    refused=True) from None
        raise UpstreamError(502, "upstream did not accept the connection in time")

    def release(self, up: Upstream, stream: Connection) -> None:
        idle = self._idle.setdefault(up.key, [])
        if len(idle) < MAX_IDLE_PER_UPSTREAM:
            idle.append(stream)
        else:
            stream.close()

    def drop(self, key: tuple[object, ...]) -> None:
        for stream in self._idle.pop(key, []):
            stream.close()


def request_head(req: Request, extra: bytes, client_ip: str) -> bytes:
    parts = [req.method, b" ", req.url, b" HTTP/1.1\r\n"]
    xff = b""
    for name, value in req.headers:
        lname = name.lower()
        if lname in HOP_BY_HOP or lname in SPOOFABLE:
            continue
        if lname == b"x-forwarded-for":
            xff = value + b", "
            continue
        parts += (name, b": ", value, b"\r\n")
    if req.upgrade:
        for name, value in req.headers:
            if name.lower() == b"upgrade":
                parts += (b"Connection: upgrade\r\nUpgrade: ", value, b"\r\n")
    if req.chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    parts += (b"X-Forwarded-For: ", xff, client_ip.encode(), b"\r\nX-Forwarded-Proto: http\r\n"
              b"X-Forwarded-Host: ", req.host, b"\r\n", extra, b"\r\n")
    return b"".join(parts)


def response_head(resp: ResponseHead, client_keep_alive: bool, chunk: bool) -> bytes:
    parts = [b"HTTP/1.1 ", str(resp.status).encode(), b" ", _reason(resp.status), b"\r\n"]
    for name, value in resp.headers:
        if name.lower() in HOP_BY_HOP:
            continue
        parts += (name, b": ", value, b"\r\n")
    if resp.upgraded is not None or resp.status == 101:
        for name, value in resp.headers:
            if name.lower() == b"upgrade":
                parts += (b"Connection: upgrade\r\nUpgrade: ", value, b"\r\n")
    elif chunk:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if not client_keep_alive:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


class Exchange:
    """Outcome of forwarding one request, for metrics and the connection loop."""

    __slots__ = ("keep_alive", "status", "streaming")

    def __init__(self) -> None:
        self.status = 0
        self.keep_alive = False
        self.streaming = False


async def forward(conn: ClientConnection, req: Request, up: Upstream, pool: Pool, extra: bytes,
                  *, max_body: int = 0) -> Exchange:
    """Send req to up and stream the answer back to the client. Raises UpstreamError before
    anything was sent to the client; afterwards, problems just end the client connection."""
    ex = Exchange()
    head = request_head(req, extra, conn.peer)
    stream, reused = await pool.connect(up)
    sent_body = False
    try:
        try:
            await stream.send_all(head)
            sent_body = await _send_body(conn, req, stream, max_body)
            resp = await _read_head(stream, req, up.response_timeout_s or pool.response_timeout_s)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError,
                _EmptyResponse) as e:
            stream.close()
            if reused and not sent_body and req.method in IDEMPOTENT:
                # A pooled connection the upstream closed meanwhile: try once on a fresh one.
                stream, _ = await pool.connect(up, fresh=True)
                await stream.send_all(head)
                resp = await _read_head(stream, req, up.response_timeout_s or pool.response_timeout_s)
            else:
                raise UpstreamError(502, f"upstream closed the connection ({e})") from None
    except BaseException:
        stream.close()
        raise
    ex.status = resp.status
    return await _relay(conn, req, up, pool, stream, resp, ex)


class _EmptyResponse(Exception):
    pass


async def _send_body(conn: ClientConnection, req: Request, stream: Connection,
                     max_body: int) -> bool:
    total = 0
    while True:
        chunk = await conn.body_chunk()
        if chunk is None:
            if req.chunked:
                await stream.send_all(b"0\r\n\r\n")
            return total > 0
        total += len(chunk)
        if max_body and total > max_body:
            raise UpstreamError(413, f"request body larger than {max_body} bytes")
        await stream.send_all(_chunked(chunk) if req.chunked else chunk)


async def _read_head(stream: Connection, req: Request, timeout_s: float) -> ResponseHead:
    resp = ResponseHead()
    with trio.move_on_after(timeout_s):
        while not resp.head_done:
            data = await stream.receive_some(READ)
            if not data:
                raise _EmptyResponse("no response")
            resp.feed(data)
            if resp.head_done and resp.status < 200 and resp.status != 101:
                # 1xx informational (100 Continue): skip it, the real answer follows.
                rest = b"".join(resp.body)
                resp = ResponseHead()
                if rest:
                    resp.feed(rest)
        if req.method == b"HEAD":
            resp.complete = True
            resp.body.clear()
        return resp
    raise UpstreamError(504, f"upstream sent no response within {timeout_s:g}s")


async def _relay(conn: ClientConnection, req: Request, up: Upstream, pool: Pool,
                 stream: Connection, resp: ResponseHead, ex: Exchange) -> Exchange:
    client = conn.stream
    if resp.upgraded is not None or resp.status == 101:
        ex.streaming = True
        await client.send_all(response_head(resp, True, False) + (resp.upgraded or b""))
        await pipe(conn, stream)
        return ex
    has_length = up_chunked = False
    for name, value in resp.headers:
        lname = name.lower()
        if lname == b"content-length":
            has_length = True
        elif lname == b"transfer-encoding" and b"chunked" in value.lower():
            up_chunked = True
    no_body = req.method == b"HEAD" or resp.status in (204, 304)
    chunk = not has_length and not no_body
    keep = req.keep_alive
    if chunk and req.version == "1.0":
        # An HTTP/1.0 client knows no chunking: the body ends when the connection closes.
        chunk = keep = False
    out = response_head(resp, keep, chunk)
    ok = False
    try:
        while True:
            if resp.body:
                body = b"".join(resp.body)
                resp.body.clear()
                out += _chunked(body) if chunk else body
            if resp.complete:
                if chunk:
                    out += b"0\r\n\r\n"
                await client.send_all(out)
                ok = True
                break
            if out:
                await client.send_all(out)
                out = b""
            ex.streaming = True
            with trio.move_on_after(pool.idle_timeout_s) as idle:
                data = await stream.receive_some(READ)
            if idle.cancelled_caught or not data:
                # Upstream died (or went silent) mid-response: end the client's response
                # cleanly by closing; it must not hang waiting for bytes that will not come.
                if not data and not idle.cancelled_caught and not has_length and not up_chunked:
                    resp.complete = True  # close-delimited body: EOF is its end
                    resp.keep_alive = False
                    continue
                keep = False
                break
            resp.feed(data)
    finally:
        if ok and resp.keep_alive:
            pool.release(up, stream)
        else:
            stream.close()
    ex.keep_alive = keep and ok
    return ex


async def pipe(conn: ClientConnection, upstream: Connection) -> None:
    """Bytes both ways until either side closes (websockets and other upgrades)."""
    client = conn.stream
    if conn.upgraded:
        await upstream.send_all(conn.upgraded)

    async def one_way(src: Connection, dst: Connection) -> None:
        try:
            while True:
                data = await src.receive_some(READ)
                if not data:
                    break
                await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            nursery.cancel_scope.cancel()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one_way, client, upstream)
            nursery.start_soon(one_way, upstream, client)
    finally:
        upstream.close()


__all__ = ["ClientGone", "Exchange", "Pool", "Upstream", "UpstreamError", "forward", "pipe"]
