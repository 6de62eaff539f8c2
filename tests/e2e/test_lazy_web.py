"""The web app (Quart, Hypercorn) loads when the first connection waits on one of its sockets, not
at start: a connection that arrives first is served once it has loaded, whichever socket it came
on, and a slum that nobody asked stops as cleanly as one that was asked."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import time
from pathlib import Path

from slum.client import control_socket_path
from tests.e2e.conftest import Slum


def _wait_serving(s: Slum, timeout: float = 15) -> Path:
    """Until slum says it is serving (its signal handlers are set right after), without a
    request to either of the web app's sockets."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert s.proc is not None and s.proc.poll() is None, s.log.read_text()
        if " serving http://" in s.log.read_text():
            return control_socket_path(s.database)
        time.sleep(0.02)
    raise AssertionError("slum did not start:\n" + s.log.read_text())


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(30)
        self.sock.connect(str(self.path))


def _control_get(sock: Path, path: str) -> tuple[int, bytes]:
    conn = _Unix(sock)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_first_request_on_the_control_socket_is_served(slum: Slum) -> None:
    slum.start(wait=False)
    sock = _wait_serving(slum)
    status, body = _control_get(sock, "/_/api/instances")
    assert status == 200, body
    assert any(i["id"] == "web:one" for i in json.loads(body))
    # ...and then the edge's socket, which was not what loaded it.
    code, _, _ = slum.http("GET", "/api/health")
    assert code == 200


def test_first_request_through_the_edge_is_served(slum: Slum) -> None:
    slum.start(wait=False)
    _wait_serving(slum)
    code, _, body = slum.http("GET", "/api/health")
    assert code == 200, body
    # A request from the network is still not the operator's (no token exists yet: 503).
    code, _, body = slum.http("GET", "/_/api/instances")
    assert code == 503 and b"token" in body, (code, body)


def test_stop_before_any_request(slum: Slum) -> None:
    slum.start(wait=False)
    sock = _wait_serving(slum)
    t0 = time.monotonic()
    assert slum.stop(signal.SIGTERM, timeout=30) == 0
    assert time.monotonic() - t0 < 10
    assert not sock.exists()
    assert "Traceback" not in slum.log.read_text()
