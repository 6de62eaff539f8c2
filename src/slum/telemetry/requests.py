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
from typing import Any

BUCKET_RATIO = 1.02
LOWEST_MS = 0.01
BUCKETS = int(math.log(600_000 / LOWEST_MS) / math.log(BUCKET_RATIO)) + 2
_LOG_RATIO = math.log(BUCKET_RATIO)
RING_SECONDS = 3600
MAX_ROUTES_PER_TARGET = 64
_ID_SEGMENT = re.compile(
    r"^(\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,}|"
    r"[A-Za-z0-9_-]{24,})$",
    re.IGNORECASE,
)


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
        self.add(index, value_ms)

    def add(self, index: int, value_ms: float) -> None:
        """observe() with the bucket index already known (one log() for several histograms)."""
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
        return {
            "count": self.count,
            "sum": round(self.sum, 3),
            "mean": round(self.sum / self.count, 3) if self.count else 0.0,
            "p50": round(self.quantile(0.5), 3),
            "p95": round(self.quantile(0.95), 3),
            "p99": round(self.quantile(0.99), 3),
            "max": round(self.max, 3),
        }

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


class Series:
    """One target's traffic: per-second rings for the last hour, and latency histograms of this
    minute and the last (the per-route histograms keep the totals since start). The current
    second is counted in plain integers and moved into the rings when the next second begins
    (or a reader asks): one ring write per second, not per request."""

    __slots__ = (
        "cur_errors",
        "cur_requests",
        "errors",
        "last_minute",
        "minute",
        "minute_start",
        "requests",
        "second",
    )

    def __init__(self) -> None:
        self.requests = Ring()
        self.errors = Ring()
        self.minute = Histogram()
        self.last_minute = Histogram()
        self.minute_start = 0
        self.second = 0
        self.cur_requests = 0
        self.cur_errors = 0

    def roll(self, now: int) -> None:
        if self.cur_requests:
            self.requests.add(self.second, self.cur_requests)
            if self.cur_errors:
                self.errors.add(self.second, self.cur_errors)
            self.cur_requests = self.cur_errors = 0
        self.second = now
        minute = now - now % 60
        if minute != self.minute_start:
            if minute - self.minute_start == 60:
                self.last_minute, self.minute = self.minute, Histogram()
            else:  # a quiet minute in between: the previous minute saw nothing
                self.last_minute, self.minute = Histogram(), Histogram()
            self.minute_start = minute


class _Slot:
    __slots__ = ("hist", "series")

    def __init__(self, hist: Histogram, series: Series) -> None:
        self.hist = hist
        self.series = series


_log = math.log
_now = time.time
_INV_LOWEST = 1 / LOWEST_MS
_INV_LOG_RATIO = 1 / _LOG_RATIO
MAX_CACHED_KEYS = 20_000
PENDING = 256  # requests queued before they are applied; readers apply what is queued first


