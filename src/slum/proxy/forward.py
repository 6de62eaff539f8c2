"""Forwarding one request to an upstream over a pooled keep-alive connection, streaming both
bodies, and piping bytes after a websocket upgrade."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

import trio

from slum.proxy.http import (
    MAX_HEAD,
    MAX_TRAILER,
    READ,
    ClientConnection,
    ClientError,
    ClientGone,
    Request,
    ResponseHead,
    UpstreamError,
)
from slum.proxy.io import Connection, connect_tcp, connect_unix, wait_readable

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"http2-settings",
    }
)
# Set by slum only: a client must not be able to choose them.
SPOOFABLE = frozenset(
    {b"x-forwarded-proto", b"x-forwarded-host", b"x-tenant-id", b"x-slum-edge", b"x-slum-router"}
)
# What request_head does with a header, by lowercased name; absent: copied as is.
_DROP, _XFF, _COOKIE, _EXPECT, _XFP = 1, 2, 3, 4, 5
_REQUEST_RULES = {name: _DROP for name in HOP_BY_HOP | SPOOFABLE}
_REQUEST_RULES.update(
    {b"x-forwarded-for": _XFF, b"cookie": _COOKIE, b"expect": _EXPECT, b"x-forwarded-proto": _XFP}
)
# slum's dashboard session: the web app's business only, never an app's or another node's.
SESSION_COOKIES = (b"slum_session", b"__Host-slum_session")
IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
CONNECT_TIMEOUT_S = 5.0
FIRST_BYTE_TIMEOUT_S = 60.0
IDLE_TIMEOUT_S = 300.0
# A pooled connection idle longer than this is closed rather than reused: shorter than common
# app keep-alive timeouts (gunicorn's 2 s), so the app never closes one just as slum reuses it.
POOL_IDLE_S = 1.5
CONTINUE_WAIT_S = 1.0  # how long an `Expect: 100-continue` body waits for the upstream's 100
MAX_IDLE_PER_UPSTREAM = 64
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Upstream:
    key: tuple[object, ...]  # pool key: (port, pid) so a reused port never gets old connections
    port: int = 0
    unix_path: str | None = None
    host: str = "127.0.0.1"
    response_timeout_s: float | None = None  # a service's request_timeout, else the pool's


class Pool:
    def __init__(
        self,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        response_timeout_s: float = FIRST_BYTE_TIMEOUT_S,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        keepalive_s: float = POOL_IDLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle: dict[tuple[object, ...], list[tuple[float, Connection]]] = {}
        self.connect_timeout_s = connect_timeout_s
        self.response_timeout_s = response_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.keepalive_s = keepalive_s
        self.clock = clock  # cheaper than trio.current_time(), twice per request

    async def connect(self, up: Upstream, *, fresh: bool = False) -> tuple[Connection, bool]:
        idle = self._idle.get(up.key)
        if idle and not fresh:
            oldest = self.clock() - self.keepalive_s
            while idle:
                released, stream = idle.pop()
                if released < oldest:
                    # The newest is too old, so are the rest.
                    stream.close()
                    for _, old in idle:
                        old.close()
                    idle.clear()
                    break
                if stream.idle_ok():
                    return stream, True
                stream.close()
        with trio.move_on_after(self.connect_timeout_s):
            try:
                if up.unix_path is not None:
                    return await connect_unix(up.unix_path), False
                return await connect_tcp(up.host, up.port), False
            except OSError as e:
                raise UpstreamError(502, f"upstream is not answering ({e.strerror})", refused=True) from None
        raise UpstreamError(502, "upstream did not accept the connection in time")

    def release(self, up: Upstream, stream: Connection) -> None:
        idle = self._idle.get(up.key)
        if idle is None:
            idle = self._idle[up.key] = []
        if len(idle) < MAX_IDLE_PER_UPSTREAM:
            idle.append((self.clock(), stream))
        else:
            stream.close()

    def drop(self, key: tuple[object, ...]) -> None:
        for _, stream in self._idle.pop(key, []):
            stream.close()

    def sweep(self) -> None:
        """Close connections idle too long, so an upstream nobody calls holds no descriptors."""
        oldest = self.clock() - self.keepalive_s
        for key, idle in list(self._idle.items()):
            keep = [(t, s) for t, s in idle if t >= oldest]
            for t, s in idle:
                if t < oldest:
                    s.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())


def request_head(
    req: Request, extra: bytes, client_ip: str, *, app: bool = True, via_proxy: bool = False
) -> bytes:
    """The head sent upstream. app: an instance or another node (slum's session cookie is
    removed), rather than slum's own web app. via_proxy: the client is a trusted proxy (Caddy
    terminating TLS), whose X-Forwarded-Proto is kept; anyone else's is replaced by http."""
    parts = [req.method, b" ", req.url, b" HTTP/1.1\r\n"]
    xff = b""
    proto = b"http"
    rules = _REQUEST_RULES
    for name, value in req.headers:
        if b"_" in name:
            # nginx's default: X_Tenant_ID would read as X-Tenant-ID in WSGI and CGI apps.
            continue
        rule = rules.get(name.lower())
        if rule is not None:
            if rule == _DROP:
                continue
            if rule == _XFF:
                xff = value + b", "
                continue
            if rule == _XFP:
                if via_proxy and value.strip().lower() == b"https":
                    proto = b"https"
                continue
            if rule == _COOKIE and app and b"slum_session" in value:
                value = _without_session(value)
                if not value:
                    continue
            elif rule == _EXPECT and not (req.expect and req.has_body):
                continue
        parts += (name, b": ", value, b"\r\n")
    if req.upgrade:
        for name, value in req.headers:
            if name.lower() == b"upgrade":
                parts += (b"Connection: upgrade\r\nUpgrade: ", value, b"\r\n")
    if req.chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    parts += (
        b"X-Forwarded-For: ",
        xff,
        client_ip.encode(),
        b"\r\nX-Forwarded-Proto: ",
        proto,
        b"\r\nX-Forwarded-Host: ",
        req.host,
        b"\r\n",
        extra,
        b"\r\n",
    )
    return b"".join(parts)


