"""Differential test of the edge: httpbin (under gunicorn) supervised by slum, asked the same
~50 requests through slum and directly on its port. Status, body and end-to-end headers must be
equal, apart from what slum documents it adds: X-Forwarded-For/-Proto/-Host and X-Tenant-ID
(visible where httpbin echoes the request's headers), and hop-by-hop framing.

httpbin cannot share the dev environment (it pins greenlet<3 on Python 3.11, playwright needs
greenlet>=3.1), so it runs from a venv of its own, built once from pyproject's `differential`
extra (SLUM_HTTPBIN_VENV names an existing one)."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import subprocess
import sys
import time
import tomllib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.e2e.conftest import Slum

pytestmark = pytest.mark.slow

HOST = "b.httpbin.localhost"
ADDED = {"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-tenant-id"}
HOP = {"connection", "keep-alive", "transfer-encoding", "date", "content-length"}


def httpbin_venv() -> Path:
    given = os.environ.get("SLUM_HTTPBIN_VENV")
    if given:
        return Path(given)
    venv = ROOT / ".pytest_cache" / "httpbin-venv"
    if (venv / "bin" / "gunicorn").exists():
        return venv
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "differential"
    ]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *extra], check=True, timeout=900)
    return venv


CONFIG = """
[settings]
data_dir = "./data"

[service.httpbin]
command = ["{gunicorn}", "--bind", "127.0.0.1:{{port}}", "--workers", "2", "--threads", "4",
           "--worker-class", "gthread", "--keep-alive", "2", "httpbin:app"]
health = "/get"
startup_timeout = 60

