"""Weighted choice over a service's instances, and `{service}.{domain}` in the route table."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from slum.proxy.routing import RouteTable, TenantRoute
from slum.proxy.weights import select_to_wake, select_weighted


@dataclass
class Fake:
    """Stands in for an Instance: only the two attributes the choice reads."""

    name: str
    weight: int = 100
    serving: bool = True
    health: str = "healthy"


def test_choice_follows_the_weights() -> None:
    a, b = Fake("a", 10), Fake("b", 90)
    rand = random.Random(7)
    counts = Counter(select_weighted([a, b], rand).name for _ in range(10_000))  # type: ignore[union-attr]
    assert 800 <= counts["a"] <= 1200 and counts["a"] + counts["b"] == 10_000


def test_weight_zero_and_not_serving_take_nothing() -> None:
    rand = random.Random(1)
    picks = {
        select_weighted([Fake("zero", 0), Fake("down", 100, serving=False), Fake("up", 1)], rand).name
        for _ in range(500)
    }  # type: ignore[union-attr]
    assert picks == {"up"}
    assert select_weighted([Fake("zero", 0), Fake("down", serving=False)]) is None
    assert select_weighted([]) is None


def test_healthy_ones_first_then_any_that_serves() -> None:
    rand = random.Random(3)
    failing, ok = Fake("failing", 100, health="unhealthy"), Fake("ok", 1)
    assert {select_weighted([failing, ok], rand).name for _ in range(200)} == {"ok"}  # type: ignore[union-attr]
    assert select_weighted([failing, Fake("zero", 0)], rand) is failing


def test_to_wake_is_the_heaviest_usable() -> None:
    asleep = [Fake("a", 10, False), Fake("b", 60, False), Fake("c", 90, False), Fake("d", 0, False)]
    assert select_to_wake(asleep, [True, True, False, True]) is asleep[1]
    assert select_to_wake(asleep, [False, False, False, True]) is None


def test_service_names_route_before_tenants() -> None:
    table = RouteTable("example.com", frozenset({"api"}))
    table.replace({"alice": TenantRoute("alice", "api", "local", None, "active")}, {})
    assert (table.resolve("api.example.com").kind, table.resolve("api.example.com").value) == (
        "service",
        "api",
    )
    assert table.resolve("alice.example.com").kind == "tenant"
    assert table.resolve("v1.api.example.com").value == "api:v1"
    assert table.resolve("nobody.example.com").kind == "unknown"
