"""Instance states, in supervisord's words. Depends on nothing.

    stopped --start--> starting --ready--> healthy <--check ok-- degraded
       ^                  |                   |  check failed        |  3 failed checks
       |             exit / startup           v                      v
       |              timeout             degraded ------------> unhealthy --restart--> stopping
       |                  v
       +---- stopping <-- (stop, idle)    backoff --delay--> starting
                                          backoff --too many restarts--> failed
See specs/process-lifecycle.md for every transition and why.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    FAILED = "failed"


# A process exists and is listening (or about to): requests are forwarded to it.
SERVING = frozenset({State.HEALTHY, State.DEGRADED, State.UNHEALTHY})
# A process exists.
ALIVE = SERVING | {State.STARTING, State.STOPPING}

TRANSITIONS: dict[State, frozenset[State]] = {
    State.STOPPED: frozenset({State.STARTING, State.FAILED}),
    # STARTING -> HEALTHY (ready), -> BACKOFF (exit or startup timeout), -> STOPPING (stop asked)
    State.STARTING: frozenset({State.HEALTHY, State.BACKOFF, State.STOPPING, State.STOPPED,
                               State.FAILED}),
    State.HEALTHY: frozenset({State.DEGRADED, State.BACKOFF, State.STOPPING, State.STOPPED,
                              State.FAILED}),
    State.DEGRADED: frozenset({State.HEALTHY, State.UNHEALTHY, State.BACKOFF, State.STOPPING,
                               State.STOPPED, State.FAILED}),
    State.UNHEALTHY: frozenset({State.HEALTHY, State.DEGRADED, State.BACKOFF, State.STOPPING,
                                State.STOPPED, State.FAILED}),
    # BACKOFF -> STARTING (delay over), -> FAILED (too many restarts), -> STOPPED (stop asked)
    State.BACKOFF: frozenset({State.STARTING, State.FAILED, State.STOPPED}),
    # STOPPING -> STARTING: a restart asked by an operator
    State.STOPPING: frozenset({State.STOPPED, State.STARTING, State.BACKOFF, State.FAILED}),
    # FAILED -> STARTING only when an operator asks (spawn/restart)
    State.FAILED: frozenset({State.STARTING, State.STOPPED}),
}


def can_move(old: State, new: State) -> bool:
    return old == new or new in TRANSITIONS[old]
