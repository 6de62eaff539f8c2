"""Alerts: notice when something goes wrong (or right again) and tell a webhook, never in the way.

The engine reads the Hub's state changes and, on a timer, a few gauges (disk, dropped log lines,
what app.py reports about nodes). Each problem is an *episode* keyed by (event, subject): it is
announced once when it starts and once when it ends (the recovery), and the same event for the same
subject is not announced again within a rule's `min_interval` (a new episode sooner is counted as
suppressed, and its recovery is not sent either).

Nothing here can slow the supervisor: the Hub offers the engine state changes only (never the log
lines), into a bounded queue; `observe()` is synchronous and only queues; each webhook has
its own sender task and a bounded queue, and when a queue is full the alert is dropped and counted.
A webhook that hangs holds up only its own sender, for at most ATTEMPTS x POST_TIMEOUT_S plus the
backoff per alert.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import trio

from slum import __version__
from slum.config import ALERT_EVENTS, AlertRule
from slum.events import Hub, StateChanged

log = logging.getLogger("slum.alerts")

TICK_S = 5.0
QUEUE_PER_WEBHOOK = 64
HISTORY = 200
ATTEMPTS = 4
POST_TIMEOUT_S = 10.0
BACKOFF_BASE_S = 1.0
CRASH_LOOP_RESTARTS = 3  # restarts within restart_window (fewer if max_restarts is lower)
FLAP_CHANGES = 6  # health changes within FLAP_WINDOW_S: three round trips
FLAP_WINDOW_S = 600.0
FLAP_QUIET_S = 120.0  # healthy and no change for this long ends a flapping episode
DISK_HIGH = 0.90
DISK_LOW = 0.85  # hysteresis: a disk at 90.1% / 89.9% is one episode, not many
DROPS_QUIET_S = 60.0
SERVING = ("healthy", "degraded", "unhealthy")
DESCRIPTIONS = {
    "instance_failed": "instance failed",
    "crash_loop": "instance crash-looping",
    "health_flapping": "health flapping",
    "node_offline": "server offline",
    "disk_full": "disk over 90%",
    "logs_dropped": "log lines dropped",
    "registry_down": "fleet registry unreachable",
}


@dataclass(slots=True)
class Alert:
    id: int
    ts: float
    event: str
    subject: str
    status: str  # firing | resolved
    message: str
    deliveries: dict[str, str] = field(default_factory=dict)  # webhook host -> outcome

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": self.ts,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.ts)),
            "event": self.event,
            "subject": self.subject,
            "status": self.status,
            "message": self.message,
            "deliveries": dict(self.deliveries),
        }


@dataclass(frozen=True)
class AlertStatistics:
    fired: int
    resolved: int
    open: int
    suppressed: int
    sent: int
    failed: int
    dropped: int
    queued: int
    missed_events: int


@dataclass
class _Episode:
    alert: Alert
    notified: set[int] = field(default_factory=set)  # indexes of the rules told it started


@dataclass
class _Webhook:
    rule: AlertRule
    send: trio.MemorySendChannel[Alert]
    receive: trio.MemoryReceiveChannel[Alert]
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    @property
    def name(self) -> str:
        return urlsplit(self.rule.url).netloc.rpartition("@")[2]


class Alerts:
    def __init__(
        self,
        rules: tuple[AlertRule, ...],
        hub: Hub,
        *,
        restart_window: float = 300,
        max_restarts: int = 3,
        tick_s: float = TICK_S,
        disk_usage: Callable[[], dict[str, float]] | None = None,
        registry_health: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.hub = hub
        self.restart_window = restart_window
        self.crash_loop_restarts = max(1, min(CRASH_LOOP_RESTARTS, max_restarts))
        self.tick_s = tick_s
        self.disk_usage = disk_usage
        self.registry_health = registry_health  # a shared registry's (etcd) up/down and why
        self.recent: deque[Alert] = deque(maxlen=HISTORY)
        self.episodes: dict[tuple[str, str], _Episode] = {}
        self._last_sent: dict[tuple[int, str, str], float] = {}
        self._webhooks: list[_Webhook] = []
        self._nursery: trio.Nursery | None = None
        self._next_id = 1
        self._restarts: dict[str, deque[float]] = {}
        self._health_changes: dict[str, deque[float]] = {}
        self._healthy_since: dict[str, float] = {}
        # A crash loop ends when the instance has stayed healthy this long: an app that serves
        # for a few seconds and crashes again is still looping.
        self.crash_loop_settle_s = min(restart_window / 4, 30.0)
        self._last_drops = hub.dropped_logs
        self._last_drop_at = 0.0
        self._counts = {
            "fired": 0,
            "resolved": 0,
            "suppressed": 0,
            "sent": 0,
            "failed": 0,
            "dropped": 0,
            "missed_events": 0,
        }
        self._rules: tuple[AlertRule, ...] = ()
        self._pending_rules = rules

    # --- what happened -------------------------------------------------------------------
    def observe(self, event: str, subject: str, active: bool, message: str) -> None:
        """Report the current truth about (event, subject); only a change makes an alert.
        Synchronous and non-blocking: callable from anywhere, including the supervisor."""
        key = (event, subject)
        episode = self.episodes.get(key)
        if active and episode is None:
            alert = self._new(event, subject, "firing", message)
            episode = self.episodes[key] = _Episode(alert)
            self._counts["fired"] += 1
            now = time.monotonic()
            for index, hook in enumerate(self._webhooks):
                if not _wants(hook.rule, event):
                    continue
                last = self._last_sent.get((index, event, subject))
                if last is not None and now - last < hook.rule.min_interval:
                    self._counts["suppressed"] += 1
                    alert.deliveries[hook.name] = "suppressed (min_interval)"
                    continue
                self._last_sent[(index, event, subject)] = now
                episode.notified.add(index)
                self._queue(hook, alert)
        elif not active and episode is not None:
            del self.episodes[key]
            alert = self._new(event, subject, "resolved", message)
            self._counts["resolved"] += 1
            for index in episode.notified:
                if index < len(self._webhooks):
                    self._queue(self._webhooks[index], alert)

    def _new(self, event: str, subject: str, status: str, message: str) -> Alert:
        alert = Alert(self._next_id, time.time(), event, subject, status, message)
        self._next_id += 1
        self.recent.append(alert)
        level = "error" if status == "firing" else "info"
        self.hub.system(
            subject if ":" in subject else None,
            f"alert {status}: {DESCRIPTIONS.get(event, event)}: {message}",
            level,
        )
        return alert

    def _queue(self, hook: _Webhook, alert: Alert) -> None:
        try:
            hook.send.send_nowait(alert)
            alert.deliveries[hook.name] = "queued"
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._counts["dropped"] += 1
            alert.deliveries[hook.name] = "dropped (queue full)"

    def state_changed(self, change: StateChanged) -> None:
        iid, old, new, now = change.instance_id, change.old, change.new, time.monotonic()
        reason = change.reason or new
        if new == "failed":
            self.observe("instance_failed", iid, True, f"{iid} failed: {reason}")
        elif old == "failed":
            self.observe("instance_failed", iid, False, f"{iid} is {new} again")
        if new in ("backoff", "crash-looping"):
            restarts = self._restarts.setdefault(iid, deque())
            restarts.append(now)
            while restarts and restarts[0] < now - self.restart_window:
                restarts.popleft()
            if new == "crash-looping" or len(restarts) >= self.crash_loop_restarts:
                self.observe(
                    "crash_loop",
                    iid,
                    True,
                    f"{iid} restarted {len(restarts)} times within {self.restart_window:g}s: {reason}",
                )
        elif new in ("stopped", "sleeping") and old != "backoff":
            self._restarts.pop(iid, None)
            self.observe("crash_loop", iid, False, f"{iid} is {new}")
        if old in SERVING and new in SERVING:
            changes = self._health_changes.setdefault(iid, deque())
            changes.append(now)
            while changes and changes[0] < now - FLAP_WINDOW_S:
                changes.popleft()
            if len(changes) >= FLAP_CHANGES:
                self.observe(
                    "health_flapping",
                    iid,
                    True,
                    f"{iid} changed health {len(changes)} times within {FLAP_WINDOW_S:g}s (now {new})",
                )
        elif new not in SERVING:
            self._health_changes.pop(iid, None)
            self.observe("health_flapping", iid, False, f"{iid} is {new}")
        # Healthy by the state machine: a crash loop's recovery is timed from when the process
        # is healthy again, while its status may still read crash-looping.
        if (change.state or new) == "healthy":
            self._healthy_since.setdefault(iid, now)
        else:
            self._healthy_since.pop(iid, None)

    def node(self, server: str, status: str) -> None:
        self.observe("node_offline", server, status != "online", f"server {server} is {status}")

    def tick(self) -> None:
        """Gauges and time-based recoveries, on a timer."""
        now = time.monotonic()
        for event, iid in list(self.episodes):
            since = self._healthy_since.get(iid)
            if since is None:
                continue
            if event == "crash_loop" and now - since >= self.crash_loop_settle_s:
                self._restarts.pop(iid, None)
                self.observe(event, iid, False, f"{iid} healthy for {now - since:.0f}s")
            changes = self._health_changes.get(iid)
            if (
                event == "health_flapping"
                and now - since >= FLAP_QUIET_S
                and (not changes or now - changes[-1] >= FLAP_QUIET_S)
            ):
                self._health_changes.pop(iid, None)
                self.observe(event, iid, False, f"{iid} healthy for {FLAP_QUIET_S:g}s")
        if self.disk_usage is not None:
            try:
                usage = self.disk_usage()
            except Exception as e:  # a gauge failing is no reason to stop alerting
                log.warning("alerts: disk gauge failed: %s", e)
                usage = {}
            for subject, used in usage.items():
                is_open = ("disk_full", subject) in self.episodes
                if used >= DISK_HIGH or (is_open and used > DISK_LOW):
                    self.observe("disk_full", subject, True, f"{subject} is {used:.0%} full")
                else:
                    self.observe("disk_full", subject, False, f"{subject} is {used:.0%} full")
        if self.registry_health is not None:
            self._registry()
        drops = self.hub.dropped_logs
        if drops > self._last_drops:
            self.observe(
                "logs_dropped",
                "logs",
                True,
                f"{drops - self._last_drops} log lines dropped (ingestion behind)",
            )
            self._last_drops, self._last_drop_at = drops, now
        elif now - self._last_drop_at >= DROPS_QUIET_S:
            self.observe("logs_dropped", "logs", False, f"no log lines dropped for {DROPS_QUIET_S:g}s")

    def _registry(self) -> None:
        try:
            state = self.registry_health() if self.registry_health is not None else None
        except Exception as e:  # a gauge failing is no reason to stop alerting
            log.warning("alerts: registry gauge failed: %s", e)
            return
        if state is None:
            return
        up, backend = bool(state.get("up")), str(state.get("backend", "registry"))
        message = (
            f"the {backend} registry is reachable again"
            if up
            else f"the {backend} registry cannot be reached ({state.get('reason') or 'no answer'}): "
            "routing goes on with the last known table; fleet changes are refused"
        )
        self.observe("registry_down", backend, not up, message)

    # --- running ---------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.set_rules(self._pending_rules)
            with self.hub.subscribe(1024, only=StateChanged) as sub:
                nursery.start_soon(self._ticker)
                task_status.started()
                while True:
                    event = await sub.receive()
                    if isinstance(event, StateChanged):
                        self.state_changed(event)
                    missed = sub.take_missed()
                    if missed:
                        self._counts["missed_events"] += missed

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self.tick_s)
            self.tick()

    def set_rules(self, rules: tuple[AlertRule, ...]) -> None:
        """A reload: new webhooks get senders, gone ones stop (what they had queued is lost)."""
        self._pending_rules = rules
        if self._nursery is None or rules == self._rules:
            return
        for hook in self._webhooks:
            hook.scope.cancel()
            hook.send.close()
        self._webhooks, self._rules = [], rules
        self._last_sent.clear()
        for episode in self.episodes.values():
            episode.notified.clear()
        for rule in rules:
            send, receive = trio.open_memory_channel[Alert](QUEUE_PER_WEBHOOK)
            hook = _Webhook(rule, send, receive)
            self._webhooks.append(hook)
            self._nursery.start_soon(self._sender, hook)

    async def _sender(self, hook: _Webhook) -> None:
        with hook.scope:
            async for alert in hook.receive:
                outcome = await deliver(hook.rule, alert)
                alert.deliveries[hook.name] = outcome
                if outcome == "sent":
                    self._counts["sent"] += 1
                else:
                    self._counts["failed"] += 1
                    self.hub.system(None, f"alert webhook {hook.name}: {outcome}", "warn")

    def statistics(self) -> AlertStatistics:
        queued = sum(h.send.statistics().current_buffer_used for h in self._webhooks)
        c = self._counts
        return AlertStatistics(
            c["fired"],
            c["resolved"],
            len(self.episodes),
            c["suppressed"],
            c["sent"],
            c["failed"],
            c["dropped"],
            queued,
            c["missed_events"],
        )


def disk_usage_of(host: dict[str, float], where: str) -> dict[str, float]:
    """The sampler's host gauges -> {where: fraction used}."""
    total, free = host.get("disk_total_bytes"), host.get("disk_free_bytes")
    return {where: 1 - free / total} if total and free is not None else {}


