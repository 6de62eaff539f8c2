"""What happens to a child's output when slum stops: read to the end and stored at SIGTERM, a
bounded loss at SIGKILL, and a quiet child heard promptly beside a flooding one."""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slum.events import OUTPUT_QUEUE_BYTES
from slum.store import connect
from slum.supervisor.runner import READ_CHUNK
from tests.conftest import free_port
from tests.e2e.conftest import Slum, write_config

PIPE_BYTES = 65536  # Linux's default pipe capacity
LINE_BYTES = 100  # counted.py's lines
# What a SIGKILL can lose of one pipe (specs/storage.md): the pipe itself, what the hub holds for
# it (below OUTPUT_QUEUE_BYTES before a read of up to READ_CHUNK), and as much again in the batch
# being written.
LOSS_BOUND_BYTES = PIPE_BYTES + 2 * (OUTPUT_QUEUE_BYTES + READ_CHUNK)

CONFIG = """
[settings]
data_dir = "./data"
stop_grace_s = 10

[service.goodbye]
command = ["{python}", "{children}/goodbye.py"]
[service.goodbye.env]
GOODBYE_LINES = "20000"

[service.counted]
command = ["{python}", "{children}/counted.py"]
restart = "never"
[service.counted.env]
COUNT_FILE = "{dir}/written"

[service.tick]
command = ["{python}", "{children}/chatty.py"]
[service.tick.env]
MODE = "tick"
"""


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Slum]:
    write_config(tmp_path, CONFIG.replace("{dir}", str(tmp_path)))
    s = Slum(tmp_path, free_port())
    s.start()
    try:
        yield s
    finally:
        if s.proc and s.proc.poll() is None:
            s.stop()


def count(db: Path, sql: str, *args: object) -> int:
    conn = connect(db)
    try:
        return int(next(conn.execute(sql, args))[0])
    finally:
        conn.close()


def test_sigterm_stores_what_a_child_says_while_it_stops(node: Slum) -> None:
    # 20,000 lines (~250 KB) written in the SIGTERM handler: several pipes full, so slum must keep
    # reading while the child stops, and store all of it before the database closes.
    node.cli("spawn", "goodbye", "--id", "g", check=True)
    assert node.stop(signal.SIGTERM) == 0
    stored = count(
        node.database,
        "SELECT count(*) FROM logs WHERE instance_id = 'goodbye:g' "
        "AND stream = 'stdout' AND message LIKE 'goodbye %'",
    )
    assert stored == 20001


@pytest.mark.slow
def test_sigkill_mid_flood_loses_at_most_the_bound(node: Slum) -> None:
    node.cli("spawn", "counted", "--id", "k", check=True)
    time.sleep(0.15)
    node.stop(signal.SIGKILL)
    written_file = node.dir / "written"
    # The child dies with slum (its pipe's reader is gone); wait until its count stops moving.
    last, deadline = -1, time.monotonic() + 20
    while time.monotonic() < deadline:
        now = int(written_file.read_bytes() or b"0") if written_file.exists() else 0
        if now == last:
            break
        last = now
        time.sleep(0.5)
    written = last
    stored = count(
        node.database, "SELECT count(*) FROM logs WHERE instance_id = 'counted:k' AND stream = 'stdout'"
    )
    lost = written - stored
    bound = LOSS_BOUND_BYTES // LINE_BYTES
    print(
        f"SIGKILL 0.15 s into a flood: {written} lines written, {stored} stored, {lost} lost (bound {bound})"
    )
    assert written > 0 and stored > 0
    assert lost <= bound


@pytest.mark.slow
def test_a_quiet_child_is_stored_promptly_beside_a_flood(node: Slum) -> None:
    node.cli("spawn", "tick", "--id", "quiet", check=True)
    node.cli("spawn", "counted", "--id", "loud", check=True)
    time.sleep(2)
    written_file = node.dir / "written"
    for _ in range(3):
        flooding = int(written_file.read_bytes() or b"0")
        time.sleep(1)
        conn = connect(node.database)
        rows = [
            (int(m.split()[1]), ts)
            for m, ts in conn.execute(
                "SELECT message, ts_us FROM logs WHERE instance_id = 'tick:quiet' "
                "AND stream = 'stdout' ORDER BY id"
            )
        ]
        conn.close()
        numbers = [n for n, _ in rows]
        assert numbers == list(range(len(numbers))) and numbers  # every tick, in order
        # The newest stored tick was read recently: the flood did not hold it back.
        assert time.time() - rows[-1][1] / 1e6 < 3.0
        assert int(written_file.read_bytes() or b"0") > flooding  # still flooding meanwhile


def test_a_quiet_child_is_streamed_without_gaps_beside_a_flood(node: Slum) -> None:
    # A live stream that follows one instance gets every line of it while another floods: the
    # flood's lines never take room in that stream's queue (they were published to it, filtered
    # after, and pushed its followed lines out as "lagged").
    node.cli("spawn", "tick", "--id", "quiet", check=True)
    node.cli("spawn", "counted", "--id", "loud", check=True)
    time.sleep(1)
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(node.dir / "slum.sock"))
    sock.sendall(b"GET /_/api/logs/stream?instance_id=tick:quiet HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(10)
    buf = b""
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        buf += sock.recv(65536)
    sock.close()
    ticks = [
        int(json.loads(data)["message"].split()[1])
        for data in re.findall(rb"^data: (\{.*\})$", buf, re.M)
        if b'"tick ' in data
    ]
    assert b"event: lagged" not in buf
    assert len(ticks) >= 20  # one every 50 ms
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))  # none missing
    assert int((node.dir / "written").read_bytes() or b"0") > 20_000  # it was flooding
