"""What the edge sends upstream, and the pool's rules for reusing a connection."""

from __future__ import annotations

import socket

import trio
import trio.testing

from slum.proxy.forward import Pool, Upstream, request_head
from slum.proxy.http import Request
from slum.proxy.io import Connection


def req(*headers: tuple[bytes, bytes], upgrade: bool = False) -> Request:
    return Request(b"GET", b"/x", [(b"Host", b"app.localhost"), *headers], "1.1", True, upgrade)


def test_request_head_strips_what_clients_must_not_choose() -> None:
    head = request_head(
        req(
            (b"X_Tenant_ID", b"mallory"),
            (b"X-Tenant-ID", b"mallory"),
            (b"HTTP2-Settings", b"AAA"),
            (b"Upgrade", b"h2c"),
            (b"Cookie", b"a=1; slum_session=s; __Host-slum_session=t; b=2"),
            (b"Expect", b"100-continue"),
        ),
        b"X-Tenant-ID: app\r\n",
        "10.0.0.1",
    )
    assert b"mallory" not in head and b"HTTP2-Settings" not in head and b"h2c" not in head
    assert b"Cookie: a=1; b=2\r\n" in head
    assert b"Expect" not in head  # a GET without a body expects nothing
    assert head.endswith(
        b"X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\n"
        b"X-Forwarded-Host: app.localhost\r\nX-Tenant-ID: app\r\n\r\n"
    )


def test_x_forwarded_proto_is_believed_only_from_a_trusted_proxy() -> None:
    https = (b"X-Forwarded-Proto", b"https")
    assert b"X-Forwarded-Proto: http\r\n" in request_head(req(https), b"", "203.0.113.9")
    assert b"X-Forwarded-Proto: https\r\n" in request_head(req(https), b"", "127.0.0.1", via_proxy=True)
    # A trusted proxy may say https or nothing else: any other value is http.
    odd = (b"X-Forwarded-Proto", b"gopher")
    assert b"X-Forwarded-Proto: http\r\n" in request_head(req(odd), b"", "127.0.0.1", via_proxy=True)
    assert request_head(req(https), b"", "127.0.0.1", via_proxy=True).count(b"Proto") == 1


def test_the_web_app_keeps_its_session_cookie_and_lone_session_cookies_vanish() -> None:
    own = request_head(req((b"Cookie", b"slum_session=s")), b"", "1.2.3.4", app=False)
    assert b"Cookie: slum_session=s\r\n" in own
    app = request_head(req((b"Cookie", b"slum_session=s")), b"", "1.2.3.4")
    assert b"Cookie" not in app


async def test_pool_never_reuses_a_closed_or_chatty_or_old_connection(
    autojump_clock: trio.testing.MockClock,
) -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    pool = Pool(keepalive_s=1.5, clock=trio.current_time)
    up = Upstream(("test",), listener.getsockname()[1])
    servers: list[trio.socket.SocketType] = []
    clients: list[Connection] = []

    async def connect() -> bool:
        conn, reused = await pool.connect(up)
        clients.append(conn)
        if not reused:
            servers.append((await listener.accept())[0])
        return reused

    try:
        assert not await connect()
        pool.release(up, clients[-1])
        assert await connect()  # healthy and recent: reused
        pool.release(up, clients[-1])
        servers[-1].close()  # closed by the app while idle
        await trio.sleep(0.01)
        assert not await connect()
        pool.release(up, clients[-1])
        await servers[-1].send(b"HTTP/1.1 200 OK\r\n\r\n")  # unsolicited bytes
        await trio.sleep(0.01)
        assert not await connect()
        pool.release(up, clients[-1])
        await trio.sleep(2)  # idle longer than keepalive_s
        assert not await connect()
        pool.release(up, clients[-1])
        await trio.sleep(2)
        pool.sweep()
        assert pool.idle_count() == 0
    finally:
        for s in servers:
            s.close()
        for c in clients:
            c.close()
        listener.close()


async def test_socketpair_idle_ok() -> None:
    a, b = socket.socketpair()
    conn = Connection(a)
    assert conn.idle_ok()
    b.close()
    assert not conn.idle_ok()
    conn.close()
