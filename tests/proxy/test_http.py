"""The parsing units of the edge over real socket pairs: requests, limits, trailers, timeouts,
and upstream responses (interim, trailers, unsolicited bytes, malformed heads)."""

from __future__ import annotations

import gc
import socket
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio
import trio.testing

from slum.proxy.http import (
    MAX_HEAD,
    ClientConnection,
    ClientError,
    HeadTooLarge,
    Request,
    ResponseHead,
    UpstreamError,
)
from slum.proxy.io import Connection

_open: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


async def timed(conn: ClientConnection, wait: Callable[[], Awaitable[object]]) -> None:
    """Run wait() with the edge's timeout ticks running."""

    async def tick() -> None:
        while True:
            await trio.sleep(0.05)
            conn.expire(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tick)
        with conn.scope:
            await wait()
        nursery.cancel_scope.cancel()


def pair() -> tuple[ClientConnection, socket.socket]:
    a, b = socket.socketpair()
    _open.extend((a, b))
    return ClientConnection(Connection(a), 2.0, 3.0, 4.0), b


async def body_of(conn: ClientConnection) -> bytes:
    out = b""
    while (piece := await conn.body_chunk()) is not None:
        out += piece
    return out


async def test_pipelined_requests_and_bodies_in_one_read() -> None:
    conn, peer = pair()
    peer.sendall(
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
        b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nhi\r\n0\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    first = await conn.next_request()
    assert first is not None and first.url == b"/a" and await body_of(conn) == b"abc"
    second = await conn.next_request()
    assert second is not None and second.chunked and await body_of(conn) == b"hi"
    third = await conn.next_request()
    assert third is not None and third.url == b"/c" and not third.has_body
    peer.close()
    assert await conn.next_request() is None


async def test_trailers_never_become_headers() -> None:
    conn, peer = pair()
    peer.sendall(
        b"POST / HTTP/1.1\r\nHost: good\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\nHost: evil\r\nX-Slum-Router: forged\r\n\r\n"
    )
    req = await conn.next_request()
    assert req is not None
    assert await body_of(conn) == b"hello"
    assert req.host == b"good" and req.router_token == b""
    assert [n for n, _ in req.headers] == [b"Host", b"Transfer-Encoding"]


@pytest.mark.parametrize(("size", "ok"), [(MAX_HEAD - 200, True), (MAX_HEAD + 40, False)])
async def test_the_head_limit_is_64_kib_whatever_the_reads(size: int, ok: bool) -> None:
    conn, peer = pair()
    # After a 60 KiB body in the same reads, so earlier bytes must not count for the head.
    body = b"b" * 60_000
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * (size - 40) + b"\r\n\r\n"
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body + head

    async def send() -> None:
        for i in range(0, len(data), 30_000):
            await trio.to_thread.run_sync(peer.sendall, data[i : i + 30_000])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        assert await conn.next_request() is not None
        assert await body_of(conn) == body
        if ok:
            req = await conn.next_request()
            assert req is not None and req.url == b"/"
        else:
            with pytest.raises(HeadTooLarge):
                await conn.next_request()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ],
)
async def test_requests_marked_bad(raw: bytes, status: int) -> None:
    conn, peer = pair()
    peer.sendall(raw)
    req = await conn.next_request()
    assert req is not None and req.bad is not None and req.bad.status == status


async def test_a_bad_chunk_in_a_later_read_is_a_client_error() -> None:
    conn, peer = pair()
    peer.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert await conn.next_request() is not None
    peer.sendall(b"zz\r\n")
    with pytest.raises(ClientError) as e:
        await body_of(conn)
    assert e.value.status == 400


@pytest.mark.parametrize(
    ("sent", "waiting"),
    [
        (b"", "head"),  # a new connection: header_timeout from the accept
        (b"GET / HTTP/1.1\r\nHo", "head"),
    ],
)
async def test_heads_are_timed(autojump_clock: trio.testing.MockClock, sent: bytes, waiting: str) -> None:
    conn, peer = pair()
    peer.sendall(sent)
    start = trio.current_time()
    await timed(conn, conn.next_request)
    assert conn.scope.cancelled_caught and conn.waiting == waiting
    assert trio.current_time() - start == pytest.approx(2.0, abs=0.1)


async def test_idle_and_body_timeouts(autojump_clock: trio.testing.MockClock) -> None:
    conn, peer = pair()
    peer.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    assert await conn.next_request() is not None
    await timed(conn, lambda: body_of(conn))
    assert conn.scope.cancelled_caught and conn.waiting == "body"
    conn, peer = pair()
    peer.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert await conn.next_request() is not None
    start = trio.current_time()
    await timed(conn, conn.next_request)
    assert conn.waiting == "idle" and trio.current_time() - start == pytest.approx(3.0, abs=0.1)


def test_interim_responses_are_dropped_not_merged() -> None:
    resp = ResponseHead()
    resp.feed(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    )
    assert resp.status == 200 and resp.headers == [(b"Content-Length", b"2")]
    assert resp.complete and resp.body == [b"hi"] and resp.continued


def test_unsolicited_bytes_mark_the_connection() -> None:
    resp = ResponseHead()
    resp.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\nX-Evil: 1\r\n\r\n")
    assert resp.complete and resp.unsolicited and not resp.keep_alive
    assert resp.headers == [(b"Content-Length", b"2")] and resp.body == [b"hi"]


def test_response_trailers_are_dropped() -> None:
    resp = ResponseHead()
    resp.feed(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nSet-Cookie: evil=1\r\n\r\n"
    )
    assert resp.complete and resp.headers == [(b"Transfer-Encoding", b"chunked")]


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"b" * (MAX_HEAD + 1) + b"\r\n\r\n",
    ],
)
def test_malformed_responses_are_upstream_errors(raw: bytes) -> None:
    with pytest.raises(UpstreamError) as e:
        ResponseHead().feed(raw)
    assert e.value.status == 502


def test_request_fields() -> None:
    req = Request(
        b"POST",
        b"/p?q=1",
        [(b"Host", b"h"), (b"Expect", b"100-continue"), (b"Content-Length", b"5")],
        "1.1",
        True,
        False,
    )
    assert req.path == b"/p" and req.expect and req.has_body and req.bad is None


async def test_a_client_that_reads_nothing_is_cut_off(autojump_clock: trio.testing.MockClock) -> None:
    conn, _peer = pair()
    start = trio.current_time()
    await timed(conn, lambda: conn.send_all(b"x" * (64 << 20)))
    assert conn.scope.cancelled_caught and conn.waiting == "send"
    assert trio.current_time() - start == pytest.approx(4.0, abs=0.2)  # body_timeout


async def test_released_parsers_leave_nothing_for_the_garbage_collector() -> None:
    # A parser holds its owner's callbacks: without release() each response and connection is a
    # reference cycle, and the collector ran every ~60 proxied requests to free them.
    def unreachable(release: bool) -> int:
        resp = ResponseHead()
        resp.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        assert resp.complete
        conn, _ = pair()
        if release:
            resp.release()
            conn.release()
            conn.release()  # twice is harmless (an error path may come after the end)
        del resp, conn
        return gc.collect()

    gc.disable()
    try:
        gc.collect()
        assert unreachable(release=False) > 0
        assert unreachable(release=True) == 0
    finally:
        gc.enable()
