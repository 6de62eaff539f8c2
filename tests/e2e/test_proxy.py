"""The edge against real upstream processes: streaming, framing, websockets, limits, failures."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.conftest import CHILDREN, PYTHON, free_port
from tests.e2e.conftest import Slum, write_config

CONFIG = """
[settings]
data_dir = "./data"
health_check_interval = 1
max_body_mb = 1

[service.stream]
command = ["{python}", "{children}/stream.py"]
health = "/health"

[service.ws]
command = ["{python}", "{children}/ws_echo.py"]

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"

[service.gone]
command = ["{python}", "{children}/unlisten.py"]
restart = "never"

[service.forgetful]
command = ["{python}", "{children}/forgetful.py"]

[instances]
forgetful = ["f"]
stream = ["s"]
ws = ["w"]
web = ["one"]
gone = ["g"]
"""


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slum]:
    directory = tmp_path_factory.mktemp("proxy")
    write_config(directory, CONFIG)
    s = Slum(directory, free_port())
    s.start()
    deadline = time.monotonic() + 40
    while not all(i["status"] == "healthy" for i in s.cli_json("ps")):
        assert time.monotonic() < deadline, f"not all healthy: {s.cli_json('ps')}"
        time.sleep(0.1)
    try:
        yield s
    finally:
        s.stop()


def connect(s: Slum) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=20)
    return sock


def read_response(sock: socket.socket, buf: bytes = b"") -> tuple[bytes, dict[str, str], bytes, bytes]:
    """One HTTP/1.1 response (Content-Length or chunked or until close); returns the rest too."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, f"closed before a response head: {buf!r}"
        buf += data
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {
        k.decode().lower(): v.decode().strip() for k, _, v in (line.partition(b":") for line in lines[1:])
    }
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            data = sock.recv(65536)
            assert data
            buf += data
        return lines[0], headers, buf[:n], buf[n:]
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += sock.recv(65536)
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line, 16)
            while len(buf) < size + 2:
                buf += sock.recv(65536)
            body += buf[:size]
            buf = buf[size + 2 :]
            if size == 0:
                return lines[0], headers, body, buf
    while data := sock.recv(65536):
        buf += data
    return lines[0], headers, buf, b""


def get(s: Slum, host: str, path: str, extra: str = "") -> tuple[bytes, dict[str, str], bytes]:
    with connect(s) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode())
        status, headers, body, _ = read_response(sock)
        return status, headers, body


def test_chunked_and_close_delimited_responses(edge: Slum) -> None:
    status, headers, body = get(edge, "s.stream.localhost", "/chunked")
    assert status == b"HTTP/1.1 200 OK" and body == b"one,two,three"
    assert headers["transfer-encoding"] == "chunked"
    status, headers, body = get(edge, "s.stream.localhost", "/close")
    assert body == b"until close"


def test_sse_arrives_event_by_event(edge: Slum) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /sse?n=3&gap=0.5 HTTP/1.1\r\nHost: s.stream.localhost\r\n\r\n")
        buf = b""
        arrivals = []
        while len(arrivals) < 3:
            data = sock.recv(65536)
            assert data
            buf += data
            while b"\n\n" in buf:
                _, _, buf = buf.partition(b"\n\n")
                arrivals.append(time.monotonic())
        # Not buffered: the events arrive spread out as the upstream sends them.
        assert arrivals[1] - arrivals[0] > 0.3 and arrivals[2] - arrivals[1] > 0.3


def test_pipelined_requests_keep_their_order(edge: Slum) -> None:
    with connect(edge) as sock:
        sock.sendall(
            b"GET /a HTTP/1.1\r\nHost: s.stream.localhost\r\n\r\n"
            b"GET /b HTTP/1.1\r\nHost: one.web.localhost\r\n\r\n"
        )
        _, _, first, rest = read_response(sock)
        _, _, second, _ = read_response(sock, rest)
    assert (first, second) == (b"/a", b"web:one /b")


def test_upload_streams_with_length_and_chunked(edge: Slum) -> None:
    payload = os.urandom(900_000)
    digest = hashlib.sha256(payload).hexdigest()
    with connect(edge) as sock:
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: s.stream.localhost\r\n"
            b"Content-Length: %d\r\n\r\n" % len(payload) + payload
        )
        _, _, body, _ = read_response(sock)
        assert body == f"{len(payload)} {digest}".encode()
        pieces = [payload[i : i + 100_000] for i in range(0, len(payload), 100_000)]
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: s.stream.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for piece in pieces:
            sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        _, _, body, _ = read_response(sock)
        assert body == f"{len(payload)} {digest}".encode()


def test_body_over_the_limit_is_413(edge: Slum) -> None:
    with connect(edge) as sock:
        size = 3 * 1024 * 1024
        sock.sendall(
            b"POST /upload HTTP/1.1\r\nHost: s.stream.localhost\r\nContent-Length: %d\r\n\r\n" % size
        )
        try:
            sock.sendall(b"z" * size)
        except OSError:
            pass  # the edge may close before reading it all
        status, _, _, _ = read_response(sock)
    assert status.startswith(b"HTTP/1.1 413")


def test_download_streams_in_bounded_memory(edge: Slum) -> None:
    assert edge.proc is not None
    slum_proc = psutil.Process(edge.proc.pid)
    with connect(edge) as sock:
        sock.sendall(b"GET /big?mb=200 HTTP/1.1\r\nHost: s.stream.localhost\r\n\r\n")
        received = 0
        peak = 0
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        received = len(buf.partition(b"\r\n\r\n")[2])
        while received < 200 * 1024 * 1024:
            data = sock.recv(1 << 20)
            assert data
            received += len(data)
            if received % (16 << 20) < len(data):
                peak = max(peak, slum_proc.memory_info().rss)
    assert peak < 150 * 1024 * 1024, f"slum grew to {peak / 2**20:.0f} MiB while streaming"


