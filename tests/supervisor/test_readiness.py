"""Readiness at start and wake: the health request goes on the connection that found the app
listening, so a single-threaded app starting up is asked to accept one connection, not two."""

from __future__ import annotations

import socket

import trio

from slum.supervisor import health


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _app(
    port: int,
    answers: list[bytes],
    accepted: list[bytes],
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listens after a short delay; answers each connection's request with the next status of
    `answers` (the last one repeats), one connection at a time, and records what each got."""
    await trio.sleep(0.05)
    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    async with listeners[0]:
        task_status.started()
        while True:
            stream = await listeners[0].accept()
            async with stream:
                got = b""
                with trio.move_on_after(1):
                    while b"\r\n\r\n" not in got:
                        chunk = await stream.receive_some(4096)
                        if not chunk:
                            break
                        got += chunk
                accepted.append(got)
                if got:
                    status = answers[min(len(accepted) - 1, len(answers) - 1)]
                    await stream.send_all(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")


async def test_health_request_goes_on_the_first_connection() -> None:
    port = _free_port()
    accepted: list[bytes] = []
    async with trio.open_nursery() as n:
        n.start_soon(_app, port, [b"200 OK"], accepted)
        with trio.fail_after(10):
            via = await health.wait_ready(port, "/health")
        n.cancel_scope.cancel()
    assert via is None
    # One connection, and it carried the health request (no bare connect before it).
    assert len(accepted) == 1 and accepted[0].startswith(b"GET /health HTTP/1.1\r\n")


async def test_readiness_waits_for_a_healthy_answer() -> None:
    port = _free_port()
    accepted: list[bytes] = []
    async with trio.open_nursery() as n:
        n.start_soon(_app, port, [b"503 Starting", b"503 Starting", b"204 No Content"], accepted)
        with trio.fail_after(10):
            await health.wait_ready(port, "/health")
        n.cancel_scope.cancel()
    assert [a.split(b"\r\n", 1)[0] for a in accepted] == [b"GET /health HTTP/1.1"] * 3


async def test_without_a_health_path_a_connect_is_enough() -> None:
    port = _free_port()
    accepted: list[bytes] = []
    async with trio.open_nursery() as n:
        n.start_soon(_app, port, [b"500 Never Asked"], accepted)
        with trio.fail_after(10):
            await health.wait_ready(port, None)
        await trio.sleep(0.05)
        n.cancel_scope.cancel()
    assert accepted == [b""]
