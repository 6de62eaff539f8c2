"""reap_leftovers: what a SIGKILLed slum left behind is killed on the next start, and only that."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator

import psutil
import pytest

from slum.supervisor.process import reap_leftovers
from tests.supervisor.harness import gone, identity

# A group leader with two children of its own, like an app and its workers.
GROUP = ["sh", "-c", "sleep 1000 & sleep 1000 & wait"]


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        # The whole group: the sleeps of a spared group must not outlive the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def members(leader: subprocess.Popen[bytes]) -> list[tuple[int, float]]:
    """The leader and its children, once both sleeps exist."""
    deadline = time.monotonic() + 10
    while True:
        children = psutil.Process(leader.pid).children()
        if len(children) == 2:
            return [identity(leader.pid), *(identity(c.pid) for c in children)]
        assert time.monotonic() < deadline, "the group did not start its sleeps"
        time.sleep(0.01)


def test_reap_kills_recorded_groups_and_spares_the_rest(procs: list[subprocess.Popen[bytes]]) -> None:
    left = subprocess.Popen(GROUP, start_new_session=True)
    procs.append(left)
    unrelated = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    procs.append(unrelated)
    group = members(left)
    bystander = identity(unrelated.pid)

    killed = reap_leftovers([(left.pid, left.pid, group[0][1])])

    assert killed == 3
    assert left.wait(5) == -9
    deadline = time.monotonic() + 5
    while not all(gone(p) for p in group):
        assert time.monotonic() < deadline, "a group member survived"
        time.sleep(0.01)
    assert not gone(bystander) and unrelated.poll() is None


def test_reap_spares_a_group_started_before_the_record(procs: list[subprocess.Popen[bytes]]) -> None:
    # The recorded group id now belongs to processes older than the record: a reused id.
    reused = subprocess.Popen(GROUP, start_new_session=True)
    procs.append(reused)
    group = members(reused)
    later = group[0][1] + 60

    assert reap_leftovers([(reused.pid, reused.pid, later)]) == 0
    assert not any(gone(p) for p in group)


def test_reap_of_nothing_is_nothing() -> None:
    assert reap_leftovers([]) == 0
