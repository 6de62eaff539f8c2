"""Is an instance ready? A TCP connect, then (when the service has a health path) an HTTP GET."""

from __future__ import annotations

import trio

CHECK_TIMEOUT_S = 2.0


async def tcp_ok(port: int, timeout_s: float = CHECK_TIMEOUT_S) -> bool:
    with trio.move_on_after(timeout_s):
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            return False
        await stream.aclose()
        return True
    return False


async def http_ok(port: int, path: str, timeout_s: float = CHECK_TIMEOUT_S) -> bool:
    """GET path; a 2xx or 3xx status is healthy."""
    with trio.move_on_after(timeout_s):
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            return False
        try:
            request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       "User-Agent: slum-health\r\nConnection: close\r\n\r\n")
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
    return False


async def check(port: int, path: str | None) -> bool:
    return await (http_ok(port, path) if path else tcp_ok(port))


async def wait_listening(port: int, poll_s: float = 0.003) -> None:
    """Poll a TCP connect: every millisecond at first (a refused connect on loopback costs tens
    of microseconds, and most apps listen within ~100 ms), then every poll_s, then less often
    for a slow starter. A wake should cost little more than the app's own start."""
    start = trio.current_time()
    while True:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            waited = trio.current_time() - start
            await trio.sleep(0.001 if waited < 0.2 else poll_s if waited < 2 else 0.02)
            continue
        await stream.aclose()
        return


async def wait_ready(port: int, path: str | None, poll_s: float = 0.003) -> None:
    await wait_listening(port, poll_s)
    if path is None:
        return
    # Polling is the point: the app gives no event to wait on.
    while not await http_ok(port, path):  # noqa: ASYNC110
        await trio.sleep(poll_s)
