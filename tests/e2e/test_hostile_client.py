"""The hostile-peer catalogue, client half: requests no honest client sends, slow and stalled
clients, forged router headers, too many connections, and a SIGTERM with requests in flight.
Each case asserts the answer (or the close), that slum is the same living process, and that a
healthy tenant is served right after."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import Slum
from tests.e2e.test_hostile_upstream import (
    CONFIG,
    HOSTILE,
    ask,
    assert_still_serving,
    read_answer,
    request,
    start_hostile_slum,
)


@pytest.fixture(scope="module")
def slum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slum]:
    s = start_hostile_slum(tmp_path_factory.mktemp("hostile-client"))
    try:
        yield s
    finally:
        s.stop()


def connect(s: Slum, timeout: float = 20) -> socket.socket:
    return socket.create_connection(("127.0.0.1", s.port), timeout=timeout)


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Did the peer close within `seconds`? Returns that and whatever it sent."""
    sock.settimeout(seconds)
    got = b""
    try:
        while data := sock.recv(65536):
            got += data
    except TimeoutError:
        return False, got
    except ConnectionResetError:
        pass
    return True, got


def echoed_head(s: Slum, raw: bytes) -> bytes:
    answer = ask(s, raw)
    assert answer.status == 200, answer
    return answer.body


