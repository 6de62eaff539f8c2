"""Is an instance ready? A TCP connect, then (when the service has a health path) an HTTP GET.
An app may listen on its unix socket (SOCKET_PATH, as tenement's apps do) instead of on PORT:
readiness watches both, and the checks then go over the socket."""

from __future__ import annotations

import errno
import socket

import trio

CHECK_TIMEOUT_S = 2.0
# slum itself out of descriptors says nothing about the app: such a check counts as passed.
OWN_SHORTAGE = (errno.EMFILE, errno.ENFILE)


def _own_shortage(e: BaseException | None) -> bool:
    # trio's open_tcp_stream raises a summary OSError caused by a group of the attempts' errors
    if e is None:
        return False
    if isinstance(e, OSError) and e.errno in OWN_SHORTAGE:
        return True
    if isinstance(e, BaseExceptionGroup):
        return any(_own_shortage(sub) for sub in e.exceptions)
    return _own_shortage(e.__cause__)


async def _open(port: int, unix: str | None) -> trio.abc.Stream:
    if unix is not None:
        return await trio.open_unix_socket(unix)
    return await trio.open_tcp_stream("127.0.0.1", port)


async def tcp_ok(port: int, timeout_s: float = CHECK_TIMEOUT_S, unix: str | None = None) -> bool:
    with trio.move_on_after(timeout_s):
        try:
            stream = await _open(port, unix)
        except OSError as e:
            return _own_shortage(e)
        await stream.aclose()
        return True
    return False


async def http_ok(port: int, path: str, timeout_s: float = CHECK_TIMEOUT_S, unix: str | None = None) -> bool:
    """GET path; a 2xx or 3xx status is healthy."""
    with trio.move_on_after(timeout_s):
        try:
            stream = await _open(port, unix)
        except OSError as e:
            return _own_shortage(e)
        return await _get_ok(stream, port, path)
    return False


async def _get_ok(stream: trio.abc.Stream, port: int, path: str) -> bool:
    """One GET on an open connection (closed after): is the status 2xx or 3xx?"""
    try:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "User-Agent: slum-health\r\nConnection: close\r\n\r\n"
        )
        await stream.send_all(request.encode())
        head = b""
        while b"\r\n" not in head and len(head) < 1024:
            chunk = await stream.receive_some(1024)
            if not chunk:
                break
            head += chunk
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    finally:
        await stream.aclose()
    parts = head.split(b" ", 2)
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1][:1] in (b"2", b"3")


async def check(port: int, path: str | None, unix: str | None = None) -> bool:
    return await (http_ok(port, path, unix=unix) if path else tcp_ok(port, unix=unix))


async def _connect(port: int, unix: str | None) -> tuple[trio.abc.Stream, str | None] | None:
    """A connection to the app on its port, else on its unix socket; None while neither listens.

    A bare socket's connect, not trio.open_tcp_stream: polled every millisecond while an app
    starts, a refused attempt costs ~40 us of CPU this way and ~115 us through open_tcp_stream's
    happy-eyeballs machinery, CPU that a starting app on a busy machine waits for."""
    for family, address, via in ((socket.AF_INET, ("127.0.0.1", port), None), (socket.AF_UNIX, unix, unix)):
        if address is None:
            continue
        try:
            sock = trio.socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            return None
        try:
            await sock.connect(address)
        except OSError:
            sock.close()
            continue
        except BaseException:
            sock.close()
            raise
        return trio.SocketStream(sock), via
    return None


def _pause(waited: float, poll_s: float) -> float:
    """Every millisecond at first (a refused connect on loopback costs tens of microseconds, and
    most apps listen within ~100 ms), then every poll_s, then less often for a slow starter."""
    return 0.001 if waited < 0.2 else poll_s if waited < 2 else 0.02


async def wait_ready(
    port: int, path: str | None, poll_s: float = 0.003, unix: str | None = None
) -> str | None:
    """Until the app listens (and, with a health path, answers it 2xx/3xx). Returns the unix
    socket the app answered on, or None for its port.

    The health request goes on the connection that found the app listening: a separate connect
    first would cost a wake one more accept by an app that is still busy starting (a
    single-threaded app serves them one after another)."""
    start = trio.current_time()
    while True:
        # Polling is the point: the app gives no event to wait on.
        found = await _connect(port, unix)
        if found is not None:
            stream, via = found
            if path is None:
                await stream.aclose()
                return via
            with trio.move_on_after(CHECK_TIMEOUT_S):
                if await _get_ok(stream, port, path):
                    return via
            await stream.aclose()
        await trio.sleep(_pause(trio.current_time() - start, poll_s))
