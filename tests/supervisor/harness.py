"""A real Supervisor in the test's own trio run: config from TOML text, children from tests/children,
a Hub whose output a task parses and keeps, and a Journal fake that records what it was told."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import trio

from slum.config import parse
from slum.events import Hub, LogLine
from slum.logtext import Parser
from slum.store.ingest import BATCH_BYTES
from slum.supervisor import Instance, State, Supervisor
from tests.conftest import CHILDREN, PYTHON

FAST_SETTINGS: dict[str, Any] = {
    "health_check_interval": 0.2,
    "max_restarts": 3,
    "restart_window": 60,
    "backoff_base_ms": 50,
    "backoff_max_ms": 200,
    "stop_grace_s": 1,
}


def child(program: str) -> list[str]:
    return [PYTHON, str(CHILDREN / program)]


def service(name: str, command: list[str], *, env: dict[str, str] | None = None, **keys: Any) -> str:
    """One [service.NAME] table. JSON strings, numbers and lists are valid TOML values."""
    lines = [f"[service.{name}]", f"command = {json.dumps(command)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    if env:
        lines.append(f"[service.{name}.env]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in env.items()]
    return "\n".join(lines) + "\n"


def web(name: str = "web", *, env: dict[str, str] | None = None, **keys: Any) -> str:
    keys.setdefault("health", "/health")
    keys.setdefault("startup_timeout", 10)
    return service(name, child("web.py"), env=env, **keys)


@dataclass
class Started:
    instance_id: str
    pid: int
    started_at: float


@dataclass
class RecordingJournal:
    """A fake of runner.Journal (plus the optional instance_known): it writes down each call."""

    started: list[Started] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)

    async def process_started(self, inst: Instance, pid: int, started_at: float) -> None:
        self.started.append(Started(inst.id, pid, started_at))

    async def process_exited(self, inst: Instance, pid: int) -> None:
        self.exited.append(inst.id)

    async def instance_known(self, inst: Instance) -> None:
        self.known.append(inst.id)

    def pids(self, instance_id: str) -> list[int]:
        return [s.pid for s in self.started if s.instance_id == instance_id]


class LogSink:
    """Takes the hub's output, as the store's ingest task would, and keeps every entry."""

    def __init__(self) -> None:
        self.lines: list[LogLine] = []
        self.counts: Counter[tuple[str | None, str]] = Counter()  # (instance id, stream) -> lines
        self._arrived = trio.Event()

    async def drain(self, hub: Hub, *, batch: int = 0, pause_s: float = 0.0) -> None:
        """As ingestion does, minus the database: take, parse, keep. `batch`/`pause_s` make it a
        slow consumer: a pause after every `batch` lines."""
        parser = Parser()
        while True:
            await hub.wait_pending(parser.hold_until())
            items = hub.take(BATCH_BYTES)
            final = hub.closed and not hub.pending
            for line in parser.feed(items, time.time(), final=final):
                self.lines.append(line)
                self.counts[line.instance_id, line.stream] += 1
                if batch and len(self.lines) % batch == 0:
                    await trio.sleep(pause_s)
            arrived, self._arrived = self._arrived, trio.Event()
            arrived.set()
            if final and parser.hold_until() is None:
                return

    def of(self, instance_id: str, stream: str | None = None) -> list[LogLine]:
        return [
            line
            for line in self.lines
            if line.instance_id == instance_id and (stream is None or line.stream == stream)
        ]

    def count(self, instance_id: str, text: str, stream: str = "stdout") -> int:
        return sum(1 for line in self.of(instance_id, stream) if text in line.message)

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10) -> None:
        with trio.fail_after(within):
            while not predicate():
                await self._arrived.wait()


@dataclass
class Harness:
    sup: Supervisor
    hub: Hub
    journal: RecordingJournal
    logs: LogSink
    data_dir: Path


@asynccontextmanager
async def supervised(
    tmp_path: Path,
    services: str,
    *,
    instances: dict[str, list[str]] | None = None,
    known: Iterable[tuple[str, str]] = (),
    slow_drain: tuple[int, float] = (0, 0.0),
    **settings: Any,
) -> AsyncIterator[Harness]:
    values = {**FAST_SETTINGS, **settings}
    text = '[settings]\ndata_dir = "./data"\n'
    text += "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
    text += services
    if instances:
        text += "[instances]\n" + "".join(f"{svc} = {json.dumps(ids)}\n" for svc, ids in instances.items())
    config = parse(text, tmp_path / "tenement.toml")
    hub = Hub()
    journal = RecordingJournal()
    sup = Supervisor(config, hub, journal)
    logs = LogSink()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(logs.drain, hub, batch=slow_drain[0], pause_s=slow_drain[1]))
        await nursery.start(sup.run, known)
        try:
            yield Harness(sup, hub, journal, logs, config.settings.data_dir)
        finally:
            # Cancelling the supervisor stops every child (SIGTERM, then SIGKILL) and reaps it.
            nursery.cancel_scope.cancel()


async def wait_until(inst: Instance, predicate: Callable[[Instance], bool], within: float = 10) -> None:
    with trio.fail_after(within):
        while not predicate(inst):
            await inst.wait_changed()


async def wait_state(inst: Instance, *states: State, within: float = 10) -> None:
    await wait_until(inst, lambda i: i.state in states, within)


def states_seen(inst: Instance) -> list[str]:
    return [t.state for t in inst.history]


def transition_time(inst: Instance, state: State, after: float = 0.0) -> float:
    """Wall time of the first move into `state` at or after `after`."""
    return next(t.ts for t in inst.history if t.state == state.value and t.ts >= after)


async def http_get(port: int, path: str) -> tuple[int, bytes]:
    """One GET with Connection: close, read to EOF; independent of the code under test."""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


def identity(pid: int) -> tuple[int, float]:
    """(pid, create_time): names one process even after its pid is reused."""
    return pid, psutil.Process(pid).create_time()


def gone(proc: tuple[int, float]) -> bool:
    """Dead: no such process, a zombie (nobody may reap it in a container), or a reused pid."""
    pid, created = proc
    try:
        p = psutil.Process(pid)
        return p.create_time() != created or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def wait_gone(proc: tuple[int, float], within: float = 5) -> None:
    # A SIGKILLed process takes a moment to die and nothing signals it to us: poll.
    with trio.fail_after(within):
        while not gone(proc):  # noqa: ASYNC110
            await trio.sleep(0.02)


async def read_pid(path: Path, within: float = 10) -> int:
    """The pid a child wrote to a file (written after it started: poll with a deadline)."""
    with trio.fail_after(within):
        while True:
            with contextlib.suppress(FileNotFoundError, ValueError):
                return int(await trio.Path(path).read_text())
            await trio.sleep(0.01)


def reaped(pid: int) -> bool:
    """No zombie of ours is left under this pid (WNOHANG: never blocks)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def same_group(pid: int) -> bool:
    return os.getpgid(pid) == pid and os.getsid(pid) == pid
