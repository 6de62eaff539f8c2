"""Non-blocking sockets for the edge, with trio only for waiting.

trio's SocketStream yields to the scheduler on every send and receive, even when the kernel
could do the work at once, and wraps each call in several context managers; on the proxy's hot
path that was a third of the CPU per request. Here a send or receive is tried first and trio is
asked to wait only when the socket would block. The edge still yields once per request (see
Edge.handle), so one busy connection cannot starve the others.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable

import trio

wait_readable = trio.lowlevel.wait_readable
wait_writable = trio.lowlevel.wait_writable


class Connection:
    __slots__ = ("closed", "sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        while view:
            await wait_writable(sock)
            try:
                view = view[sock.send(view):]
            except BlockingIOError:
                continue

    async def receive_some(self, max_bytes: int) -> bytes:
        sock = self.sock
        while True:
            try:
                return sock.recv(max_bytes)
            except BlockingIOError:
                await wait_readable(sock)

    def peer(self) -> str:
        try:
            addr = self.sock.getpeername()
        except OSError:
            return ""
        return addr[0] if isinstance(addr, tuple) else "unix"

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()


async def connect_tcp(host: str, port: int) -> Connection:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return await _connect(sock, (host, port))


async def connect_unix(path: str) -> Connection:
    return await _connect(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), path)


async def _connect(sock: socket.socket, address: object) -> Connection:
    sock.setblocking(False)
    try:
        code = sock.connect_ex(address)  # type: ignore[arg-type]
        if code in (errno.EINPROGRESS, errno.EAGAIN):
            await wait_writable(sock)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, errno.errorcode.get(code, "connect failed"))
    except BaseException:
        sock.close()
        raise
    return Connection(sock)


def listen_tcp(host: str, port: int, backlog: int = 1024) -> list[socket.socket]:
    """Listening sockets for host (both families for '::' or '' where available)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    socks = []
    for family, kind, proto, _, addr in infos[:1] if host else infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        socks.append(sock)
    return socks


async def serve(listener: socket.socket, handler: Callable[[Connection], Awaitable[None]],
                nursery: trio.Nursery) -> None:
    while True:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            await wait_readable(listener)
            continue
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                await trio.sleep(0.1)  # out of descriptors: let connections finish first
                continue
            raise
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        nursery.start_soon(handler, Connection(sock))
