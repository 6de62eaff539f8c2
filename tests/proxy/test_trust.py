"""RouterTrust: forged router values must cost at most one check each, and not at all once a
peer keeps failing; the real router's value is checked once per TRUST_S."""

from __future__ import annotations

import trio
import trio.testing

from slum.errors import Unauthorized
from slum.proxy.trust import PEER_FAILURES, REFUSE_S, TRUST_S, RouterTrust

GOOD = "slum_good"


class Verifier:
    """A stand-in for the argon2 check: slow, counted, and never two at a time."""

    def __init__(self) -> None:
        self.calls = 0
        self.running = 0
        self.most_at_once = 0

    async def __call__(self, token: str, peer: str) -> None:
        self.calls += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await trio.sleep(0.05)
        finally:
            self.running -= 1
        if token != GOOD:
            raise Unauthorized("invalid token")


async def test_a_good_value_is_checked_once_per_trust_period(autojump_clock: trio.testing.MockClock) -> None:
    verify = Verifier()
    trust = RouterTrust(verify)
    for _ in range(100):
        assert await trust.check(GOOD, "10.0.0.1")
    assert verify.calls == 1
    await trio.sleep(TRUST_S + 1)
    assert await trust.check(GOOD, "10.0.0.1")
    assert verify.calls == 2


async def test_forged_values_are_refused_from_memory(autojump_clock: trio.testing.MockClock) -> None:
    verify = Verifier()
    trust = RouterTrust(verify)
    for _ in range(10):
        assert not await trust.check("slum_forged", "10.0.0.9")
    assert verify.calls == 1
    await trio.sleep(REFUSE_S + 1)
    assert not await trust.check("slum_forged", "10.0.0.9")
    assert verify.calls == 2


async def test_a_failing_peer_is_refused_without_checks_and_the_router_is_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    verify = Verifier()
    trust = RouterTrust(verify)
    results = []

    async def attacker(i: int) -> None:
        results.append(await trust.check(f"slum_random{i}", "6.6.6.6"))

    async with trio.open_nursery() as nursery:
        for i in range(60):
            nursery.start_soon(attacker, i)
    assert not any(results)
    assert verify.calls == PEER_FAILURES
    assert verify.most_at_once == 1  # argon2's memory is taken once at a time
    assert trust.statistics().refused_cached == 60 - PEER_FAILURES
    # The real router, from its own address, is still trusted.
    assert await trust.check(GOOD, "10.0.0.1")


async def test_a_broken_check_is_a_refusal() -> None:
    async def broken(token: str, peer: str) -> None:
        raise RuntimeError("database is locked")

    assert not await RouterTrust(broken).check(GOOD, "10.0.0.1")