def _wants(rule: AlertRule, event: str) -> bool:
    return not rule.events or event in rule.events


# --- delivery ------------------------------------------------------------------------------
def render(rule: AlertRule, alert: Alert) -> tuple[bytes, dict[str, str]]:
    """The body and headers a receiver of this format expects."""
    host = socket.gethostname()
    title = f"{DESCRIPTIONS.get(alert.event, alert.event)}: {alert.subject}"
    if alert.status == "resolved":
        title = f"resolved: {title}"
    if rule.format == "slack":
        mark = ":white_check_mark:" if alert.status == "resolved" else ":rotating_light:"
        text = f"{mark} *{title}* on {host}\n{alert.message}"
        return json.dumps({"text": text}).encode(), {"Content-Type": "application/json"}
    if rule.format == "ntfy":
        headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "Title": f"slum on {host}: {title}",
            "Priority": "default" if alert.status == "resolved" else "high",
            "Tags": "white_check_mark" if alert.status == "resolved" else "rotating_light",
        }
        return alert.message.encode(), headers
    payload = {**alert.to_dict(), "host": host, "source": "slum", "version": __version__, "title": title}
    payload.pop("deliveries")
    return json.dumps(payload).encode(), {"Content-Type": "application/json"}


async def deliver(rule: AlertRule, alert: Alert) -> str:
    """POST with retries and exponential backoff; returns "sent" or what went wrong last."""
    body, headers = render(rule, alert)
    outcome = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            await trio.sleep(BACKOFF_BASE_S * 2 ** (attempt - 1) * random.uniform(0.5, 1.0))
        try:
            with trio.fail_after(POST_TIMEOUT_S):
                status = await post(rule.url, body, headers)
        except trio.TooSlowError:
            outcome = f"no answer within {POST_TIMEOUT_S:g}s"
            continue
        except (OSError, trio.BrokenResourceError, ssl.SSLError, ValueError) as e:
            outcome = f"failed: {e}"
            continue
        if 200 <= status < 300:
            return "sent"
        outcome = f"HTTP {status}"
        if 400 <= status < 500 and status not in (408, 429):
            break  # the receiver refuses this request: sending it again will not help
    return f"{outcome} after {attempt + 1} attempt{'s' if attempt else ''}"