@pytest.mark.parametrize("host", ["localhost", HOSTILE])
def test_bad_chunk_size_in_a_later_read(slum: Slum, host: str) -> None:
    # The crash of issue 11: the head is parsed and forwarded; the bad chunk size comes later.
    with connect(slum) as sock:
        sock.sendall(
            f"POST /api/health HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        time.sleep(0.3)
        sock.sendall(b"zz\r\nhello\r\n0\r\n\r\n")
        answer, _ = read_answer(sock)
    assert answer.status in (400, None), answer
    assert_still_serving(slum)


REQUEST_CASES = [
    ("two Host headers", b"GET / HTTP/1.1\r\nHost: a.localhost\r\nHost: h.hostile.localhost\r\n\r\n", 400),
    (
        "gzip, chunked",
        b"POST /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\n"
        b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    (
        "gzip alone",
        b"POST /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        501,
    ),
    (
        "CL and TE",
        b"POST /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    (
        "two CLs",
        b"POST /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\nContent-Length: 3\r\n"
        b"Content-Length: 4\r\n\r\nabcd",
        400,
    ),
    ("bad CL", b"POST /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\nContent-Length: 1x\r\n\r\n", 400),
    ("bare LF", b"GET /echo HTTP/1.1\nHost: h.hostile.localhost\n\n", 400),
    ("obs-fold", b"GET /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\nX-A: a\r\n b\r\n\r\n", 400),
    ("NUL in a header", b"GET /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\nX-A: a\x00b\r\n\r\n", 400),
    ("not HTTP", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(64), 400),
    ("no Host", b"GET / HTTP/1.1\r\n\r\n", 400),
    (
        "head over 64 KiB at once",
        b"GET /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\n"
        + b"".join(b"X-F%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
        + b"\r\n",
        431,
    ),
    (
        "head of 60 KiB",
        b"GET /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\n"
        + b"".join(b"X-F%d: %s\r\n" % (i, b"a" * 1000) for i in range(60))
        + b"\r\n",
        200,
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [(r, e) for _, r, e in REQUEST_CASES], ids=[n for n, _, _ in REQUEST_CASES]
)
def test_hostile_request(slum: Slum, raw: bytes, expected: int) -> None:
    assert slum.proc is not None
    pid = slum.proc.pid
    answer = ask(slum, raw)
    assert answer.status == expected, answer
    assert slum.proc.pid == pid
    assert_still_serving(slum)


def test_trailers_are_bounded_and_never_headers(slum: Slum) -> None:
    head = echoed_head(
        slum,
        b"POST /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
        b"Host: evil.example\r\nX-Slum-Router: forged\r\n\r\n",
    )
    assert b"evil.example" not in head and b"forged" not in head
    assert b"Host: h.hostile.localhost" in head and head.endswith(b"hello")
    # Megabytes of trailer lines: refused, and slum's memory does not follow them.
    assert slum.proc is not None
    proc = psutil.Process(slum.proc.pid)
    before = proc.memory_info().rss
    with connect(slum) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: h.hostile.localhost\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
        )
        try:
            for _ in range(400):
                sock.sendall((b"X-Trailer: " + b"t" * 1000 + b"\r\n") * 50)
        except OSError:
            pass
        answer, _ = read_answer(sock)
    assert answer.status in (431, None)
    assert proc.memory_info().rss - before < 64 * 2**20
    assert_still_serving(slum)


def test_underscores_cookies_and_spoofed_headers(slum: Slum) -> None:
    head = echoed_head(
        slum,
        request(
            "GET",
            "/echo",
            extra=(
                "X_Tenant_ID: mallory\r\nX-Real_IP: 1.2.3.4\r\n"
                "Cookie: app=1; slum_session=stolen; __Host-slum_session=stolen2; theme=dark\r\n"
            ),
        ),
    )
    assert b"mallory" not in head and b"1.2.3.4" not in head
    assert b"stolen" not in head
    assert b"app=1" in head and b"theme=dark" in head
    assert b"X-Tenant-ID: h\r\n" in head


def test_h2c_upgrade_never_reaches_slums_own_app(slum: Slum) -> None:
    with connect(slum) as sock:
        sock.sendall(
            b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )
        answer, _ = read_answer(sock)
        assert answer.status == 200 and b"status" in answer.body, answer
        closed, _ = closed_within(sock, 10)
    assert closed
    assert_still_serving(slum)


def test_slow_and_stalled_clients_are_timed_out(slum: Slum) -> None:
    # header_timeout = 2, keepalive_timeout = 3, body_timeout = 2 in CONFIG
    slow = connect(slum)
    slow.sendall(b"GET / HTTP/1.1\r\nHost: h.hos")
    idle = connect(slum)
    idle.sendall(request("GET", "/ok"))
    answer, _ = read_answer(idle)
    assert answer.status == 200
    stalled = connect(slum)
    stalled.sendall(request("POST", "/echo", extra="Content-Length: 100\r\n") + b"only part")
    silent = connect(slum)
    try:
        for sock in (slow, idle, stalled, silent):
            closed, got = closed_within(sock, 20)
            assert closed, sock
            assert got == b"" or got.startswith(b"HTTP/1.1 408"), got
    finally:
        for sock in (slow, idle, stalled, silent):
            sock.close()
    assert_still_serving(slum)


def test_many_dripping_connections_do_not_stop_the_others(slum: Slum) -> None:
    socks = [connect(slum) for _ in range(200)]
    try:
        for sock in socks:
            sock.sendall(b"GET / HTTP/1.1\r\n")
        assert_still_serving(slum)
        time.sleep(1)
        for sock in socks:
            try:
                sock.sendall(b"X-Drip: 1\r\n")
            except OSError:
                pass
        assert_still_serving(slum)
        for sock in socks[:20]:
            assert closed_within(sock, 20)[0]
    finally:
        for sock in socks:
            sock.close()


def test_pipelined_garbage_after_a_good_request(slum: Slum) -> None:
    with connect(slum) as sock:
        sock.sendall(request("GET", "/ok") + b"\x00\x01garbage\r\n\r\n")
        first, rest = read_answer(sock)
        second, _ = read_answer(sock, buf=rest)
    assert (first.status, first.body) == (200, b"ok")
    assert second.status in (400, None)
    assert_still_serving(slum)


def test_forged_router_headers_do_not_run_argon2_per_request(slum: Slum) -> None:
    slum.cli("token-gen", "--database", str(slum.database), check=True)
    assert slum.proc is not None
    proc = psutil.Process(slum.proc.pid)
    before = proc.memory_info().rss
    statuses = []

    def forge() -> None:
        for _ in range(10):
            forged = "slum_" + secrets.token_urlsafe(32)
            answer = ask(
                slum,
                request("GET", "/echo", extra=(f"X-Slum-Router: {forged}\r\nX-Tenant-ID: somebody\r\n")),
                timeout=60,
            )
            statuses.append(answer.status)

    threads = [threading.Thread(target=forge) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(statuses) == 60 and set(statuses) == {200}, statuses  # served as unrouted
    assert proc.memory_info().rss - before < 256 * 2**20
    assert_still_serving(slum)


def test_out_of_descriptors_backs_off(slum: Slum) -> None:
    assert slum.proc is not None
    proc = psutil.Process(slum.proc.pid)
    limits = proc.rlimit(psutil.RLIMIT_NOFILE)
    socks = []
    # The limit stays low only until the edge has met EMFILE: the once-a-second sampler reads
    # /proc and is not what this case is about (its own containment is a background task's).
    try:
        proc.rlimit(psutil.RLIMIT_NOFILE, (proc.num_fds() + 4, limits[1]))
        for _ in range(12):
            sock = connect(slum, timeout=5)
            sock.sendall(request("GET", "/ok"))
            socks.append(sock)
        deadline = time.monotonic() + 5
        while "accept failed (Too many open files)" not in slum.log.read_text():
            assert time.monotonic() < deadline, "the edge never met EMFILE"
            time.sleep(0.005)
    finally:
        proc.rlimit(psutil.RLIMIT_NOFILE, limits)
    try:
        # Every connection is served once descriptors are back: they waited in the backlog.
        for sock in socks:
            answer, _ = read_answer(sock)
            assert (answer.status, answer.body) == (200, b"ok"), answer
    finally:
        for sock in socks:
            sock.close()
    assert_still_serving(slum)


def test_connection_cap_makes_newcomers_wait(tmp_path: Path) -> None:
    s = start_hostile_slum(
        tmp_path, CONFIG.replace("header_timeout = 2", "header_timeout = 2\nmax_connections = 8")
    )
    try:
        idle = [connect(s) for _ in range(8)]
        # At the cap: this one waits in the backlog until the idle ones time out, then is served.
        answer = ask(s, request("GET", "/ok"), timeout=30)
        assert (answer.status, answer.body) == (200, b"ok")
        for sock in idle:
            sock.close()
        assert_still_serving(s)
    finally:
        s.stop()


def test_sigterm_lets_requests_in_flight_finish(tmp_path: Path) -> None:
    s = start_hostile_slum(tmp_path)
    results: list[int | None] = []

    def slow() -> None:
        results.append(ask(s, request("GET", "/slow?s=2"), timeout=30).status)

    threads = [threading.Thread(target=slow) for _ in range(10)]
    for t in threads:
        t.start()
    time.sleep(0.8)
    assert s.proc is not None
    s.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(30)
    assert s.proc.wait(30) == 0
    assert results == [200] * 10, results
    # And nothing was accepted after the signal.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", s.port), timeout=2).close()


def test_api_still_works_after_the_catalogue(slum: Slum) -> None:
    status, _, body = slum.http("GET", "/api/health")
    assert status == 200 and json.loads(body)["status"] == "ok"


def test_refused_big_logins_never_poison_the_web_apps_connections(slum: Slum) -> None:
    # The web app refuses a body over 1 MiB with 413, possibly before reading it: four of those
    # must not leave connections that make later API calls hang.
    body = b"{" + b" " * (1 << 20) + b"}"
    for _ in range(4):
        answer = ask(
            slum,
            request("POST", "/_/api/login", "localhost", "Content-Type: application/json\r\n", body),
            timeout=30,
        )
        assert answer.status in (413, None), answer
    started = time.monotonic()
    for _ in range(5):
        status, _, _ = slum.http("GET", "/api/health", timeout=20)
        assert status == 200
    assert time.monotonic() - started < 15  # not a 60 s hang per call
