"""Is a request's X-Slum-Router value the token of a router we trust?

Checking a token runs argon2 (tens of milliseconds and 64 MiB each), so a header any client can
forge must not reach it per request: a verified value is trusted for a few seconds, a value that
failed is refused from memory for a while, a peer that keeps failing is refused without a check,
and at most one check runs at a time, so forged values cost one argon2 run at a time, never
unbounded memory, and the real router (its value cached) is not slowed down by them."""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from slum.errors import SlumError

log = logging.getLogger("slum.edge")

TRUST_S = 5.0  # a revoked router token stops working within this
REFUSE_S = 60.0  # a failed value is refused without a check for this long
PEER_FAILURES = 5  # failures a peer may have within PEER_WINDOW_S before it is refused outright
PEER_WINDOW_S = 60.0
MAX_REMEMBERED = 4096

# verify(token, peer): returns when the token is good, raises when it is not.
Verify = Callable[[str, str], Awaitable[object]]


@dataclass(frozen=True)
class TrustStatistics:
    checks: int  # verifications actually run
    trusted: int  # values trusted right now
    refused_cached: int  # refusals answered from memory (value or peer)


class RouterTrust:
    def __init__(self, verify: Verify) -> None:
        self._verify = verify
        self._good: dict[bytes, float] = {}
        self._bad: OrderedDict[bytes, float] = OrderedDict()
        self._peers: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._one_at_a_time = trio.Lock()
        self._checks = 0
        self._refused_cached = 0

    @classmethod
    def of_tokens(cls, verify_token: Callable[[str, str], Awaitable[object]]) -> RouterTrust:
        """Trust checked against slum's API tokens. A forged X-Slum-Router must never cost argon2
        per request (this cache and its limits), and its failures count against the peer that
        sent them ("router:PEER"), never a bucket the real router shares."""
        return cls(lambda token, peer: verify_token(token, f"router:{peer}"))

    def statistics(self) -> TrustStatistics:
        return TrustStatistics(self._checks, len(self._good), self._refused_cached)

    async def check(self, token: str, peer: str = "") -> bool:
        key = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = trio.current_time()
        if self._good.get(key, 0.0) > now:
            return True
        if self._refused(key, peer, now):
            return False
        async with self._one_at_a_time:
            now = trio.current_time()
            if self._good.get(key, 0.0) > now:  # checked while we waited
                return True
            if self._refused(key, peer, now):
                return False
            self._checks += 1
            try:
                await self._verify(token, peer)
            except Exception as e:  # a refusal, or the check itself failed: not trusted
                if not isinstance(e, SlumError):
                    log.debug("router token check failed: %s", e)
                self._failed(key, peer, trio.current_time())
                return False
        if len(self._good) >= MAX_REMEMBERED:
            self._good = {k: t for k, t in self._good.items() if t > now}
            if len(self._good) >= MAX_REMEMBERED:
                self._good.clear()
        self._good[key] = trio.current_time() + TRUST_S
        return True

    def _refused(self, key: bytes, peer: str, now: float) -> bool:
        until = self._bad.get(key)
        if until is not None:
            if until > now:
                self._refused_cached += 1
                return True
            del self._bad[key]
        count, since = self._peers.get(peer, (0, now))
        if count >= PEER_FAILURES and now - since < PEER_WINDOW_S:
            self._refused_cached += 1
            return True
        return False

    def _failed(self, key: bytes, peer: str, now: float) -> None:
        self._bad[key] = now + REFUSE_S
        self._bad.move_to_end(key)
        while len(self._bad) > MAX_REMEMBERED:
            self._bad.popitem(last=False)
        count, since = self._peers.get(peer, (0, now))
        if now - since >= PEER_WINDOW_S:
            count, since = 0, now
        self._peers[peer] = (count + 1, since)
        self._peers.move_to_end(peer)
        while len(self._peers) > MAX_REMEMBERED:
            self._peers.popitem(last=False)
