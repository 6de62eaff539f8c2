"""Scale to zero and wake on request, as a user sees it through the edge."""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Slum, write_config

CONFIG = """
[settings]
data_dir = "./data"
health_check_interval = 0.5
max_held_requests = 150
max_restarts = 1
backoff_base_ms = 50
backoff_max_ms = 100

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"
idle_timeout = 1.5

[service.slow]
command = ["{python}", "{children}/web.py"]
health = "/health"
startup_timeout = 1
[service.slow.env]
START_DELAY = "5"

[service.crash]
command = ["{python}", "{children}/crash.py"]

[service.ws]
command = ["{python}", "{children}/ws_echo.py"]
idle_timeout = 1

[service.stream]
command = ["{python}", "{children}/stream.py"]
health = "/health"
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slum]:
    directory = tmp_path_factory.mktemp("wake")
    write_config(directory, CONFIG)
    s = Slum(directory, free_port())
    s.start()
    try:
        yield s
    finally:
        s.stop()


def instance(s: Slum, ref: str) -> dict:  # type: ignore[type-arg]
    return {i["id"]: i for i in s.cli_json("ps")}[ref]


def wait_status(s: Slum, ref: str, status: str, timeout: float = 10) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inst = instance(s, ref)
        if inst["status"] == status:
            return inst
        time.sleep(0.1)
    raise AssertionError(f"{ref} never became {status}: {instance(s, ref)}")


def test_idle_instance_stops_and_the_next_request_wakes_it(node: Slum) -> None:
    node.cli("spawn", "web", "--id", "sleepy", check=True)
    stopped = wait_status(node, "web:sleepy", "sleeping")
    assert stopped["reason"] == "idle" and stopped["port"] is None and stopped["pid"] is None
    assert "sleeping" in node.cli("ps", check=True).stdout
    started = time.monotonic()
    status, _, body = node.http("GET", "/hello", host="sleepy.web.localhost")
    assert (status, body) == (200, b"web:sleepy /hello")
    assert time.monotonic() - started < 5
    woken = instance(node, "web:sleepy")
    assert woken["status"] == "healthy" and woken["wakes"] == 1


def test_a_burst_shares_one_wake(node: Slum) -> None:
    node.cli("spawn", "web", "--id", "burst", check=True)
    wait_status(node, "web:burst", "sleeping")
    before = instance(node, "web:burst")["wakes"]

    def one(_: int) -> tuple[int, bytes]:
        status, _, body = node.http("GET", "/pid", host="burst.web.localhost", timeout=60)
        return status, body

    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(one, range(100)))
    assert {status for status, _ in results} == {200}
    assert len({body for _, body in results}) == 1  # one process answered them all
    assert instance(node, "web:burst")["wakes"] == before + 1


def test_failed_instance_is_503_at_once_with_the_reason(node: Slum) -> None:
    node.cli("spawn", "crash", "--id", "c")
    wait_status(node, "crash:c", "failed", timeout=15)
    started = time.monotonic()
    status, headers, body = node.http("GET", "/", host="c.crash.localhost")
    assert status == 503 and b"failed" in body and b"exited with code 3" in body
    assert headers["retry-after"]
    assert time.monotonic() - started < 1


def test_startup_timeout_is_503_with_retry_after(node: Slum) -> None:
    started = time.monotonic()
    node.cli("spawn", "slow", "--id", "s")  # settles to backoff: not ready in 1 s
    status, headers, _body = node.http("GET", "/", host="s.slow.localhost")
    assert status == 503 and "retry-after" in headers
    assert time.monotonic() - started < 12


def test_websocket_counts_as_activity(node: Slum) -> None:
    node.cli("spawn", "ws", "--id", "chat", check=True)
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        sock.sendall(
            (
                f"GET / HTTP/1.1\r\nHost: chat.ws.localhost\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        time.sleep(3)  # three idle timeouts with the socket open and silent
        assert instance(node, "ws:chat")["status"] == "healthy"
    wait_status(node, "ws:chat", "sleeping", timeout=10)


def test_a_silent_upstream_is_504(tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_config(tmp_path, CONFIG.replace("[settings]\n", "[settings]\nresponse_timeout_s = 1.5\n"))
    s = Slum(tmp_path, free_port())
    s.start()
    try:
        s.cli("spawn", "stream", "--id", "st", check=True)
        started = time.monotonic()
        status, _, body = s.http("GET", "/slowhead?s=4", host="st.stream.localhost")
        assert status == 504 and b"no response within 1.5s" in body
        assert time.monotonic() - started < 3.5
    finally:
        s.stop()


def test_hold_queue_is_bounded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    write_config(
        tmp_path,
        CONFIG.replace("max_held_requests = 150", "max_held_requests = 3")
        .replace('START_DELAY = "5"', 'START_DELAY = "2"')
        .replace("startup_timeout = 1\n", "startup_timeout = 10\n"),
    )
    s = Slum(tmp_path, free_port())
    s.start()
    try:

        def one(_: int) -> int:
            return s.http("GET", "/", host="h.slow.localhost", timeout=30)[0]

        s.cli("spawn", "slow", "--id", "h", check=True)
        s.cli("stop", "slow:h", check=True)
        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(one, range(12)))
        assert statuses.count(200) >= 3 and statuses.count(503) >= 1
        assert set(statuses) <= {200, 503}
    finally:
        s.stop()