def _without_session(value: bytes) -> bytes:
    kept = [c for c in value.split(b";") if c.strip().partition(b"=")[0] not in SESSION_COOKIES]
    return b";".join(kept).strip()


def response_head(resp: ResponseHead, client_keep_alive: bool, chunk: bool) -> bytes:
    parts = [b"HTTP/1.1 ", str(resp.status).encode(), b" ", _reason(resp.status), b"\r\n"]
    for name, value in resp.headers:
        if name.lower() in HOP_BY_HOP:
            continue
        parts += (name, b": ", value, b"\r\n")
    if resp.upgraded is not None:
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
    """Outcome of forwarding one request, for metrics, the error counts and the connection
    loop. fault: what the upstream did wrong, when the response went out anyway (or was cut)."""

    __slots__ = ("body_done", "body_started", "fault", "keep_alive", "status", "streaming")

    def __init__(self) -> None:
        self.status = 0
        self.keep_alive = False
        self.streaming = False
        self.body_started = False
        self.body_done = False
        self.fault = ""


class _Stale(Exception):
    """The connection failed before the upstream sent a single byte of an answer."""


async def forward(
    conn: ClientConnection,
    req: Request,
    up: Upstream,
    pool: Pool,
    extra: bytes,
    *,
    max_body: int = 0,
    app: bool = True,
) -> Exchange:
    """Send req to up and stream the answer back to the client. Raises UpstreamError (or
    ClientError) before anything was sent to the client; afterwards a failure ends the client
    connection and is reported in Exchange.fault. The upstream connection goes back to the pool
    only after a complete exchange: whole body sent, whole response read, nothing after it."""
    ex = Exchange()
    head = request_head(req, extra, conn.peer, app=app, via_proxy=conn.via_proxy)
    stream, reused = await pool.connect(up)
    timeout_s = up.response_timeout_s or pool.response_timeout_s
    try:
        for attempt in (0, 1):
            try:
                if req.has_body:
                    resp = await _exchange(conn, req, stream, head, pool, max_body, ex, timeout_s)
                else:
                    # The common case inline: one coroutine less per request.
                    ex.body_done = True
                    try:
                        await stream.send_all(head)
                    except OSError as e:
                        raise _Stale(e.strerror or str(e)) from None
                    resp = ResponseHead()
                    await _read_head(conn, stream, resp, timeout_s)
                break
            except _Stale as e:
                stream.close()
                if attempt or not reused or ex.body_started or req.method not in IDEMPOTENT:
                    what = "without answering" if attempt else ""
                    raise UpstreamError(502, f"upstream closed the connection {what}({e})") from None
                # A pooled connection the upstream closed meanwhile: once more on a fresh one.
                stream, _ = await pool.connect(up, fresh=True)
        if (resp.upgraded is not None or resp.status == 101) and (not req.upgrade or resp.upgraded is None):
            raise UpstreamError(502, "upstream switched protocols unasked")
    except BaseException:
        stream.close()
        raise
    ex.status = resp.status
    try:
        return await _relay(conn, req, up, pool, stream, resp, ex)
    finally:
        resp.release()