def test_hop_by_hop_and_spoofed_headers(edge: Slum) -> None:
    import json

    _status, _, body = get(
        edge,
        "one.web.localhost",
        "/echo",
        "X-Tenant-ID: mallory\r\nX-Forwarded-Host: evil\r\nX-Slum-Edge: 0\r\n"
        "X-Forwarded-For: 10.9.9.9\r\nKeep-Alive: timeout=5\r\n"
        "Connection: keep-alive, X-Other\r\nProxy-Authorization: x\r\n",
    )
    echoed = json.loads(body)
    assert echoed["x-tenant-id"] == "one"
    assert echoed["x-forwarded-host"] == "one.web.localhost"
    assert echoed["x-forwarded-for"] == "10.9.9.9, 127.0.0.1"
    assert "x-slum-edge" not in echoed and "keep-alive" not in echoed
    assert "proxy-authorization" not in echoed


def test_malformed_and_oversized_requests(edge: Slum) -> None:
    with connect(edge) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, _, _ = read_response(sock)
        assert status.startswith(b"HTTP/1.1 400")
    with connect(edge) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: one.web.localhost\r\n")
        try:
            for _ in range(100):
                sock.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")
        except OSError:
            pass
        status, _, _, _ = read_response(sock)
        assert status.startswith(b"HTTP/1.1 431")
    with connect(edge) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
        status, _, _, _ = read_response(sock)
        assert status.startswith(b"HTTP/1.1 400")


def test_upstream_dying_mid_response_ends_the_client_response(edge: Slum) -> None:
    with connect(edge) as sock:
        sock.settimeout(10)
        sock.sendall(b"GET /die HTTP/1.1\r\nHost: s.stream.localhost\r\n\r\n")
        buf = b""
        started = time.monotonic()
        while data := sock.recv(65536):
            buf += data
        assert time.monotonic() - started < 5
    assert buf.startswith(b"HTTP/1.1 200") and buf.endswith(b"y" * 10)
    assert len(buf.partition(b"\r\n\r\n")[2]) == 500  # short: the client can tell


def test_client_disconnect_mid_download_frees_the_upstream(edge: Slum) -> None:
    for _ in range(5):
        with connect(edge) as sock:
            sock.sendall(b"GET /big?mb=50 HTTP/1.1\r\nHost: s.stream.localhost\r\n\r\n")
            sock.recv(65536)
    _status, _, body = get(edge, "s.stream.localhost", "/still-fine")
    assert body == b"/still-fine"


def test_dead_upstream_is_502(edge: Slum) -> None:
    assert get(edge, "g.gone.localhost", "/unlisten")[2] == b"bye"
    started = time.monotonic()
    status, _, body = get(edge, "g.gone.localhost", "/")
    assert status.startswith(b"HTTP/1.1 502") and b"not answering" in body
    assert time.monotonic() - started < 2


def ws_frame(payload: bytes, opcode: int = 1) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def ws_read(sock: socket.socket, buf: bytes) -> tuple[int, bytes, bytes]:
    while len(buf) < 2:
        buf += sock.recv(65536)
    opcode, length = buf[0] & 0x0F, buf[1] & 0x7F
    while len(buf) < 2 + length:
        buf += sock.recv(65536)
    return opcode, buf[2 : 2 + length], buf[2 + length :]


def test_websocket_passes_through(edge: Slum) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    with connect(edge) as sock:
        sock.sendall(
            (
                f"GET /chat HTTP/1.1\r\nHost: w.ws.localhost\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        head, _, buf = buf.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        assert accept.encode() in head
        for text in (b"hello", b"second message"):
            sock.sendall(ws_frame(text))
            opcode, payload, buf = ws_read(sock, buf)
            assert (opcode, payload) == (1, text)
        sock.sendall(ws_frame(b"close:4001"))
        opcode, payload, buf = ws_read(sock, buf)
        assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == 4001


def test_python_in_children_is_real(edge: Slum) -> None:
    # The children above run the same interpreter as the tests, from their own files.
    assert (CHILDREN / "stream.py").is_file() and PYTHON


def test_http_10_client_gets_a_close_delimited_body(edge: Slum) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /chunked HTTP/1.0\r\nHost: s.stream.localhost\r\n\r\n")
        buf = b""
        while data := sock.recv(65536):
            buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower() and body == b"one,two,three"


def test_stale_pooled_connection_is_never_used(edge: Slum) -> None:
    assert get(edge, "f.forgetful.localhost", "/")[0] == b"HTTP/1.1 200 OK"
    time.sleep(0.3)  # the pooled connection is closed by the upstream meanwhile
    status, _, body = get(edge, "f.forgetful.localhost", "/again")
    assert status == b"HTTP/1.1 200 OK" and body.startswith(b"answer")
    time.sleep(0.3)
    # A POST cannot be retried (the upstream might have acted on it), so the closed pooled
    # connection must be noticed before it is used: the POST goes out on a fresh one.
    for _ in range(3):
        with connect(edge) as sock:
            sock.sendall(b"POST /pay HTTP/1.1\r\nHost: f.forgetful.localhost\r\nContent-Length: 3\r\n\r\nabc")
            status, _, body, _ = read_response(sock)
        assert status == b"HTTP/1.1 200 OK", (status, body)
        time.sleep(0.3)
