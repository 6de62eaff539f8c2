"""The alert engine against real webhook receivers on 127.0.0.1: once per episode plus recovery,
rate limits, retries, formats, and a receiver that hangs never holds up the supervisor."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trio

from slum import alerts as alerts_mod
from slum import config as cfg
from slum.alerts import Alerts
from slum.config import AlertRule
from slum.events import Hub, LogLine, StateChanged, StoredLog
from slum.supervisor import Supervisor
from tests.conftest import CHILDREN, PYTHON


class Receiver:
    """A webhook receiver: records every POST (path, headers, body); answers `statuses` in
    turn (then 200)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.posts: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(p["body"]) for p in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Hanging:
    """Accepts connections and never answers: the worst webhook there is."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def wait_until(predicate: Any, limit_s: float = 20) -> None:
    # Polling on purpose: the conditions are counters in another thread (the receiver).
    with trio.fail_after(limit_s):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.02)


async def test_once_per_episode_then_recovery_and_min_interval(receiver: Receiver) -> None:
    hub = Hub()
    engine = Alerts((AlertRule(receiver.url, "json", (), 60),), hub, tick_s=3600)
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        engine.observe("node_offline", "node-b", True, "server node-b is offline")
        engine.observe("node_offline", "node-b", True, "server node-b is offline")  # same episode
        engine.observe("node_offline", "node-b", False, "server node-b is online")
        engine.observe("node_offline", "node-b", False, "server node-b is online")
        # A new episode within min_interval: counted, not sent, and so no recovery either.
        engine.observe("node_offline", "node-b", True, "server node-b is offline")
        engine.observe("node_offline", "node-b", False, "server node-b is online")
        await wait_until(lambda: engine.statistics().sent == 2)
        await trio.sleep(0.2)
        nursery.cancel_scope.cancel()
    bodies = receiver.json()
    assert [(b["event"], b["subject"], b["status"]) for b in bodies] == [
        ("node_offline", "node-b", "firing"),
        ("node_offline", "node-b", "resolved"),
    ]
    assert bodies[0]["message"] == "server node-b is offline" and bodies[0]["source"] == "slum"
    stats = engine.statistics()
    assert (stats.fired, stats.resolved, stats.suppressed, stats.open) == (2, 2, 1, 0)
    assert [a.status for a in engine.recent] == ["firing", "resolved", "firing", "resolved"]
    assert engine.recent[2].deliveries == {receiver.url.split("/")[2]: "suppressed (min_interval)"}


async def test_events_filter_formats_and_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts_mod, "BACKOFF_BASE_S", 0.05)
    slack, ntfy = Receiver(statuses=[500, 503]), Receiver()
    try:
        hub = Hub()
        rules = (
            AlertRule(slack.url, "slack", ("disk_full",), 0),
            AlertRule(ntfy.url + "?x=1", "ntfy", (), 0),
        )
        engine = Alerts(rules, hub, tick_s=3600)
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            engine.observe("logs_dropped", "logs", True, "12 log lines dropped")
            engine.observe("disk_full", "/srv", True, "/srv is 93% full\r\nInjected: yes")
            await wait_until(lambda: len(slack.posts) == 3 and len(ntfy.posts) == 2)
            nursery.cancel_scope.cancel()
        # slack: only the event it asked for, delivered on the third attempt (500, 503, 200).
        assert [json.loads(p["body"])["text"].splitlines()[0] for p in slack.posts] == [
            f":rotating_light: *disk over 90%: /srv* on {socket.gethostname()}"
        ] * 3
        assert engine.recent[1].deliveries[slack.url.split("/")[2]] == "sent"
        # ntfy: plain text, title and priority in headers; a message cannot add header lines.
        first, second = ntfy.posts
        assert first["path"] == "/hook?x=1" and first["body"] == b"12 log lines dropped"
        assert first["headers"]["Priority"] == "high"
        assert first["headers"]["Title"].endswith("log lines dropped: logs")
        assert "Injected" not in second["headers"]
        assert second["body"] == b"/srv is 93% full\r\nInjected: yes"
    finally:
        slack.close()
        ntfy.close()


async def test_a_receiver_that_refuses_is_not_retried_forever() -> None:
    bad = Receiver(statuses=[404] * 10)
    try:
        outcome = await alerts_mod.deliver(
            AlertRule(bad.url), alerts_mod.Alert(1, time.time(), "crash_loop", "web:one", "firing", "looping")
        )
        assert outcome == "HTTP 404 after 1 attempt" and len(bad.posts) == 1
    finally:
        bad.close()


def _config(tmp_path: Path, url: str) -> cfg.Config:
    return cfg.parse(
        f"""
