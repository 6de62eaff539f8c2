"""What the edge counts for operators and tests, and its log of upstream faults: one line per
fault naming the instance, rate limited so that a hostile app cannot flood slum's own log."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

log = logging.getLogger("slum.edge")

LOG_EVERY_S = 10.0  # per target: at most one line in this time, then a count of the rest
LOG_BURST = 30  # all targets together: at most this many lines per LOG_EVERY_S


@dataclass(frozen=True)
class EdgeStatistics:
    connections: int
    max_connections: int
    accepted: int
    client_errors: int  # requests refused as malformed or over a limit (4xx/5xx of the edge)
    timeouts: int  # connections ended by header, keep-alive or body timeouts
    upstream_errors: Mapping[str, int] = field(default_factory=dict)  # per target label
    pooled: int = 0  # idle upstream connections kept for reuse
    draining: bool = False

    @property
    def upstream_errors_total(self) -> int:
        return sum(self.upstream_errors.values())


class Counters:
    __slots__ = (
        "_burst",
        "_last",
        "_suppressed",
        "_window",
        "accepted",
        "client_errors",
        "timeouts",
        "upstream",
    )

    def __init__(self) -> None:
        self.accepted = 0
        self.client_errors = 0
        self.timeouts = 0
        self.upstream: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._window = 0.0
        self._burst = 0

    def upstream_fault(self, label: str, what: str) -> None:
        """Count a failed upstream exchange of `label`, and say so in the log unless that
        target (or all together) has already said enough lately."""
        self.upstream[label] = self.upstream.get(label, 0) + 1
        now = time.monotonic()
        if now - self._window > LOG_EVERY_S:
            self._window, self._burst = now, 0
        if now - self._last.get(label, -LOG_EVERY_S) < LOG_EVERY_S or self._burst >= LOG_BURST:
            self._suppressed[label] = self._suppressed.get(label, 0) + 1
            return
        self._last[label] = now
        self._burst += 1
        more = self._suppressed.pop(label, 0)
        if len(self._last) > 10000:
            self._last.clear()
        log.warning(
            "%s: %s%s", label, _printable(what), f" ({more} more since the last line)" if more else ""
        )

    def snapshot(self, connections: int, max_connections: int, pooled: int, draining: bool) -> EdgeStatistics:
        return EdgeStatistics(
            connections,
            max_connections,
            self.accepted,
            self.client_errors,
            self.timeouts,
            MappingProxyType(dict(self.upstream)),
            pooled,
            draining,
        )


def _printable(text: str) -> str:
    # The message may quote what the upstream sent: keep one line, no control characters.
    return "".join(c if c.isprintable() else "?" for c in text)[:300]
