"""The hostile-peer catalogue, upstream half: an app that answers in every wrong way
(tests/children/hostile_upstream.py). Each case asserts what the client gets (a status, or a
connection closed before the response was complete), that slum is the same living process, and
that a healthy tenant is served right after."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import free_port
from tests.e2e.conftest import Slum, write_config

CONFIG = """
[settings]
data_dir = "./data"
health_check_interval = 1
max_body_mb = 2
header_timeout = 2
keepalive_timeout = 3
body_timeout = 2

[service.hostile]
command = ["{python}", "{children}/hostile_upstream.py"]
health = "/health"
restart = "always"

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"

[instances]
hostile = ["h"]
web = ["one"]
"""
HOSTILE = "h.hostile.localhost"
HEALTHY = "one.web.localhost"


def start_hostile_slum(directory: Path, config: str = CONFIG) -> Slum:
    write_config(directory, config)
    s = Slum(directory, free_port())
    s.start()
    deadline = time.monotonic() + 40
    while not all(i["status"] == "healthy" for i in s.cli_json("ps")):
        assert time.monotonic() < deadline, f"not all healthy: {s.cli_json('ps')}"
        time.sleep(0.1)
    return s


@pytest.fixture(scope="module")
def slum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slum]:
    s = start_hostile_slum(tmp_path_factory.mktemp("hostile-upstream"))
    try:
        yield s
    finally:
        s.stop()


@dataclass
class Answer:
    status: int | None  # None: closed before a complete head
    headers: dict[str, str]
    body: bytes
    complete: bool  # the body arrived whole (by its length or its last chunk)
    raw_head: bytes = b""


def read_answer(sock: socket.socket, method: bytes = b"GET", buf: bytes = b"") -> tuple[Answer, bytes]:
    """One response, tolerating a connection that ends at any point."""
    try:
        while b"\r\n\r\n" not in buf:
            data = sock.recv(65536)
            if not data:
                return Answer(None, {}, buf, False), b""
            buf += data
    except (ConnectionResetError, TimeoutError):
        return Answer(None, {}, buf, False), b""
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {
        k.decode().lower(): v.decode().strip() for k, _, v in (line.partition(b":") for line in lines[1:])
    }
    if status in (204, 304) or 100 <= status < 200 or method == b"HEAD":
        return Answer(status, headers, b"", True, head), buf
    try:
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(buf) < n:
                data = sock.recv(65536)
                if not data:
                    return Answer(status, headers, buf, False, head), b""
                buf += data
            return Answer(status, headers, buf[:n], True, head), buf[n:]
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                while b"\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return Answer(status, headers, body, False, head), b""
                    buf += data
                size_line, _, buf = buf.partition(b"\r\n")
                size = int(size_line, 16)
                while len(buf) < size + 2:
                    data = sock.recv(65536)
                    if not data:
                        return Answer(status, headers, body + buf, False, head), b""
                    buf += data
                body += buf[:size]
                buf = buf[size + 2 :]
                if size == 0:
                    return Answer(status, headers, body, True, head), buf
        while data := sock.recv(65536):
            buf += data
        return Answer(status, headers, buf, True, head), b""
    except (ConnectionResetError, TimeoutError):
        return Answer(status, headers, buf, False, head), b""


def ask(s: Slum, raw: bytes, method: bytes = b"GET", timeout: float = 20) -> Answer:
    with socket.create_connection(("127.0.0.1", s.port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_answer(sock, method)[0]


def request(method: str, path: str, host: str = HOSTILE, extra: str = "", body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{length}{extra}\r\n".encode() + body


def assert_still_serving(s: Slum) -> None:
    """slum is the same process, alive, and a healthy tenant is answered right away."""
    assert s.proc is not None and s.proc.poll() is None, s.log.read_text()[-3000:]
    assert psutil.Process(s.proc.pid).status() != psutil.STATUS_ZOMBIE
    answer = ask(s, request("GET", "/after-a-hostile-case", HEALTHY))
    assert answer.status == 200 and answer.body == b"web:one /after-a-hostile-case", answer


# path, method, what the client must get: a status, or "abort" (head sent, body cut short)
UPSTREAM_CASES = [
    ("/cl-abc", "GET", 502),
    ("/status-2000", "GET", 502),
    ("/status-99", "GET", 502),
    ("/garbage", "GET", 502),
    ("/cl-te", "GET", 502),
    ("/two-cl", "GET", 502),
    ("/nul", "GET", 502),
    ("/obs-fold", "GET", 502),
    ("/bare-lf", "GET", 502),
    ("/huge-head", "GET", 502),
    ("/te-gzip", "GET", 502),
    ("/switch", "GET", 502),
    ("/hang-up", "GET", 502),
    ("/hang-up", "POST", 502),
    ("/bad-chunk", "GET", "abort"),
    ("/cut", "GET", "abort"),
    ("/trailer-flood", "GET", "abort"),
    ("/204-body", "GET", 204),
    ("/304-body", "GET", 304),
    ("/head-body", "HEAD", 200),
    ("/after", "GET", 200),
    ("/early-hints", "GET", 200),
    ("/trailers", "GET", 200),
]


@pytest.mark.parametrize(
    ("path", "method", "expected"), UPSTREAM_CASES, ids=[f"{m} {p}" for p, m, _ in UPSTREAM_CASES]
)
def test_hostile_upstream(slum: Slum, path: str, method: str, expected: int | str) -> None:
    assert slum.proc is not None
    pid = slum.proc.pid
    rss_before = psutil.Process(pid).memory_info().rss
    # A pooled connection first, so that the case also meets a reused connection.
    assert ask(slum, request("GET", "/ok")).status == 200
    answer = ask(slum, request(method, path, body=b"x" if method == "POST" else b""), method.encode())
    if expected == "abort":
        assert answer.status == 200 and not answer.complete, answer
    else:
        assert answer.status == expected, answer
        assert answer.complete
    assert slum.proc.pid == pid
    assert_still_serving(slum)
    # The instance's own next answer is its own: nothing left over from the case.
    for _ in range(3):
        ok = ask(slum, request("GET", "/ok"))
        assert (ok.status, ok.body) == (200, b"ok"), ok
    assert psutil.Process(pid).memory_info().rss - rss_before < 64 * 2**20


def test_interim_and_trailers_never_become_headers(slum: Slum) -> None:
    hints = ask(slum, request("GET", "/early-hints"))
    assert hints.body == b"final" and "link" not in hints.headers
    trailers = ask(slum, request("GET", "/trailers"))
    assert trailers.body == b"hello"
    assert b"evil.example" not in trailers.raw_head and b"s3cret" not in trailers.raw_head


def test_unsolicited_second_response_never_reaches_the_next_request(slum: Slum) -> None:
    with socket.create_connection(("127.0.0.1", slum.port), timeout=20) as sock:
        sock.sendall(request("GET", "/after"))
        first, rest = read_answer(sock)
        assert first.body == b"first"
        sock.sendall(request("GET", "/ok"))
        second, _ = read_answer(sock, buf=rest)
        assert (second.status, second.body) == (200, b"ok")


def test_body_after_a_head_response_is_dropped(slum: Slum) -> None:
    with socket.create_connection(("127.0.0.1", slum.port), timeout=20) as sock:
        sock.sendall(request("HEAD", "/head-body"))
        head, rest = read_answer(sock, b"HEAD")
        assert head.status == 200 and rest == b""
        sock.sendall(request("GET", "/ok"))
        ok, _ = read_answer(sock, buf=rest)
        assert (ok.status, ok.body) == (200, b"ok")


def test_early_answers_never_poison_the_pool(slum: Slum) -> None:
    # The app answers 413 without reading a 1 MiB body, four times; nothing of those bodies may
    # reach a later request on a reused connection.
    for _ in range(4):
        answer = ask(slum, request("POST", "/early-413", body=b"z" * (1 << 20)))
        assert answer.status == 413
    for _ in range(5):
        ok = ask(slum, request("GET", "/ok"), timeout=10)
        assert (ok.status, ok.body) == (200, b"ok")


def test_expect_continue_waits_for_the_upstream(slum: Slum) -> None:
    body = b"q" * 200_000
    with socket.create_connection(("127.0.0.1", slum.port), timeout=20) as sock:
        sock.sendall(
            request("POST", "/expect", extra=f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n")
        )
        interim, rest = read_answer(sock)
        assert interim.status == 100
        sock.sendall(body)
        final, _ = read_answer(sock, buf=rest)
    assert (final.status, final.body) == (200, b"200000")
    # An app that refuses at once: the client gets the refusal without sending its body.
    with socket.create_connection(("127.0.0.1", slum.port), timeout=20) as sock:
        sock.sendall(
            request("POST", "/expect-401", extra="Content-Length: 5000000\r\nExpect: 100-continue\r\n")
        )
        answer, _ = read_answer(sock)
    assert answer.status == 401
    assert_still_serving(slum)


def test_faults_are_logged_once_per_burst_naming_the_instance(slum: Slum) -> None:
    for _ in range(50):
        assert ask(slum, request("GET", "/garbage")).status == 502
    assert_still_serving(slum)
    lines = [line for line in slum.log.read_text().splitlines() if "hostile:h:" in line]
    assert lines, "no log line names the instance"
    assert any("malformed" in line for line in lines)
    # Rate limited: 50 faults in a few seconds are a line or two, not fifty.
    assert len(lines) < 25, lines


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def test_faults_are_counted_per_instance_in_status_and_metrics(slum: Slum) -> None:
    for _ in range(3):
        assert ask(slum, request("GET", "/garbage")).status == 502
    edge = slum.cli_json("status")["edge"]
    assert edge["upstream_errors"].get("hostile:h", 0) >= 3, edge
    text = slum.cli("status", check=True).stdout
    assert "failed upstream exchanges: " in text and "hostile:h" in text
    # ...and in the Prometheus text, read over the control socket (no token there).
    conn = UnixHTTPConnection(str(slum.dir / "slum.sock"))
    try:
        conn.request("GET", "/_/metrics")
        exposition = conn.getresponse().read().decode()
    finally:
        conn.close()
    assert 'slum_edge_upstream_errors_total{target="hostile:h"}' in exposition