[instances]
httpbin = ["b"]
"""


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Slum, int]]:
    venv = httpbin_venv()
    directory = tmp_path_factory.mktemp("differential")
    (directory / "tenement.toml").write_text(CONFIG.format(gunicorn=venv / "bin" / "gunicorn"))
    s = Slum(directory, free_port())
    s.start()
    deadline = time.monotonic() + 90
    while True:
        ps = s.cli_json("ps")
        if ps and ps[0]["status"] == "healthy":
            break
        assert time.monotonic() < deadline, f"httpbin not healthy: {ps}\n{s.log.read_text()}"
        time.sleep(0.2)
    try:
        yield s, int(ps[0]["port"])
    finally:
        s.stop()


@dataclass
class Case:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


CASES = [
    Case("GET", "/get"),
    Case("GET", "/get?a=1&b=2&b=3&empty="),
    Case("GET", "/headers", {"X-Custom": "one", "Accept": "application/json"}),
    Case("GET", "/ip"),
    Case("GET", "/user-agent", {"User-Agent": "differential/1.0"}),
    Case("GET", "/uuid"),
    *[
        Case("GET", f"/status/{code}")
        for code in (200, 201, 202, 204, 304, 400, 401, 403, 404, 418, 429, 500, 502, 503)
    ],
    Case("GET", "/status/301"),
    Case("GET", "/redirect/3"),
    Case("GET", "/relative-redirect/2"),
    Case("GET", "/absolute-redirect/2"),
    Case("GET", "/redirect-to?url=/get&status_code=307"),
    Case("GET", "/cookies", {"Cookie": "a=1; b=two"}),
    Case("GET", "/cookies/set?flavour=oat&size=big"),
    Case("GET", "/cookies/delete?flavour"),
    Case("GET", "/stream/5"),
    Case("GET", "/stream/30"),
    Case("GET", "/stream-bytes/20000?seed=7&chunk_size=333"),
    Case("GET", "/bytes/4096?seed=3"),
    Case("GET", "/range/1000", {"Range": "bytes=10-99"}),
    Case("GET", "/range/1000", {"Range": "bytes=-50"}),
    Case("GET", "/range/100"),
    Case("GET", "/drip?duration=1&numbytes=5&code=200&delay=0"),
    Case("GET", "/delay/1"),
    Case("GET", "/gzip", {"Accept-Encoding": "gzip"}),
    Case("GET", "/deflate"),
    Case("GET", "/html"),
    Case("GET", "/xml"),
    Case("GET", "/json"),
    Case("GET", "/robots.txt"),
    Case("GET", "/deny"),
    Case("GET", "/encoding/utf8"),
    Case("GET", "/base64/SFRUUEJJTiBpcyBhd2Vzb21l"),
    Case("GET", "/response-headers?X-Foo=bar&X-Foo=baz&Cache-Control=no-store"),
    Case("GET", "/etag/abc", {"If-None-Match": '"abc"'}),
    Case("GET", "/etag/abc", {"If-Match": '"nope"'}),
    Case("GET", "/cache", {"If-Modified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}),
    Case("GET", "/cache/60"),
    Case("GET", "/basic-auth/u/p", {"Authorization": "Basic dTpw"}),
    Case("GET", "/basic-auth/u/p", {"Authorization": "Basic d3Jvbmc6d3Jvbmc="}),
    Case("GET", "/bearer", {"Authorization": "Bearer abc"}),
    Case("GET", "/links/5/2"),
    Case("GET", "/image/png"),
    Case("GET", "/anything/odd%20path/..%2fup;x=1?q=%00%ff&&=="),
    Case("GET", "/anything//double//slashes/"),
    Case("GET", "/does-not-exist"),
    Case("HEAD", "/get"),
    Case("HEAD", "/bytes/100?seed=1"),
    Case("OPTIONS", "/get"),
    Case("POST", "/post", {"Content-Type": "application/x-www-form-urlencoded"}, b"a=1&b=%20x"),
    Case("POST", "/post", {"Content-Type": "application/json"}, b'{"k": [1, 2, {"n": null}]}'),
    Case(
        "POST",
        "/post",
        {"Content-Type": "multipart/form-data; boundary=XyZ"},
        b'--XyZ\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + bytes(range(256)) * 400 + b"\r\n--XyZ--\r\n",
    ),
    Case("POST", "/post", {"Expect": "100-continue", "Content-Type": "text/plain"}, b"x" * 300_000),
    Case("PUT", "/put", {"Content-Type": "text/plain"}, b"put body"),
    Case("PATCH", "/patch", {"Content-Type": "text/plain"}, b"patch body"),
    Case("DELETE", "/delete"),
    Case("POST", "/anything", {"Transfer-Encoding": "chunked"}, b"chunked upload " * 1000),
]


@dataclass
class Seen:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def send(port: int, case: Case) -> Seen:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(case.method, case.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", HOST)
        for k, v in case.headers.items():
            conn.putheader(k, v)
        chunked = case.headers.get("Transfer-Encoding") == "chunked"
        if case.body is not None and not chunked:
            conn.putheader("Content-Length", str(len(case.body)))
        conn.endheaders()
        if case.body is not None:
            if chunked:
                for i in range(0, len(case.body), 4000):
                    piece = case.body[i : i + 4000]
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                conn.send(b"0\r\n\r\n")
            else:
                conn.send(case.body)
        resp = conn.getresponse()
        body = resp.read()
        return Seen(resp.status, list(resp.getheaders()), body)
    finally:
        conn.close()


def normalize(seen: Seen) -> tuple[int, list[tuple[str, str]], object]:
    headers = sorted((k.lower(), v) for k, v in seen.headers if k.lower() not in HOP)
    raw = seen.body
    encoding = dict(headers).get("content-encoding", "")
    if encoding == "gzip":
        raw = gzip.decompress(raw)
    elif encoding == "deflate":
        raw = zlib.decompress(raw)
    body: object = raw
    kind = dict(headers).get("content-type", "")
    if kind.startswith("application/json") and raw:
        try:
            lines = [json.loads(raw)]
        except ValueError:  # /stream/N: one document per line
            lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
        for doc in lines:
            if isinstance(doc, dict):
                echoed = doc.get("headers")
                if isinstance(echoed, dict):
                    for name in list(echoed):
                        if name.lower() in ADDED:
                            del echoed[name]
                if "uuid" in doc:
                    doc["uuid"] = "<uuid>"
        body = lines
    return seen.status, headers, body


def test_httpbin_behind_slum_answers_as_httpbin_does(bins: tuple[Slum, int]) -> None:
    s, direct_port = bins
    differences = []
    for case in CASES:
        through = normalize(send(s.port, case))
        direct = normalize(send(direct_port, case))
        if through != direct:
            differences.append(
                f"{case.method} {case.path}:\n  slum:   {through!r:.600}\n  direct: {direct!r:.600}"
            )
    assert not differences, "\n".join(differences)
    assert len(CASES) >= 50


def test_what_slum_adds_is_only_the_documented_headers(bins: tuple[Slum, int]) -> None:
    s, direct_port = bins
    case = Case("GET", "/headers?show_env=1", {"X-Forwarded-For": "10.1.2.3"})
    through = json.loads(send(s.port, case).body)["headers"]
    direct = json.loads(send(direct_port, case).body)["headers"]
    added = {k.lower() for k in set(through) - set(direct)}
    assert added <= ADDED, added
    assert through["X-Forwarded-For"] == "10.1.2.3, 127.0.0.1"
    assert through["X-Tenant-Id"] == "b"


def test_status_199_and_keepalive_expiry_do_not_hurt(bins: tuple[Slum, int]) -> None:
    s, _ = bins
    # httpbin's /status/199 makes gunicorn close without a proper answer.
    answer = send(s.port, Case("GET", "/status/199"))
    assert answer.status in (199, 502) or re.match(r"5\d\d", str(answer.status))
    # gunicorn closes idle keep-alive connections after 2 s; a POST after 3 s must not meet one.
    for _ in range(3):
        time.sleep(3)
        assert send(s.port, Case("POST", "/post", {}, b"after a pause")).status == 200
    assert s.proc is not None and s.proc.poll() is None
