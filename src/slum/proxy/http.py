"""The HTTP/1.1 pieces the edge needs: a request parsed from a client connection (httptools, a C
parser), a response head read from an upstream, and short responses of slum's own.

Only two exception types leave this module for protocol problems: ClientError (the client sent
something slum will not forward: answer its status, or close if the response has started) and
UpstreamError (the upstream answered with something slum will not relay: 502, or abort)."""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import httptools
import trio

from slum.proxy.io import Connection, wait_readable, wait_writable

MAX_HEAD = 64 * 1024
# Non-body bytes (chunk headers, extensions, trailers) a body may carry between two pieces of data.
MAX_TRAILER = 64 * 1024
READ = 65536
END = None  # marks the end of a request body in the event queue

REASONS = {
    200: "OK",
    302: "Found",
    400: "Bad Request",
    404: "Not Found",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class ClientGone(Exception):
    """The client closed the connection in the middle of a request."""


class ClientError(Exception):
    """The client broke the protocol or a limit: answer `status` if nothing was sent yet."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class HeadTooLarge(ClientError):
    status = 431

    def __init__(self, message: str = "request head too large") -> None:
        super().__init__(message)


class UpstreamError(Exception):
    def __init__(self, status: int, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.refused = refused  # nothing was sent: safe to try again elsewhere


class Request:
    __slots__ = (
        "bad",
        "chunked",
        "content_length",
        "expect",
        "headers",
        "host",
        "keep_alive",
        "method",
        "router_token",
        "tenant_hint",
        "upgrade",
        "url",
        "version",
    )

    def __init__(
        self,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        version: str,
        keep_alive: bool,
        upgrade: bool,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.host = b""
        self.chunked = False
        self.expect = False
        self.content_length = -1
        self.router_token = b""
        self.tenant_hint = b""
        self.bad: ClientError | None = None
        for name, value in headers:
            n = name.lower()
            if n == b"host":
                if self.host:
                    # Which one would the app believe? Refuse rather than guess (RFC 9112 3.2).
                    self.bad = ClientError("two Host headers")
                self.host = value
            elif n == b"x-slum-router":
                self.router_token = value
            elif n == b"x-tenant-id":
                self.tenant_hint = value
            elif n == b"transfer-encoding":
                # The parser accepts "gzip, chunked"; slum would pass gzip on undecoded.
                if value.strip().lower() != b"chunked":
                    self.bad = ClientError("only the chunked transfer coding is supported", 501)
                self.chunked = True
            elif n == b"content-length" and value.strip().isdigit():
                self.content_length = int(value)
            elif n == b"expect":
                self.expect = value.strip().lower() == b"100-continue" and version == "1.1"

    @property
    def path(self) -> bytes:
        return self.url.split(b"?", 1)[0]

    @property
    def has_body(self) -> bool:
        return self.chunked or self.content_length > 0


def _release(owner: ClientConnection | ResponseHead) -> None:
    """An httptools parser holds its owner's bound methods (its callbacks) and the owner holds
    the parser: a reference cycle, which only the garbage collector frees. One per proxied
    response made the collector run every ~60 requests, 4 us a request in all (bench/metrics.py's
    profile); dropping the parser at the end lets reference counting free both at once."""
    with contextlib.suppress(AttributeError):
        del owner.parser


class ClientConnection:
    """Feeds a client's bytes to the parser and hands out requests and body chunks in order,
    pipelined requests included; an upgrade leaves the rest of the bytes in `upgraded`.

    Waits are bounded: a head must arrive within header_timeout of its first byte (of the
    connection, for the first request), an idle keep-alive connection ends after
    keepalive_timeout, and a body may pause for at most body_timeout. A wait records its
    `deadline` and what it waits for (`waiting`); whoever calls expire() (the edge, a few times a
    second) cancels `scope`, the handler's cancel scope, once the deadline has passed. Setting a
    cancel scope's deadline on every wait cost more than the rest of a request's parsing."""

    def __init__(
        self,
        stream: Connection,
        header_timeout: float = 30.0,
        keepalive_timeout: float = 60.0,
        body_timeout: float = 60.0,
    ) -> None:
        self.stream = stream
        self.parser = httptools.HttpRequestParser(self)
        self.events: deque[Any] = deque()
        self.upgraded: bytes | None = None
        self.scope = trio.CancelScope()
        self.waiting = ""
        self.deadline = math.inf
        self.responded = False  # the current request's response head went out
        self.request: Request | None = None  # the current request
        self.label = ""  # where the current request went (for a timeout's report)
        self.requests = 0
        self.header_timeout = header_timeout
        self.keepalive_timeout = keepalive_timeout
        self.body_timeout = body_timeout
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0  # bytes of the incomplete head read so far
        self._read_other = 0  # bytes of the current read that belong to earlier parts
        self._head_size = 0  # exact size of the head's fields
        self._head_started = trio.current_time()
        self._in_head = False
        self._in_body = False
        self._fed_body = False
        self._overhead = 0
        self._error: ClientError | None = None  # found after requests still to be served
        self.peer = stream.peer()
        # The peer is one of `trusted_proxies` (Caddy in front): its X-Forwarded-Proto is kept.
        self.via_proxy = False

    def release(self) -> None:
        """Drop the parser once the connection ended: see _release."""
        _release(self)

    # parser callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            self._headers.append((name, value))
            self._head_size += len(name) + len(value) + 4
        # else a trailer: never turned into a header (bounded in _fill)

    def on_headers_complete(self) -> None:
        p = self.parser
        # + the request line's method, spaces and version, and the blank line
        if self._head_size + len(self._url) + 20 > MAX_HEAD:
            raise HeadTooLarge()
        self.events.append(
            Request(
                p.get_method(),
                self._url,
                self._headers,
                p.get_http_version(),
                p.should_keep_alive(),
                p.should_upgrade(),
            )
        )
        self._in_head = False
        self._in_body = True
        self._head_bytes = 0
        self._read_other += self._head_size + len(self._url) + 16
        self._head_started = 0.0
        self._overhead = 0

    def on_body(self, body: bytes) -> None:
        self._fed_body = True
        self._read_other += len(body)
        self.events.append(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self.events.append(END)

    async def _receive(self, what: str) -> bytes:
        sock = self.stream.sock
        while True:
            try:
                return sock.recv(READ)
            except BlockingIOError:
                pass
            now = trio.current_time()
            if what == "idle":
                self.deadline = now + self.keepalive_timeout
            elif what == "body":
                self.deadline = now + self.body_timeout
            else:
                if not self._head_started:
                    self._head_started = now
                self.deadline = self._head_started + self.header_timeout
            self.waiting = what
            await wait_readable(sock)
            self.waiting = ""  # kept when the wait was cut short: what the timeout interrupted

    async def send_all(self, data: bytes) -> None:
        """Send to the client; a client that takes nothing for body_timeout is cut off (a
        response nobody reads must not hold its upstream connection for ever)."""
        sock = self.stream.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        while view:
            self.deadline = trio.current_time() + self.body_timeout
            self.waiting = "send"
            await wait_writable(sock)
            self.waiting = ""
            try:
                view = view[sock.send(view) :]
            except BlockingIOError:
                continue

    def expire(self, now: float) -> bool:
        """Cancel the connection's scope if it has waited past its deadline (the edge calls
        this for every connection a few times a second: cheaper than a deadline per wait)."""
        if self.waiting and now >= self.deadline:
            self.scope.cancel()
            return True
        return False

    async def _fill(self, what: str) -> bool:
        if self._error is not None:
            raise self._error
        data = await self._receive(what)
        if not data:
            return False
        self._read_other = 0
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.upgraded = data[e.args[0] :]
        except httptools.HttpParserError as e:
            cause = e.__context__
            error = cause if isinstance(cause, ClientError) else ClientError(f"malformed request: {e}")
            if not self.events:
                raise error from None
            # Pipelined requests before the bad bytes are answered first.
            self._error = error
            return True
        if self._in_head:
            # What this read held of earlier messages (bodies, whole heads) is not this head's.
            self._head_bytes += len(data) - self._read_other
            if self._head_bytes > MAX_HEAD:
                raise HeadTooLarge()
        elif self._in_body:
            if self._fed_body:
                self._fed_body = False
                self._overhead = 0
            else:
                self._overhead += len(data)
                if self._overhead > MAX_TRAILER:
                    raise ClientError("request trailers or chunk extensions too large", 431)
        return True

    async def next_request(self) -> Request | None:
        """The next request's head, or None when the client is done."""
        while True:
            while self.events:
                event = self.events.popleft()
                if isinstance(event, Request):
                    self.responded = False
                    self.requests += 1
                    self.request = event
                    return event
            if self.upgraded is not None:
                return None
            if not await self._fill("head" if self._in_head or not self.requests else "idle"):
                return None

    async def body_chunk(self) -> bytes | None:
        """The next piece of the current request's body; None at its end."""
        while True:
            if self.events:
                event = self.events[0]
                if event is END:
                    self.events.popleft()
                    return None
                if isinstance(event, bytes):
                    self.events.popleft()
                    return event
                return None
            if self.upgraded is not None:
                return None
            if not await self._fill("body"):
                raise ClientGone()


