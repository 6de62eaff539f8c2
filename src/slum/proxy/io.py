"""Non-blocking sockets for the edge, with trio only for waiting.

trio's SocketStream yields to the scheduler on every send and receive, even when the kernel
could do the work at once, and wraps each call in several context managers; on the proxy's hot
path that was a third of the CPU per request. Here a send or receive is tried first and trio is
asked to wait only when the socket would block. The edge still yields once per request (see
Edge.handle), so one busy connection cannot starve the others.
"""

from __future__ import annotations

import errno
import logging
import resource
import select
import socket
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger("slum.edge")

wait_readable = trio.lowlevel.wait_readable
wait_writable = trio.lowlevel.wait_writable


class Connection:
    __slots__ = ("_poller", "closed", "sock")

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.closed = False
        self._poller: select.poll | None = None

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
                view = view[sock.send(view) :]
            except BlockingIOError:
                continue

    async def send_all_unless_answered(self, data: bytes | bytearray | memoryview, timeout_s: float) -> bool:
        """send_all for a request body: False, with the rest unsent, as soon as the peer says
        something (an early answer such as 413, or a close) instead of reading on."""
        sock = self.sock
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):
            return True
        view = memoryview(data)[sent:]
        while view:
            if await _writable_or_readable(sock, timeout_s):
                return False
            try:
                view = view[sock.send(view) :]
            except BlockingIOError:
                continue
        return True

    def idle_ok(self) -> bool:
        """For a pooled connection: True if the peer has neither closed it nor sent anything
        since its last response (either makes it useless for the next request)."""
        # Readable means bytes or EOF: either way not fit. A poll object per connection is
        # the cheapest check (a recv peek raises an exception on every healthy connection).
        poller = self._poller
        if poller is None:
            poller = self._poller = select.poll()
            poller.register(self.sock, select.POLLIN)
        try:
            return not poller.poll(0)
        except OSError:
            return False

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


async def _writable_or_readable(sock: socket.socket, timeout_s: float) -> bool:
    """Wait until sock can take more bytes (False) or has something to say (True)."""
    readable = False

    async def wait_read() -> None:
        nonlocal readable
        await wait_readable(sock)
        readable = True
        nursery.cancel_scope.cancel()

    async def wait_write() -> None:
        await wait_writable(sock)
        nursery.cancel_scope.cancel()

    with trio.move_on_after(timeout_s) as timer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_read)
            nursery.start_soon(wait_write)
    if timer.cancelled_caught:
        raise TimeoutError("the upstream stopped reading the request body")
    return readable


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
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
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


def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class Gate:
    """Counts open connections; at the cap the accept loops wait for one to close, so the
    kernel's backlog holds newcomers instead of slum running out of descriptors."""

    __slots__ = ("_room", "limit", "open")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self._room: trio.Event | None = None

    async def wait_room(self) -> None:
        while self.open >= self.limit:
            if self._room is None:
                self._room = trio.Event()
            await self._room.wait()

    def enter(self) -> None:
        self.open += 1

    def leave(self) -> None:
        self.open -= 1
        if self._room is not None and self.open < self.limit:
            self._room.set()
            self._room = None


ACCEPT_RETRY = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EPERM})


async def serve(
    listener: socket.socket,
    handler: Callable[[Connection], Awaitable[None]],
    nursery: trio.Nursery,
    gate: Gate | None = None,
) -> None:
    backoff = 0.01
    while True:
        if gate is not None and gate.open >= gate.limit:
            await gate.wait_room()
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            await wait_readable(listener)
            continue
        except OSError as e:
            if e.errno in ACCEPT_RETRY:
                continue
            if e.errno in (errno.EBADF, errno.EINVAL, errno.ENOTSOCK):
                return  # the listener was closed: the edge is draining
            # Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) or anything else the
            # kernel says: let connections finish, try again, never end the nursery.
            log.warning("accept failed (%s): retrying in %.2fs", e.strerror or e, backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)
            continue
        backoff = 0.01
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock)
        except OSError:
            sock.close()  # reset before we got to it
            continue
        if gate is not None:
            gate.enter()
        nursery.start_soon(handler, conn)
