"""The start-up reap (startup.py): only process groups whose recorded owner slum is dead are killed."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import psutil

from slum.startup import reap
from slum.store.db import Store
from slum.supervisor.process import owner_alive
from tests.supervisor.harness import gone


def test_owner_alive_means_this_pid_with_this_start_time() -> None:
    me = psutil.Process()
    assert owner_alive(me.pid, me.create_time())
    assert not owner_alive(me.pid, me.create_time() - 100)  # the pid, reused
    done = subprocess.Popen(["true"])
    done.wait()
    assert not owner_alive(done.pid, me.create_time())
    assert not owner_alive(None, None)


def test_reap_spares_groups_of_a_live_owner_and_kills_orphans(tmp_path: Path) -> None:
    orphan = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    kept = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    dead_owner = subprocess.Popen(["true"])
    dead_owner.wait()
    me = psutil.Process()
    store = Store(tmp_path / "slum.db")
    try:
        rows = [
            (
                "web:orphan",
                orphan.pid,
                psutil.Process(orphan.pid).create_time(),
                dead_owner.pid,
                me.create_time(),
            ),
            ("web:kept", kept.pid, psutil.Process(kept.pid).create_time(), me.pid, me.create_time()),
        ]
        store.write_sync(
            lambda c: c.executemany(
                "INSERT INTO processes (instance_id, pid, pgid, started_at, owner_pid, owner_started) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(i, p, p, s, o, os_) for i, p, s, o, os_ in rows],
            )
        )
        assert reap(store) == 1
        assert orphan.wait(5) == -signal.SIGKILL
        assert kept.poll() is None and not gone((kept.pid, rows[1][2]))
        left = store.write_sync(lambda c: [r[0] for r in c.execute("SELECT instance_id FROM processes")])
        assert left == ["web:kept"]
    finally:
        store.close()
        for p in (orphan, kept):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
