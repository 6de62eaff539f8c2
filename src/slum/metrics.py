"""Request metrics and time series, in memory: cheap to record, bounded in size.

Recording a request is a few dict and list operations (no lock, no await): trio runs one task at
a time, so there is nothing to lock. Histograms have fixed log-spaced buckets (2% apart), so a
percentile is within 1% of the true value and never needs a sort; ring buffers hold one hour at
one-second resolution and overwrite in place (no shifting).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

BUCKET_RATIO = 1.02
LOWEST_MS = 0.01
BUCKETS = int(math.log(600_000 / LOWEST_MS) / math.log(BUCKET_RATIO)) + 2
_LOG_RATIO = math.log(BUCKET_RATIO)
RING_SECONDS = 3600
MAX_ROUTES_PER_TARGET = 64
_ID_SEGMENT = re.compile(
    r"^(\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,}|"
    r"[A-Za-z0-9_-]{24,})$", re.IGNORECASE)


class Histogram:
    __slots__ = ("count", "counts", "max", "sum")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def observe(self, value_ms: float) -> None:
        if value_ms <= LOWEST_MS:
            index = 0
        else:
            index = min(int(math.log(value_ms / LOWEST_MS) / _LOG_RATIO) + 1, BUCKETS - 1)
        self.counts[index] += 1
        self.count += 1
        self.sum += value_ms
        if value_ms > self.max:
            self.max = value_ms

    def quantile(self, q: float) -> float:
        """The q-quantile, as the geometric middle of its bucket (within 1% of the true value)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank and n:
                if index == 0:
                    return LOWEST_MS
                low = LOWEST_MS * BUCKET_RATIO ** (index - 1)
                return min(low * math.sqrt(BUCKET_RATIO), self.max)
        return self.max

    def merge(self, other: Histogram) -> None:
        for i, n in enumerate(other.counts):
            if n:
                self.counts[i] += n
        self.count += other.count
        self.sum += other.sum
        self.max = max(self.max, other.max)

    def summary(self) -> dict[str, float]:
        return {"count": self.count, "sum": round(self.sum, 3),
                "mean": round(self.sum / self.count, 3) if self.count else 0.0,
                "p50": round(self.quantile(0.5), 3), "p95": round(self.quantile(0.95), 3),
                "p99": round(self.quantile(0.99), 3), "max": round(self.max, 3)}

    def cumulative(self, bounds: list[float]) -> list[int]:
        """Counts at or below each bound, for the Prometheus exposition."""
        out = []
        seen = 0
        index = 0
        for bound in bounds:
            limit = 0 if bound <= LOWEST_MS else int(math.log(bound / LOWEST_MS) / _LOG_RATIO) + 1
            while index <= min(limit, BUCKETS - 1):
                seen += self.counts[index]
                index += 1
            out.append(seen)
        return out


class Ring:
    """One value per second for the last hour; missing seconds read as 0 (or None for gauges)."""

    __slots__ = ("_last", "values")

    def __init__(self) -> None:
        self.values: list[float | None] = [None] * RING_SECONDS
        self._last = 0

    def _advance(self, second: int) -> int:
        if second > self._last:
            gap = min(second - self._last, RING_SECONDS)
            for s in range(second - gap + 1, second + 1):
                self.values[s % RING_SECONDS] = None
            self._last = second
        return second % RING_SECONDS

    def add(self, second: int, amount: float) -> None:
        i = self._advance(second)
        self.values[i] = (self.values[i] or 0.0) + amount

    def set(self, second: int, value: float) -> None:
        self.values[self._advance(second)] = value

    def series(self, seconds: int, now: int, *, fill: float | None = None) -> list[float | None]:
        """The last `seconds` values, oldest first, ending at `now`."""
        self._advance(now)
        newest = self._last
        out = []
        for s in range(now - seconds + 1, now + 1):
            # A slot holds second s only if s is within the hour before the newest write.
            v = self.values[s % RING_SECONDS] if newest - RING_SECONDS < s <= newest else None
            out.append(fill if v is None else v)
        return out


def normalize_route(path: bytes | str) -> str:
    """'/users/123/orders/9f2c...' -> '/users/:id/orders/:id', at most three segments."""
    text = path.decode("latin-1") if isinstance(path, bytes) else path
    text = text.split("?", 1)[0]
    parts = [p for p in text.split("/") if p][:3]
    return "/" + "/".join(":id" if _ID_SEGMENT.match(p) else p[:40] for p in parts)


@dataclass
class Series:
    requests: Ring = field(default_factory=Ring)
    errors: Ring = field(default_factory=Ring)
    latency_sum: Ring = field(default_factory=Ring)
    histogram: Histogram = field(default_factory=Histogram)
    minute: Histogram = field(default_factory=Histogram)
    minute_start: int = 0
    last_minute: Histogram = field(default_factory=Histogram)


class RequestMetrics:
    """Per target (instance id, or 'slum' for the API) and per (target, method, class, route)."""

    def __init__(self) -> None:
        self.enabled = True
        self.totals: dict[tuple[str, str, str, str], int] = {}
        self.histograms: dict[tuple[str, str, str, str], Histogram] = {}
        self.series: dict[str, Series] = {}
        self._routes: dict[str, set[str]] = {}
        self._normalized: dict[bytes, str] = {}

    def record(self, target: str, method: bytes, status: int, seconds: float,
               path: bytes = b"/") -> None:
        if not self.enabled:
            return
        route = self._normalized.get(path)
        if route is None:
            route = normalize_route(path)
            if len(self._normalized) < 4096:
                self._normalized[path] = route
        known = self._routes.setdefault(target, set())
        if route not in known:
            if len(known) >= MAX_ROUTES_PER_TARGET:
                route = "/other"
            known.add(route)
        key = (target, method.decode("latin-1"), f"{status // 100}xx", route)
        self.totals[key] = self.totals.get(key, 0) + 1
        ms = seconds * 1000
        hist = self.histograms.get(key)
        if hist is None:
            hist = self.histograms[key] = Histogram()
        hist.observe(ms)
        series = self.series.get(target)
        if series is None:
            series = self.series[target] = Series()
        now = int(time.time())
        series.requests.add(now, 1)
        if status >= 500:
            series.errors.add(now, 1)
        series.latency_sum.add(now, ms)
        series.histogram.observe(ms)
        minute = now - now % 60
        if minute != series.minute_start:
            series.last_minute, series.minute = series.minute, Histogram()
            series.minute_start = minute
        series.minute.observe(ms)

    def rate(self, target: str, window_s: int = 10) -> float:
        series = self.series.get(target)
        if series is None:
            return 0.0
        now = int(time.time())
        values = series.requests.series(window_s, now - 1, fill=0.0)
        return sum(v or 0.0 for v in values) / window_s

    def recent(self, target: str) -> Histogram:
        """The latency histogram of the current and the previous minute."""
        series = self.series.get(target)
        out = Histogram()
        if series is not None:
            out.merge(series.last_minute)
            out.merge(series.minute)
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        now_ms = int(time.time() * 1000)
        out: list[dict[str, Any]] = []
        for (target, method, status, route), n in self.totals.items():
            labels = {"target": target, "method": method, "status": status, "route": route}
            out.append({"name": "http_requests_total", "value": n, "labels": labels,
                        "timestamp": now_ms})
            out.append({"name": "http_request_duration_ms", "value": None, "labels": labels,
                        "timestamp": now_ms, **self.histograms[(target, method, status, route)]
                        .summary()})
        return out