class _Unsolicited(Exception):
    pass


class ResponseHead:
    """Parses one upstream response: status, headers, then body pieces as they come.

    Interim 1xx responses are counted and dropped (their headers never join the final ones);
    trailers are dropped; bytes after the end of the response mark the connection unusable
    (`unsolicited`) instead of being read as another response."""

    __slots__ = (
        "body",
        "complete",
        "continued",
        "head_done",
        "head_size",
        "headers",
        "keep_alive",
        "parser",
        "status",
        "unsolicited",
        "upgraded",
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.continued = False  # a 100 Continue arrived
        self.unsolicited = False
        self.head_size = 0
        self.upgraded: bytes | None = None

    def on_message_begin(self) -> None:
        if self.head_done:
            raise _Unsolicited()

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_done:
            self.headers.append((name, value))
            self.head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if self.head_size > MAX_HEAD:
            raise UpstreamError(502, "upstream response head larger than 64 KiB")
        if status < 200 and status != 101:
            if status < 100:
                raise UpstreamError(502, f"upstream sent an invalid status {status}")
            if status == 100:
                self.continued = True
            self.headers = []
            self.head_size = 0
            return
        self.status = status
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True
            self.keep_alive = self.keep_alive and self.parser.should_keep_alive()

    def release(self) -> None:
        """Drop the parser once the response is relayed: see _release."""
        _release(self)

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.upgraded = data[e.args[0] :]
            self.complete = True
        except httptools.HttpParserError as e:
            if self.complete:
                # The response is whole; what follows was not asked for: never reuse this
                # connection (the bytes would be read as the answer to the next request).
                self.unsolicited = True
                self.keep_alive = False
                return
            cause = e.__context__
            if isinstance(cause, UpstreamError):
                raise cause from None
            raise UpstreamError(502, f"upstream sent a malformed response: {e}") from None


def simple_response(
    status: int, text: str, *, keep_alive: bool = True, extra: Sequence[tuple[str, str]] = ()
) -> bytes:
    body = (text + "\n").encode()
    head = [
        f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(body)}",
        "Server: slum",
    ]
    head.extend(f"{k}: {v}" for k, v in extra)
    if not keep_alive:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body