def _header_value(value: str) -> str:
    # A reason can quote a tenant's words: no CR/LF into our request head, latin-1 only.
    return " ".join(value.split()).encode("latin-1", "replace").decode("latin-1")


async def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """One HTTP/1.1 POST, Connection: close; returns the status code. Small on purpose: a
    webhook needs nothing more, and it keeps the alert path free of another dependency."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, port)
    try:
        if parts.scheme == "https":
            stream = trio.SSLStream(stream, ssl.create_default_context(), server_hostname=parts.hostname)
        host = parts.netloc.rpartition("@")[2]
        head = [
            f"POST {target} HTTP/1.1",
            f"Host: {host}",
            f"User-Agent: slum/{__version__}",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        head += [f"{k}: {_header_value(v)}" for k, v in headers.items()]
        await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        received = b""
        while b"\r\n" not in received and len(received) < 8192:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            received += chunk
        line = received.split(b"\r\n", 1)[0].split()
        if len(line) < 2 or not line[0].startswith(b"HTTP/") or not line[1].isdigit():
            raise ValueError(f"not an HTTP response from {host}")
        return int(line[1])
    finally:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(1):
                await stream.aclose()


__all__ = ["ALERT_EVENTS", "Alert", "AlertStatistics", "Alerts", "deliver", "post", "render"]
