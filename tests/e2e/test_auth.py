"""Auth tried as an attacker would: through the real edge, with the real CLI and database."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from pathlib import Path

from tests.e2e.conftest import Slum, write_config
from tests.e2e.test_api import api

SCOPED_CONFIG = """
[settings]
data_dir = "./data"
health_check_interval = 0.5
stop_grace_s = 2
trusted_proxies = ["127.0.0.1"]

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"
startup_timeout = 10

[instances]
web = ["alice", "bob"]
"""


def token_gen(slum: Slum, *args: str) -> str:
    return slum.cli("token-gen", "--database", str(slum.database), *args, check=True).stdout.strip()


def login(slum: Slum, token: str, origin: str | None = None) -> str:
    headers = {"Origin": origin} if origin else {}
    status, _, h = api(slum, "POST", "/_/api/login", body={"token": token}, headers=headers)
    assert status == 200, status
    return h["set-cookie"].split(";", 1)[0]


def own_origin(slum: Slum) -> str:
    return f"http://127.0.0.1:{slum.port}"


def edge_socket_dir(slum: Slum) -> Path:
    """The web app's edge-side socket, found among the unix sockets slum listens on."""
    assert slum.proc is not None
    inodes = set()
    for fd in Path(f"/proc/{slum.proc.pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 8 and parts[6] in inodes and parts[7].endswith("/web.sock"):
            return Path(parts[7]).parent
    raise AssertionError("no edge socket found")


def test_trust_comes_from_the_socket_not_a_header(slum: Slum) -> None:
    slum.start()
    token_gen(slum)
    # Through the edge: no token, no entry, whatever the request claims.
    assert api(slum, "GET", "/_/api/instances")[0] == 401
    assert api(slum, "GET", "/_/api/instances", headers={"X-Slum-Edge": "0"})[0] == 401
    # An h2c upgrade on the bare domain: streams after the upgrade are no more trusted.
    import h2.connection
    import h2.events

    with socket.create_connection(("127.0.0.1", slum.port), timeout=10) as sock:
        conn = h2.connection.H2Connection()
        settings = conn.initiate_upgrade_connection()
        sock.sendall(
            b"GET /_/api/config HTTP/1.1\r\nHost: localhost\r\n"
            b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: " + settings + b"\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                break
            head += chunk
        statuses: list[int] = []
        if head.startswith(b"HTTP/1.1 101"):
            conn.send_headers(
                3,
                [
                    (":method", "GET"),
                    (":path", "/_/api/config"),
                    (":scheme", "http"),
                    (":authority", "localhost"),
                ],
                end_stream=True,
            )
            sock.sendall(conn.data_to_send())
            rest = head.split(b"\r\n\r\n", 1)[1]
            deadline = time.monotonic() + 10
            while len(statuses) < 2 and time.monotonic() < deadline:
                for ev in conn.receive_data(rest):
                    if isinstance(ev, h2.events.ResponseReceived):
                        statuses.append(int(dict(ev.headers)[b":status"]))
                try:
                    sock.sendall(conn.data_to_send())
                    rest = sock.recv(65536)
                except OSError:
                    break  # refused after the upgrade: nothing served
                if not rest:
                    break
        else:
            statuses.append(int(head.split(b" ", 2)[1]))
        assert statuses and 200 not in statuses and all(s in (401, 403, 404, 421) for s in statuses), (
            head[:300],
            statuses,
        )
    # The control socket is the operator: the CLI needs no token.
    assert slum.cli("ps", check=True).returncode == 0
    # The edge's way in is a socket in a directory only slum's user can enter.
    private = edge_socket_dir(slum)
    assert private == slum.dir / "slum.sock.d"
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    slum.stop()
    assert not private.exists() and not (slum.dir / "slum.sock").exists()


def test_cross_site_requests_with_the_session_cookie_are_refused(slum: Slum) -> None:
    slum.start()
    token = token_gen(slum)
    cookie = login(slum, token, own_origin(slum))
    evil = f"http://a.web.localhost:{slum.port}"
    form = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"}
    # A form on a sibling subdomain posting to stop an instance.
    status, data, _ = api(
        slum,
        "POST",
        "/_/api/instances/web:one/stop",
        headers={**form, "Origin": evil},
    )
    assert status == 403 and "cross-origin" in data["error"]  # type: ignore[index]
    # text/plain JSON from the dashboard's own origin is still not JSON.
    status, data, _ = api(
        slum,
        "POST",
        "/api/servers",
        headers={"Cookie": cookie, "Origin": own_origin(slum), "Content-Type": "text/plain"},
    )
    assert status == 403
    body = json.dumps({"address": "http://10.9.9.9:8080"}).encode()
    status, _, _ = slum.http(
        "POST",
        "/api/servers",
        body=body,
        headers={"Cookie": cookie, "Origin": own_origin(slum), "Content-Type": "text/plain"},
    )
    assert status == 403
    # No Origin, no Sec-Fetch-Site: refused too (a cookie means a browser).
    assert api(slum, "POST", "/_/api/instances/web:one/stop", headers={"Cookie": cookie})[0] == 403
    assert api(slum, "GET", "/_/api/instances/web:one", token=token)[1]["status"] == "healthy"  # type: ignore[index]
    servers = api(slum, "GET", "/api/servers", token=token)[1]
    assert [s["name"] for s in servers] == ["local"]  # type: ignore[union-attr,index]
    # The dashboard itself: same origin, JSON or no body.
    status, _, _ = api(
        slum,
        "POST",
        "/_/api/instances/web:one/restart",
        headers={"Cookie": cookie, "Origin": own_origin(slum)},
    )
    assert status == 200
    status, _, _ = api(
        slum,
        "POST",
        "/_/api/instances",
        body={"service": "web", "id": "two"},
        headers={"Cookie": cookie, "Sec-Fetch-Site": "same-origin"},
    )
    assert status == 201
    # A Bearer token is not a browser's ambient credential: no Origin needed.
    assert api(slum, "POST", "/_/api/instances/web:two/stop", token=token)[0] == 200
    # Logging in from a sibling's page is refused as well.
    status, _, _ = api(slum, "POST", "/_/api/login", body={"token": token}, headers={"Origin": evil})
    assert status == 403


def test_cookie_and_dashboard_headers(slum: Slum) -> None:
    slum.start()
    token = token_gen(slum)
    status, _, h = api(
        slum, "POST", "/_/api/login", body={"token": token}, headers={"Origin": own_origin(slum)}
    )
    cookie = h["set-cookie"]
    assert cookie.startswith("slum_session=") and "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie and "Path=/" in cookie and token not in cookie
    # Over https (the browser's Origin says so): the __Host- prefix and Secure.
    status, _, h = api(
        slum,
        "POST",
        "/_/api/login",
        body={"token": token},
        headers={"Origin": f"https://127.0.0.1:{slum.port}"},
    )
    secure = h["set-cookie"]
    assert status == 200 and secure.startswith("__Host-slum_session=") and "Secure" in secure
    assert "Domain" not in secure and "Path=/" in secure
    for path in ("/_/", "/_/api/instances"):
        status, headers, _ = slum.http("GET", path, headers={"Authorization": f"Bearer {token}"})
        assert status == 200
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["x-frame-options"] == "DENY"


def test_secure_cookie_behind_a_trusted_tls_proxy(slum: Slum) -> None:
    write_config(slum.dir, SCOPED_CONFIG)
    slum.start()
    token = token_gen(slum)
    # The browser on https behind Caddy (trusted_proxies = 127.0.0.1).
    status, h, _ = slum.http(
        "POST",
        "/_/api/login",
        body=json.dumps({"token": token}).encode(),
        headers={
            "Content-Type": "application/json",
            "Origin": f"https://127.0.0.1:{slum.port}",
            "X-Forwarded-For": "198.51.100.7",
        },
    )
    cookie = h["set-cookie"]
    assert status == 200 and cookie.startswith("__Host-slum_session=") and "Secure" in cookie
    sid = cookie.split(";", 1)[0]
    assert api(slum, "GET", "/_/api/instances", headers={"Cookie": sid})[0] == 200
    status, _, h = api(
        slum, "POST", "/_/api/logout", headers={"Cookie": sid, "Origin": f"https://127.0.0.1:{slum.port}"}
    )
    assert status == 200 and h["set-cookie"].startswith("__Host-slum_session=;")
    assert api(slum, "GET", "/_/api/instances", headers={"Cookie": sid})[0] == 401
    # Without an Origin, the trusted proxy's X-Forwarded-Proto says https: the edge keeps it
    # for a peer in trusted_proxies (and replaces it with http for anyone else).
    status, h, _ = slum.http(
        "POST",
        "/_/api/login",
        body=json.dumps({"token": token}).encode(),
        headers={"Content-Type": "application/json", "X-Forwarded-Proto": "https"},
    )
    assert status == 200 and h["set-cookie"].startswith("__Host-slum_session=")
    assert "Secure" in h["set-cookie"]


def test_token_flood_is_429_then_the_valid_token_works_again(slum: Slum) -> None:
    write_config(slum.dir, SCOPED_CONFIG)
    slum.start()
    token = token_gen(slum)
    statuses = []
    retry_after = 0
    attacker = {"X-Forwarded-For": "203.0.113.66"}  # via the trusted proxy 127.0.0.1
    for i in range(200):
        guess = "slum_" + f"{i:08d}"[-8:] + "_" + "x" * 46 if i % 2 else f"slum_guess{i}"
        status, _, h = api(slum, "GET", "/_/api/instances", token=guess, headers=attacker)
        statuses.append(status)
        if status == 429:
            retry_after = int(h["retry-after"])
    assert statuses.count(401) <= 15 and statuses.count(429) >= 185, statuses
    assert retry_after >= 1
    # While its bucket is empty, the attacker's address cannot try even a real token (the
    # bucket gains a try every 2 s: on a slow machine, empty it again right before)...
    for _ in range(3):
        api(slum, "GET", "/_/api/instances", token="slum_guess", headers=attacker)
    assert api(slum, "GET", "/_/api/instances", token=token, headers=attacker)[0] == 429
    # ...another client is not affected...
    assert (
        api(slum, "GET", "/_/api/instances", token=token, headers={"X-Forwarded-For": "198.51.100.1"})[0]
        == 200
    )
    # ...and once the bucket refills, the valid token works at once from there too.
    time.sleep(retry_after + 0.5)
    started = time.monotonic()
    assert api(slum, "GET", "/_/api/instances", token=token, headers=attacker)[0] == 200
    assert time.monotonic() - started < 5
    # Without a trusted proxy entry, X-Forwarded-For is not believed: all from 127.0.0.1.


def test_token_commands_and_revocation_while_serving(slum: Slum) -> None:
    slum.start()
    first = token_gen(slum, "--description", "ci deploys")
    second = token_gen(slum, "--tenant", "one")
    listed = slum.cli_json("token-list")
    assert [t["description"] for t in listed] == ["ci deploys", None]
    assert [t["scope"] for t in listed] == ["all", "tenant:one"]
    assert all(set(t) >= {"id", "description", "scope", "created", "last_used"} for t in listed)
    text = json.dumps(listed) + slum.cli("token-list", check=True).stdout
    assert first not in text and second not in text
    assert first.split("_")[1] == listed[0]["id"]
    cookie = login(slum, first, own_origin(slum))
    assert api(slum, "GET", "/_/api/instances", headers={"Cookie": cookie})[0] == 200
    assert api(slum, "GET", "/_/api/instances", token=first)[0] == 200
    assert slum.cli_json("token-list")[0]["last_used"] is not None
    out = slum.cli("token-revoke", listed[0]["id"], check=True).stdout
    assert "1 sessions ended" in out
    # At once: the token and its session.
    assert api(slum, "GET", "/_/api/instances", token=first)[0] == 401
    assert api(slum, "GET", "/_/api/instances", headers={"Cookie": cookie})[0] == 401
    assert [t["id"] for t in slum.cli_json("token-list")] == [listed[1]["id"]]
    # Over the API with a token, too; a scoped token cannot manage tokens.
    assert api(slum, "GET", "/_/api/tokens", token=second)[0] == 403
    third = token_gen(slum)
    status, made, _ = api(
        slum, "POST", "/_/api/tokens", token=third, body={"description": "made over the API"}
    )
    assert status == 201 and made["token"].startswith("slum_")  # type: ignore[index]
    assert api(slum, "GET", "/_/api/overview", token=made["token"])[0] == 200  # type: ignore
    assert api(slum, "DELETE", f"/_/api/tokens/{made['id']}", token=third)[0] == 200  # type: ignore
    assert api(slum, "GET", "/_/api/overview", token=made["token"])[0] == 401  # type: ignore
    assert slum.cli("token-revoke", "nosuchid").returncode != 0
    # With no server running, the same commands work on the database file.
    slum.stop()
    ids = [t["id"] for t in slum.cli_json("token-list", "--database", str(slum.database))]
    assert len(ids) == 2
    slum.cli("token-revoke", ids[0], "--database", str(slum.database), check=True)
    assert len(slum.cli_json("token-list", "--database", str(slum.database))) == 1


def test_sessions_survive_a_restart_and_logout_ends_them(slum: Slum) -> None:
    slum.start()
    token = token_gen(slum)
    cookie = login(slum, token, own_origin(slum))
    assert api(slum, "GET", "/_/api/session", headers={"Cookie": cookie})[0] == 200
    slum.stop()
    # Only a hash of the session id is on disk.
    assert cookie.split("=", 1)[1].encode() not in slum.database.read_bytes()
    slum.start()
    assert api(slum, "GET", "/_/api/session", headers={"Cookie": cookie})[0] == 200
    status, _, h = api(slum, "POST", "/_/api/logout", headers={"Cookie": cookie, "Origin": own_origin(slum)})
    assert status == 200 and "slum_session=;" in h["set-cookie"]
    assert api(slum, "GET", "/_/api/session", headers={"Cookie": cookie})[0] == 401


def test_file_modes(slum: Slum) -> None:
    slum.start()
    token_gen(slum)
    api(slum, "GET", "/api/health")
    for f in (slum.database, Path(f"{slum.database}-wal"), Path(f"{slum.database}-shm")):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE((slum.dir / "data").stat().st_mode) == 0o700
    sock = slum.database.with_suffix(".sock")
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