async def _exchange(
    conn: ClientConnection,
    req: Request,
    stream: Connection,
    head: bytes,
    pool: Pool,
    max_body: int,
    ex: Exchange,
    timeout_s: float,
) -> ResponseHead:
    resp = ResponseHead()
    try:
        await stream.send_all(head)
    except OSError as e:
        raise _Stale(e.strerror or str(e)) from None
    if req.has_body:
        if req.expect and not ex.body_started:
            # As nginx does: the body waits for the upstream's 100 (or a short while), and the
            # 100 goes on to the client, which is holding its body back for it.
            await _read_continue(stream, resp)
            if resp.head_done:
                return resp  # answered without the body (401, 413...): it is never sent
            with trio.move_on_after(5):
                await conn.stream.send_all(CONTINUE)
        await _send_body(conn, req, stream, max_body, ex, timeout_s)
    else:
        ex.body_done = True
    if not resp.head_done:
        await _read_head(conn, stream, resp, timeout_s)
    return resp


async def _send_body(
    conn: ClientConnection, req: Request, stream: Connection, max_body: int, ex: Exchange, timeout_s: float
) -> None:
    total = 0
    while True:
        chunk = await conn.body_chunk()
        if chunk is None:
            if req.chunked:
                await _send_piece(stream, b"0\r\n\r\n", ex, timeout_s)
            ex.body_done = True
            return
        total += len(chunk)
        if max_body and total > max_body:
            raise ClientError(f"request body larger than {max_body} bytes", 413)
        ex.body_started = True
        if not await _send_piece(stream, _chunked(chunk) if req.chunked else chunk, ex, timeout_s):
            return  # the upstream answered (or closed) before taking the whole body


async def _send_piece(stream: Connection, data: bytes, ex: Exchange, timeout_s: float) -> bool:
    try:
        return await stream.send_all_unless_answered(data, timeout_s)
    except TimeoutError:
        raise UpstreamError(504, f"upstream stopped reading the request body for {timeout_s:g}s") from None
    except OSError:
        # Closed while we were sending: its answer (if any) may still be waiting to be read.
        ex.body_started = True
        return False


async def _read_head(
    conn: ClientConnection, stream: Connection, resp: ResponseHead, timeout_s: float
) -> None:
    """Read until the final response head has arrived. The timeout is the client connection's
    (see ClientConnection.expire): a wait records its deadline, no cancel scope per request."""
    sock = stream.sock
    received = 0
    while not resp.head_done:
        try:
            data = sock.recv(READ)
        except BlockingIOError:
            conn.deadline = trio.current_time() + timeout_s
            conn.waiting = "upstream"
            await wait_readable(sock)
            conn.waiting = ""
            continue
        except OSError as e:
            if received:
                raise UpstreamError(502, f"upstream connection failed mid-head ({e.strerror})") from None
            raise _Stale(e.strerror or str(e)) from None
        received = _feed_head(resp, data, received)


def _feed_head(resp: ResponseHead, data: bytes, received: int) -> int:
    """One read of a response head: EOF before any byte is a stale pooled connection (safe to
    retry), EOF after some is a cut head; a head over 64 KiB is refused. Returns bytes so far."""
    if not data:
        if received:
            raise UpstreamError(502, "upstream closed the connection in the middle of the response head")
        raise _Stale("no response")
    received += len(data)
    resp.feed(data)
    if not resp.head_done and received > MAX_HEAD:
        raise UpstreamError(502, "upstream response head larger than 64 KiB")
    return received