[settings]
data_dir = "{tmp_path}/data"
max_restarts = 0
backoff_base_ms = 10
backoff_max_ms = 20
stop_grace_s = 1

[service.crash]
command = ["{PYTHON}", "{CHILDREN}/crash.py"]
startup_timeout = 5

[service.web]
command = ["{PYTHON}", "{CHILDREN}/web.py"]
health = "/health"
startup_timeout = 10

[[alerts]]
url = "{url}"
min_interval = 0
""",
        tmp_path / "tenement.toml",
    )


class NoJournal:
    async def process_started(self, inst: Any, pid: int, started_at: float) -> None:
        pass

    async def process_exited(self, inst: Any, pid: int) -> None:
        pass


@pytest.mark.slow
async def test_a_hanging_webhook_does_not_delay_spawns(tmp_path: Path) -> None:
    hanging = Hanging()
    try:
        config = _config(tmp_path, hanging.url)
        hub = Hub()
        engine = Alerts(config.alerts, hub, tick_s=3600)
        sup = Supervisor(config, hub, NoJournal())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain_logs, hub)
            await nursery.start(engine.run)
            await nursery.start(sup.run)
            # Failures, each an alert for the webhook that never answers.
            for n in range(4):
                await sup.spawn("crash", f"c{n}")
            await wait_until(lambda: engine.statistics().fired >= 4)
            await wait_until(lambda: len(hanging.accepted) >= 1)
            # Meanwhile the supervisor goes on at its own pace.
            started = trio.current_time()
            inst = await sup.spawn("web", "alive")
            assert inst.serving
            assert trio.current_time() - started < alerts_mod.POST_TIMEOUT_S
            # A flood of events does not block either: the queue is bounded, drops are counted.
            for n in range(500):
                hub.publish(StateChanged(f"web:x{n}", "backoff", "failed", "flood"))
            await wait_until(lambda: engine.statistics().dropped > 0)
            stats = engine.statistics()
            assert stats.sent == 0 and stats.queued == alerts_mod.QUEUE_PER_WEBHOOK
            assert stats.fired >= alerts_mod.QUEUE_PER_WEBHOOK
            await sup.stop("web:alive")
            nursery.cancel_scope.cancel()
    finally:
        hanging.close()


async def _drain_logs(hub: Hub) -> None:
    # What ingestion does, without a database: take what the children wrote, so their pipes
    # never fill.
    while not hub.closed:
        await hub.wait_pending()
        hub.take(1 << 20)


def test_every_alert_key_and_event_is_documented() -> None:
    doc = (Path(__file__).resolve().parent.parent / "specs" / "operations.md").read_text()
    for key in cfg.ALERT_KEYS:
        assert f"`{key.name}`" in doc, f"{key.name} is not documented in specs/operations.md"
    for event in cfg.ALERT_EVENTS:
        assert f"`{event}`" in doc, f"{event} is not documented in specs/operations.md"


def _episodes(engine: Alerts) -> list[tuple[str, str, str]]:
    return [(a.event, a.subject, a.status) for a in engine.recent]


async def test_state_changes_make_episodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts_mod, "FLAP_QUIET_S", 0.0)
    engine = Alerts((), Hub(), restart_window=60, max_restarts=5)

    def change(old: str, new: str, reason: str | None = None) -> None:
        engine.state_changed(StateChanged("web:one", old, new, reason))

    # Two restarts are not a loop; the third within the window is.
    for _ in range(2):
        change("starting", "backoff", "exited with code 3")
        change("backoff", "starting")
    assert _episodes(engine) == []
    change("starting", "backoff", "exited with code 3")
    change("backoff", "starting")
    change("starting", "backoff", "exited with code 3")  # still the same episode
    change("backoff", "failed", "gave up")
    assert _episodes(engine) == [
        ("crash_loop", "web:one", "firing"),
        ("instance_failed", "web:one", "firing"),
    ]
    assert "restarted 3 times within 60s: exited with code 3" in engine.recent[0].message
    change("failed", "starting")  # an operator restarted it
    change("starting", "healthy")
    assert _episodes(engine)[-1] == ("instance_failed", "web:one", "resolved")
    engine.crash_loop_settle_s = 0
    engine.tick()
    assert _episodes(engine)[-1] == ("crash_loop", "web:one", "resolved")

    # Health going back and forth while serving.
    for _ in range(3):
        change("healthy", "degraded")
        change("degraded", "healthy")
    assert _episodes(engine)[-1] == ("health_flapping", "web:one", "firing")
    engine.tick()  # healthy and quiet (FLAP_QUIET_S is 0 here)
    assert _episodes(engine)[-1] == ("health_flapping", "web:one", "resolved")
    assert engine.episodes == {}


async def test_gauges_disk_and_dropped_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts_mod, "DROPS_QUIET_S", 0.0)
    used = {"/srv": 0.5}
    hub = Hub()
    engine = Alerts((), hub, disk_usage=lambda: used)
    engine.tick()
    used["/srv"] = 0.93
    engine.tick()
    used["/srv"] = 0.88  # between the two marks: the same episode
    engine.tick()
    used["/srv"] = 0.80
    engine.tick()
    hub.dropped_logs += 12
    engine.tick()
    engine.tick()
    assert _episodes(engine) == [
        ("disk_full", "/srv", "firing"),
        ("disk_full", "/srv", "resolved"),
        ("logs_dropped", "logs", "firing"),
        ("logs_dropped", "logs", "resolved"),
    ]
    assert engine.recent[0].message == "/srv is 93% full"
    assert engine.recent[2].message.startswith("12 log lines dropped")
    assert alerts_mod.disk_usage_of({"disk_total_bytes": 100.0, "disk_free_bytes": 5.0}, "/d") == {"/d": 0.95}
    assert alerts_mod.disk_usage_of({}, "/d") == {}


async def test_a_shared_registry_out_of_reach_is_one_episode() -> None:
    state: dict[str, Any] = {"backend": "etcd", "up": True, "reason": None}

    def broken() -> dict[str, Any]:
        raise RuntimeError("gauge broke")

    engine = Alerts((), Hub(), registry_health=lambda: state)
    engine.tick()
    state.update(up=False, reason="no member answered")
    engine.tick()
    engine.tick()  # still down: the same episode
    engine.registry_health = broken  # a failing gauge changes nothing
    engine.tick()
    engine.registry_health = lambda: state
    state.update(up=True, reason=None)
    engine.tick()
    assert _episodes(engine) == [("registry_down", "etcd", "firing"), ("registry_down", "etcd", "resolved")]
    assert "no member answered" in engine.recent[0].message and "last known table" in engine.recent[0].message


async def test_a_reload_moves_alerts_to_the_new_webhooks(receiver: Receiver) -> None:
    other = Receiver()
    try:
        engine = Alerts((AlertRule(receiver.url, min_interval=0),), Hub(), tick_s=3600)
        async with trio.open_nursery() as nursery:
            await nursery.start(engine.run)
            engine.observe("node_offline", "a", True, "a is offline")
            await wait_until(lambda: len(receiver.posts) == 1)
            engine.set_rules((AlertRule(other.url, min_interval=0),))
            engine.observe("node_offline", "b", True, "b is offline")
            await wait_until(lambda: len(other.posts) == 1)
            engine.observe("node_offline", "a", False, "a is online")  # told the old set only
            await trio.sleep(0.3)
            nursery.cancel_scope.cancel()
        assert [b["subject"] for b in receiver.json()] == ["a"]
        assert [b["subject"] for b in other.json()] == ["b"]
    finally:
        other.close()


async def test_a_log_flood_does_not_crowd_out_state_changes() -> None:
    hub = Hub()
    engine = Alerts((), hub, tick_s=3600)
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.run)
        line = StoredLog(1, LogLine(0.0, "web:one", "one", "stdout", "info", "x"))
        for _ in range(50_000):  # no checkpoint: the engine cannot read in between
            hub.publish(line)
        hub.publish(StateChanged("web:one", "backoff", "failed", "gave up"))
        await wait_until(lambda: engine.episodes)
        nursery.cancel_scope.cancel()
    assert list(engine.episodes) == [("instance_failed", "web:one")]
    assert engine.statistics().missed_events == 0
