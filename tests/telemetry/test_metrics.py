from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from slum.errors import BadRequest
from slum.store import connect
from slum.telemetry.history import query_history, write_history
from slum.telemetry.requests import Histogram, RequestMetrics, Ring, normalize_route


@pytest.mark.parametrize("dist", ["uniform", "lognormal", "bimodal"])
def test_percentiles_within_one_percent(dist: str) -> None:
    rng = random.Random(7)
    if dist == "uniform":
        values = [rng.uniform(1, 500) for _ in range(100_000)]
    elif dist == "lognormal":
        values = [rng.lognormvariate(1.5, 1.2) for _ in range(100_000)]
    else:
        values = [rng.gauss(5, 0.5) if rng.random() < 0.9 else rng.gauss(900, 50) for _ in range(100_000)]
    h = Histogram()
    for v in values:
        h.observe(max(v, 0.02))
    values.sort()
    for q in (0.5, 0.95, 0.99):
        exact = values[int(q * len(values)) - 1]
        assert abs(h.quantile(q) - exact) / exact < 0.01, (q, h.quantile(q), exact)
    assert h.count == len(values)


def test_prometheus_buckets_are_cumulative() -> None:
    h = Histogram()
    for v in (0.5, 3, 3, 40, 2000):
        h.observe(v)
    assert h.cumulative([1, 5, 50, 1000, 5000]) == [1, 3, 4, 4, 5]


def test_no_label_explosion_from_user_paths() -> None:
    m = RequestMetrics()
    for i in range(10_000):
        m.record("notes:a", b"GET", 200, 0.001, f"/page-{i}/x".encode())
        m.record("notes:a", b"GET", 200, 0.001, f"/users/{i}".encode())
    routes = {key[3] for key in m.totals}
    assert len(routes) <= 65 and "/users/:id" in routes and "/other" in routes
    assert sum(m.totals.values()) == 20_000


def test_normalize_route() -> None:
    assert normalize_route(b"/users/123/orders/9f2c0e4a-1b2c-4d4e-8f60-718293a4b5c6") == "/users/:id/orders"
    assert normalize_route("/api/items/42?x=1") == "/api/items/:id"
    assert normalize_route(b"/") == "/"


def test_ring_keeps_an_hour_and_forgets_gaps() -> None:
    r = Ring()
    r.add(1000, 1)
    r.add(1000, 2)
    r.add(1003, 5)
    assert r.series(5, 1003, fill=0.0) == [0.0, 3.0, 0.0, 0.0, 5.0]
    r.add(1003 + 3600, 7)  # an hour later: the old values are gone, not shifted
    assert r.series(4, 1003 + 3600, fill=0.0) == [0.0, 0.0, 0.0, 7.0]


def test_request_counters_and_rate() -> None:
    m = RequestMetrics()
    for _ in range(30):
        m.record("web:a", b"GET", 200, 0.002, b"/")
    m.record("web:a", b"GET", 502, 0.001, b"/")
    assert m.totals[("web:a", "GET", "2xx", "/")] == 30
    assert m.totals[("web:a", "GET", "5xx", "/")] == 1
    assert m.recent("web:a").count == 31


def test_queued_requests_count_in_the_second_they_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    # record() queues; a reader applies the queue first, each request to its own second, also
    # when the queue was applied seconds later.
    import slum.telemetry.requests as requests

    clock = [1_000_000.2]
    monkeypatch.setattr(requests, "_now", lambda: clock[0])
    m = RequestMetrics()
    for second, n in ((1_000_000, 3), (1_000_001, 5), (1_000_003, 2)):
        clock[0] = second + 0.5
        for _ in range(n):
            m.record("web:a", b"GET", 200, 0.002, b"/")
    clock[0] = 1_000_005.0
    m.settle()
    counts = m.series["web:a"].requests.series(6, 1_000_004, fill=0.0)
    assert counts == [0.0, 3.0, 5.0, 0.0, 2.0, 0.0]
    assert m.recent("web:a").count == 10
    # A full queue is applied as it fills, without a reader.
    for _ in range(requests.PENDING):
        m.record("web:b", b"GET", 200, 0.002, b"/")
    assert not m._pending and m._series["web:b"].cur_requests == requests.PENDING


def test_history_over_a_day(tmp_path: Path) -> None:
    conn = connect(tmp_path / "slum.db")
    start = (int(time.time()) // 3600) * 3600 - 86400  # aligned: buckets hold 5 minutes
    rows = [
        (start + i * 60, "cpu_percent", {"instance": "web:a"}, float(i % 100), 0.0, 100.0)
        for i in range(1440)
    ]
    rows += [(start + i * 60, "cpu_percent", {"instance": "web:b"}, 1.0, 1.0, 1.0) for i in range(1440)]
    with conn:
        write_history(conn, rows)
    day = query_history(conn, "cpu_percent", {"instance": "web:a"}, start, start + 86400)
    assert day["step"] == 300
    points = day["series"][0]["points"]
    assert 288 <= len(points) <= 289
    assert points[0][1] == 2.0 and points[0][2] == 0.0 and points[0][3] == 100.0  # avg of 0..4
    both = query_history(conn, "cpu_percent", None, start, start + 3600, step=60)
    assert len(both["series"]) == 2 and len(both["series"][1]["points"]) == 61
    with pytest.raises(BadRequest):
        query_history(conn, "cpu_percent", None, start, start + 3600, step=10)
    with pytest.raises(BadRequest):
        query_history(conn, "", None, start, start + 10)


def test_ring_does_not_return_a_newer_second_in_the_oldest_slot() -> None:
    r = Ring()
    r.set(10_000, 42.0)  # written "now"
    series = r.series(3600, 9_999)  # read up to the second before
    assert series[0] is None and 42.0 not in series