async def _read_continue(stream: Connection, resp: ResponseHead) -> None:
    """For `Expect: 100-continue`: read until a 100 or the final head, or CONTINUE_WAIT_S."""
    received = 0
    with trio.move_on_after(CONTINUE_WAIT_S):
        while not resp.head_done and not resp.continued:
            try:
                data = await stream.receive_some(READ)
            except OSError as e:
                raise _Stale(e.strerror or str(e)) from None
            received = _feed_head(resp, data, received)


async def _relay(
    conn: ClientConnection,
    req: Request,
    up: Upstream,
    pool: Pool,
    stream: Connection,
    resp: ResponseHead,
    ex: Exchange,
) -> Exchange:
    client = conn.stream
    if resp.upgraded is not None:
        ex.streaming = True
        conn.responded = True
        await client.send_all(response_head(resp, True, False) + resp.upgraded)
        await pipe(conn, stream)
        return ex
    has_length = up_chunked = False
    try:
        for name, value in resp.headers:
            lname = name.lower()
            if lname == b"content-length":
                has_length = True
            elif lname == b"transfer-encoding":
                if value.strip().lower() != b"chunked":
                    # Passed on undecoded with its header dropped, the body would be garbage.
                    raise UpstreamError(502, "upstream used a transfer coding other than chunked")
                up_chunked = True
    except BaseException:
        stream.close()
        raise
    no_body = req.method == b"HEAD" or resp.status in (204, 304)
    if req.method == b"HEAD":
        # The parser cannot know the request was HEAD: it takes what follows for a body.
        resp.complete = True
        if resp.body:
            resp.body.clear()
            resp.unsolicited = True
    chunk = not has_length and not no_body
    keep = req.keep_alive and ex.body_done
    if chunk and req.version == "1.0":
        # An HTTP/1.0 client knows no chunking: the body ends when the connection closes.
        chunk = keep = False
    out = response_head(resp, keep, chunk)
    conn.responded = True
    ok = False
    stall = 0
    try:
        while True:
            if resp.body:
                body = b"".join(resp.body)
                resp.body.clear()
                out += _chunked(body) if chunk else body
                stall = 0
            if resp.complete:
                if chunk:
                    out += b"0\r\n\r\n"
                await conn.send_all(out)
                ok = True
                break
            if out:
                await conn.send_all(out)
                out = b""
            ex.streaming = True
            try:
                with trio.move_on_after(pool.idle_timeout_s) as idle:
                    data = await stream.receive_some(READ)
            except OSError:
                data = b""
                ex.fault = "upstream connection failed in the middle of the response"
                keep = False
                break
            if idle.cancelled_caught or not data:
                # Upstream died (or went silent) mid-response: end the client's response
                # cleanly by closing; it must not hang waiting for bytes that will not come.
                if not data and not idle.cancelled_caught and not has_length and not up_chunked:
                    resp.complete = True  # close-delimited body: EOF is its end
                    resp.keep_alive = False
                    continue
                ex.fault = (
                    "upstream went silent in the middle of the response"
                    if idle.cancelled_caught
                    else "upstream closed the connection in the middle of the response"
                )
                keep = False
                break
            try:
                resp.feed(data)
            except UpstreamError as e:
                ex.fault = e.message
                keep = False
                break
            if not resp.body and not resp.complete:
                stall += len(data)
                if stall > MAX_TRAILER:
                    ex.fault = "upstream sent too many bytes of chunk framing or trailers"
                    keep = False
                    break
    finally:
        if ok and resp.keep_alive and ex.body_done and not resp.unsolicited:
            pool.release(up, stream)
        else:
            stream.close()
    if resp.unsolicited and not ex.fault:
        ex.fault = "upstream sent bytes after the end of its response"
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


__all__ = ["ClientError", "ClientGone", "Exchange", "Pool", "Upstream", "UpstreamError", "forward", "pipe"]
