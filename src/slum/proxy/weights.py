"""`{service}.{domain}`: which of a service's instances takes a request. No I/O.

As tenement's select_weighted: a random choice among the healthy instances, each as likely as its
weight; weight 0 takes nothing. When none serves, a sleeping one with weight is woken rather
than refusing the request (the same promise `{id}.{service}` makes)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, TypeVar

from slum.errors import NotFound, Unavailable
from slum.supervisor import Instance, State, Supervisor


class Weighted(Protocol):
    @property
    def weight(self) -> int: ...

    @property
    def serving(self) -> bool: ...

    @property
    def health(self) -> str: ...


T = TypeVar("T", bound=Weighted)


def select_weighted(candidates: Sequence[T], rand: random.Random | None = None) -> T | None:
    """A candidate chosen in proportion to its weight among those whose last health check
    passed; if none passed, among all that serve (a degraded app beats a 503). None when no
    serving candidate has weight."""
    for healthy_only in (True, False):
        total = 0
        for c in candidates:
            if c.serving and c.weight > 0 and (c.health == "healthy" or not healthy_only):
                total += c.weight
        if total == 0:
            continue
        point = (rand or random).random() * total
        for c in candidates:
            if c.serving and c.weight > 0 and (c.health == "healthy" or not healthy_only):
                point -= c.weight
                if point < 0:
                    return c
    return None


def select_to_wake(candidates: Sequence[T], usable: Sequence[bool]) -> T | None:
    """Nothing serves: the heaviest usable (not failed) candidate with weight, to be woken."""
    best: T | None = None
    for c, ok in zip(candidates, usable, strict=True):
        if ok and c.weight > 0 and (best is None or c.weight > best.weight):
            best = c
    return best


async def instance_for(supervisor: Supervisor | None, kind: str, value: str) -> Instance:
    """The instance a request goes to when the host does not name a known one: by weight for
    `{service}.{domain}`, or a new id of an auto_spawn service for `{id}.{service}.{domain}`."""
    if supervisor is None:
        raise NotFound(f"no instance {value}")
    if kind == "instance":
        service, _, name = value.partition(":")
        return await supervisor.for_request(service, name)
    candidates = supervisor.by_service.get(value, ())
    if not candidates:
        raise NotFound(f"service {value} has no instances (start one: `slum deploy {value} --version v1`)")
    chosen = select_weighted(candidates) or select_to_wake(
        candidates, [c.state is not State.FAILED for c in candidates]
    )
    if chosen is None:
        raise Unavailable(
            f"no instance of {value} takes traffic (weights are 0 or they "
            "failed): `slum weight` or `slum route` one"
        )
    return chosen