class RequestMetrics:
    """Per target (instance id, or 'slum' for the API) and per (target, method, class, route).

    record() runs for every request on the edge, in the middle of its work: it only queues the
    request (one tuple), and the queue is applied in batches of PENDING requests, or whenever a
    reader asks. Applied one at a time between the edge's own steps, the same bookkeeping cost
    the edge three times what it costs in a tight loop (bench/metrics.py, specs/performance.md).
    Applying: one dict lookup finds the request's slot (by the raw key, cached), the bucket index
    is computed once for the two histograms it feeds, and per-second counts are integer adds."""

    def __init__(self) -> None:
        self.enabled = True
        self._series: dict[str, Series] = {}
        self._by_label: dict[tuple[str, str, str, str], _Slot] = {}
        self._slots: dict[tuple[str, bytes, int, bytes], _Slot] = {}
        self._routes: dict[str, set[str]] = {}
        self._pending: list[tuple[str, bytes, int, float, bytes, int]] = []

    @property
    def series(self) -> dict[str, Series]:
        self.drain()
        return self._series

    def record(self, target: str, method: bytes, status: int, seconds: float, path: bytes = b"/") -> None:
        if self.enabled:
            pending = self._pending
            pending.append((target, method, status, seconds, path, int(_now())))
            if len(pending) >= PENDING:
                self.drain()

    def drain(self) -> None:
        """Apply the queued requests (each to the second it ended in)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        slots = self._slots
        for target, method, status, seconds, path, now in pending:
            key = (target, method, status // 100, path)
            slot = slots.get(key)
            if slot is None:
                slot = self._slot(key)
            ms = seconds * 1000.0
            if ms > LOWEST_MS:
                index = int(_log(ms * _INV_LOWEST) * _INV_LOG_RATIO) + 1
                if index >= BUCKETS:
                    index = BUCKETS - 1
            else:
                index = 0
            # Histogram.add, inlined twice: a method call is a good part of this loop's cost.
            hist = slot.hist
            hist.counts[index] += 1
            hist.count += 1
            hist.sum += ms
            if ms > hist.max:
                hist.max = ms
            series = slot.series
            if now != series.second:
                series.roll(now)
            series.cur_requests += 1
            if status >= 500:
                series.cur_errors += 1
            hist = series.minute
            hist.counts[index] += 1
            hist.count += 1
            hist.sum += ms
            if ms > hist.max:
                hist.max = ms

    def _slot(self, key: tuple[str, bytes, int, bytes]) -> _Slot:
        target, method, status_class, path = key
        route = normalize_route(path)
        known = self._routes.setdefault(target, set())
        if route not in known:
            if len(known) >= MAX_ROUTES_PER_TARGET:
                route = "/other"
            known.add(route)
        label = (target, method.decode("latin-1"), f"{status_class}xx", route)
        slot = self._by_label.get(label)
        if slot is None:
            series = self._series.get(target)
            if series is None:
                series = self._series[target] = Series()
            slot = self._by_label[label] = _Slot(Histogram(), series)
        if len(self._slots) < MAX_CACHED_KEYS:
            self._slots[key] = slot
        return slot

    def settle(self) -> None:
        """Apply what is queued and move the counts of past seconds into the rings (readers
        call this first)."""
        self.drain()
        now = int(_now())
        for series in self._series.values():
            if series.second != now:
                series.roll(now)

    @property
    def totals(self) -> dict[tuple[str, str, str, str], int]:
        self.drain()
        return {label: slot.hist.count for label, slot in self._by_label.items()}

    @property
    def histograms(self) -> dict[tuple[str, str, str, str], Histogram]:
        self.drain()
        return {label: slot.hist for label, slot in self._by_label.items()}

    def rate(self, target: str, window_s: int = 10) -> float:
        series = self.series.get(target)
        if series is None:
            return 0.0
        self.settle()
        now = int(_now())
        values = series.requests.series(window_s, now - 1, fill=0.0)
        return sum(v or 0.0 for v in values) / window_s

    def recent(self, target: str) -> Histogram:
        """The latency histogram of the current and the previous minute."""
        series = self.series.get(target)
        out = Histogram()
        if series is not None:
            self.settle()
            out.merge(series.last_minute)
            out.merge(series.minute)
        return out

    def snapshot(self) -> list[dict[str, Any]]:
        self.drain()
        now_ms = int(_now() * 1000)
        out: list[dict[str, Any]] = []
        for (target, method, status, route), slot in self._by_label.items():
            labels = {"target": target, "method": method, "status": status, "route": route}
            out.append(
                {
                    "name": "http_requests_total",
                    "value": slot.hist.count,
                    "labels": labels,
                    "timestamp": now_ms,
                }
            )
            out.append(
                {
                    "name": "http_request_duration_ms",
                    "value": None,
                    "labels": labels,
                    "timestamp": now_ms,
                    **slot.hist.summary(),
                }
            )
        return out
