"""Logs as a user meets them: every line stored once and intact, searchable, followed live."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from slum.store import connect
from tests.conftest import free_port
from tests.e2e.conftest import Slum, slum_argv, write_config

CONFIG = """
[settings]
data_dir = "./data"

[service.chatty]
command = ["{python}", "{children}/chatty.py"]

[service.web]
command = ["{python}", "{children}/web.py"]
health = "/health"

[service.burst]
command = ["{python}", "{children}/chatty.py"]
[service.burst.env]
MODE = "burst"

[service.weird]
command = ["{python}", "{children}/chatty.py"]
[service.weird.env]
MODE = "weird"

[service.flood]
command = ["{python}", "{children}/chatty.py"]
[service.flood.env]
MODE = "flood"
FLOOD_MB = "50"

[instances]
web = ["one"]
"""


@pytest.fixture
def node(tmp_path) -> Iterator[Slum]:  # type: ignore[no-untyped-def]
    write_config(tmp_path, CONFIG)
    s = Slum(tmp_path, free_port())
    s.start()
    try:
        yield s
    finally:
        if s.proc and s.proc.poll() is None:
            s.stop()


def logs(s: Slum, **query: object) -> list[dict]:  # type: ignore[type-arg]
    args = [x for k, v in query.items() for x in (f"--{k}", str(v))]
    out = s.cli("logs", *args, "--json", check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def wait_lines(s: Slum, ref: str, count: int, timeout: float = 30, **query: object) -> list[dict]:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    found: list[dict] = []  # type: ignore[type-arg]
    while time.monotonic() < deadline:
        found = [
            e for e in logs(s, lines=5000, **query) if e["instance_id"] == ref and e["stream"] != "system"
        ]
        if len(found) >= count:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{ref}: {len(found)} of {count} lines")


def test_burst_of_long_lines_each_stored_once_and_intact(node: Slum) -> None:
    node.cli("spawn", "burst", "--id", "b", check=True)
    entries = wait_lines(node, "burst:b", 200)
    messages = sorted(e["message"] for e in entries)
    assert len(messages) == 200
    assert messages == [f"burst {i:03d} " + "b" * 4990 for i in range(200)]
    assert {e["tenant_id"] for e in entries} == {"b"}


def test_hostile_bytes(node: Slum) -> None:
    node.cli("spawn", "weird", "--id", "w", check=True)
    entries = {e["message"][:30]: e for e in wait_lines(node, "weird:w", 6)}
    assert "bad utf8 \ufffd\ufffd here" in entries
    huge = next(e for k, e in entries.items() if k.startswith("huge"))
    assert len(huge["message"]) < 20_000 and "truncated" in huge["message"]
    assert "after the huge line" in entries
    assert "split across writes" in entries
    assert entries["ERROR something broke"]["level"] == "error"
    assert entries["ERROR something broke"]["stream"] == "stderr"
    structured = next(e for e in entries.values() if "structured" in e["message"])
    assert structured["level"] == "debug"


def test_search_levels_and_system_events(node: Slum) -> None:
    node.cli("spawn", "burst", "--id", "s", check=True)
    wait_lines(node, "burst:s", 200)
    found = logs(node, search="burst 042")
    assert [e["message"][:9] for e in found] == ["burst 042"]
    assert logs(node, search="nothing-like-this") == []
    system = [e for e in logs(node, lines=500) if e["stream"] == "system"]
    assert any(e["instance_id"] == "burst:s" and e["message"].startswith("started pid") for e in system)
    r = node.cli("logs", "--level", "loud")
    assert r.returncode == 2 or r.returncode == 1
    assert "invalid" in r.stderr and "Traceback" not in r.stderr
    r = node.cli("logs", "--search", "foo AND (")
    assert r.returncode == 0


def test_follow_prints_new_lines_and_survives_restarts(node: Slum) -> None:
    node.cli("spawn", "chatty", "--id", "t", check=True)
    proc = subprocess.Popen(
        [*slum_argv(), "logs", "chatty:t", "-f", "-n", "1"],
        cwd=node.dir,
        stdout=subprocess.PIPE,
        text=True,
        env=node.env(),
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum("tick" in x for x in lines) < 5:
            time.sleep(0.05)
        node.cli("restart", "chatty:t", check=True)
        seen = len(lines)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any("tick 3" in x for x in lines[seen:]):
            time.sleep(0.05)
        assert any("tick 3" in x for x in lines[seen:]), "did not follow across the restart"
        ticks = [x for x in lines if "tick" in x]
        assert all(x.split()[1] == "chatty:t" for x in ticks)
    finally:
        proc.terminate()
        proc.wait(5)
        reader.join(5)
        assert proc.stdout is not None
        proc.stdout.close()


def test_sse_stream_filters_resumes_and_reports_lag(node: Slum) -> None:
    import socket

    node.cli("spawn", "chatty", "--id", "sse", check=True)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(node.dir / "slum.sock"))
    query = urllib.parse.urlencode({"instance_id": "chatty:sse"})
    sock.sendall(f"GET /_/api/logs/stream?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.settimeout(10)
    buf = b""
    while buf.count(b"event: log") < 3:
        buf += sock.recv(65536)
    assert b"text/event-stream" in buf
    ids = [int(line.split(b":")[1]) for line in buf.split(b"\n") if line.startswith(b"id:")]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert b"chatty:sse" in buf
    sock.close()
    # Resume from an id: what came after it, from the store, without gaps.
    last = ids[0]
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(node.dir / "slum.sock"))
    sock.sendall(
        f"GET /_/api/logs/stream?{query} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {last}\r\n\r\n".encode()
    )
    buf = b""
    while buf.count(b"event: log") < 5:
        buf += sock.recv(65536)
    sock.close()
    resumed = [int(line.split(b":")[1]) for line in buf.split(b"\n") if line.startswith(b"id:")]
    assert resumed[0] > last and resumed == sorted(resumed)
    assert resumed[1] - resumed[0] >= 1


def test_a_slow_sse_reader_is_told_it_lagged(node: Slum) -> None:
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(str(node.dir / "slum.sock"))
    sock.sendall(b"GET /_/api/logs/stream HTTP/1.1\r\nHost: x\r\n\r\n")
    node.cli("spawn", "flood", "--id", "lag", check=True)
    time.sleep(3)  # not reading: the server's queue for this client overflows
    sock.settimeout(10)
    buf = b""
    deadline = time.monotonic() + 20
    while b"event: lagged" not in buf and time.monotonic() < deadline:
        buf += sock.recv(1 << 20)
        buf = buf[-100_000:]
    sock.close()
    assert b"event: lagged" in buf
    missed = buf.split(b"event: lagged\ndata: ", 1)[1].split(b"\n", 1)[0]
    assert json.loads(missed)["missed"] > 0
    # the flood itself was stored in full meanwhile: the slow reader slowed nobody down
    status, _, _ = node.http("GET", "/health", host="one.web.localhost")
    assert status == 200


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_flood_neither_blocks_the_proxy_nor_loses_lines(node: Slum) -> None:
    node.cli("spawn", "chatty", "--id", "calm", check=True)
    node.cli("spawn", "flood", "--id", "f", check=True)
    latencies = []
    # Generous: ingestion runs at a lower CPU priority, and this machine may be busy.
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        started = time.monotonic()
        status, _, _ = node.http("GET", "/health", host="one.web.localhost")
        latencies.append(time.monotonic() - started)
        assert status == 200
        done = logs(node, search="flood done", lines=1)
        if done:
            break
        time.sleep(0.2)
    assert done, "the flood did not finish"
    total = int(done[0]["message"].split()[2])
    conn = connect(node.database)
    (stored,) = next(
        conn.execute("SELECT count(*) FROM logs WHERE instance_id = 'flood:f' AND stream = 'stdout'")
    )
    assert stored == total + 1  # every line, exactly once, plus "flood done"
    (calm,) = next(conn.execute("SELECT count(*) FROM logs WHERE instance_id = 'chatty:calm'"))
    assert calm > 20  # the other child kept being heard
    latencies.sort()
    assert latencies[len(latencies) // 2] < 0.5


@pytest.mark.slow
def test_sigkill_mid_flood_keeps_every_committed_line(node: Slum) -> None:
    node.cli("spawn", "flood", "--id", "k", check=True)
    time.sleep(1.5)
    node.stop(signal.SIGKILL)
    conn = connect(node.database)
    assert next(conn.execute("PRAGMA integrity_check"))[0] == "ok"
    rows = [
        r[0]
        for r in conn.execute(
            "SELECT message FROM logs WHERE instance_id = 'flood:k' AND stream = 'stdout' ORDER BY id"
        )
    ]
    numbers = [int(m.split()[2]) for m in rows]
    assert numbers == list(range(len(numbers))) and numbers  # a prefix, no gaps, no repeats
    fts = next(conn.execute("SELECT count(*) FROM logs_fts WHERE logs_fts MATCH 'flood'"))[0]
    assert fts >= len(numbers)
