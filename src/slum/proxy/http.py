"""The HTTP/1.1 pieces the edge needs: a request parsed from a client connection (httptools, a C
parser), a response head read from an upstream, and short responses of slum's own."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import httptools

from slum.proxy.io import Connection

MAX_HEAD = 64 * 1024
READ = 65536
END = None  # marks the end of a request body in the event queue

REASONS = {
    200: "OK", 302: "Found", 400: "Bad Request", 404: "Not Found", 408: "Request Timeout",
    413: "Content Too Large", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}


class ClientGone(Exception):
    """The client closed the connection in the middle of a request."""


class HeadTooLarge(Exception):
    pass


class Request:
    __slots__ = ("chunked", "content_length", "headers", "host", "keep_alive", "method",
                 "router_token", "tenant_hint", "upgrade", "url", "version")

    def __init__(self, method: bytes, url: bytes, headers: list[tuple[bytes, bytes]],
                 version: str, keep_alive: bool, upgrade: bool) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.upgrade = upgrade
        self.host = b""
        self.chunked = False
        self.content_length = -1
        self.router_token = b""
        self.tenant_hint = b""
        for name, value in headers:
            n = name.lower()
            if n == b"host":
                self.host = value
            elif n == b"x-slum-router":
                self.router_token = value
            elif n == b"x-tenant-id":
                self.tenant_hint = value
            elif n == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            elif n == b"content-length" and value.strip().isdigit():
                self.content_length = int(value)

    @property
    def path(self) -> bytes:
        return self.url.split(b"?", 1)[0]


class ClientConnection:
    """Feeds a client's bytes to the parser and hands out requests and body chunks in order,
    pipelined requests included; an upgrade leaves the rest of the bytes in `upgraded`."""

    def __init__(self, stream: Connection) -> None:
        self.stream = stream
        self.parser = httptools.HttpRequestParser(self)
        self.events: deque[Any] = deque()
        self.upgraded: bytes | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._in_head = False
        self.peer = stream.peer()

    # parser callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        p = self.parser
        self.events.append(Request(p.get_method(), self._url, self._headers,
                                   p.get_http_version(), p.should_keep_alive(),
                                   p.should_upgrade()))
        self._in_head = False
        self._head_bytes = 0

    def on_body(self, body: bytes) -> None:
        self.events.append(body)

    def on_message_complete(self) -> None:
        self.events.append(END)

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(READ)
        if not data:
            return False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.upgraded = data[e.args[0]:]
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                raise HeadTooLarge()
        return True

    async def next_request(self) -> Request | None:
        """The next request's head, or None when the client is done."""
        while True:
            while self.events:
                event = self.events.popleft()
                if isinstance(event, Request):
                    return event
            if self.upgraded is not None:
                return None
            if not await self._fill():
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
            if not await self._fill():
                raise ClientGone()


class ResponseHead:
    """Parses one upstream response: status, headers, then body pieces as they come."""

    __slots__ = ("body", "complete", "head_done", "headers", "keep_alive", "parser", "status",
                 "upgraded")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.upgraded: bytes | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self.keep_alive and self.parser.should_keep_alive()

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self.upgraded = data[e.args[0]:]
            self.complete = True


def simple_response(status: int, text: str, *, keep_alive: bool = True,
                    extra: Sequence[tuple[str, str]] = ()) -> bytes:
    body = (text + "\n").encode()
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
            "Content-Type: text/plain; charset=utf-8", f"Content-Length: {len(body)}",
            "Server: slum"]
    head.extend(f"{k}: {v}" for k, v in extra)
    if not keep_alive:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body
