"""Instance states, in supervisord's words. Depends on nothing.

    stopped --start--> starting --ready--> healthy <--check ok-- degraded
       ^                  |                   |  check failed        |  3 failed checks
       |             exit / startup           v                      v
       |              timeout             degraded ------------> unhealthy --restart--> stopping
       |                  v
       +---- stopping <-- (stop)          backoff --delay--> starting
    sleeping <-- stopping <-- (idle)      backoff --too many restarts--> failed
    sleeping --request--> starting
See specs/process-lifecycle.md for every transition and why.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    STOPPED = "stopped"
    # Stopped because it was idle, not by an operator: the next request wakes it.
    SLEEPING = "sleeping"
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
# No process, none wanted: asleep (idle) or stopped (operator, exit).
RESTING = frozenset({State.STOPPED, State.SLEEPING})

TRANSITIONS: dict[State, frozenset[State]] = {
    State.STOPPED: frozenset({State.STARTING, State.FAILED}),
    # SLEEPING -> STARTING (a request), -> STOPPED (an operator's stop: no longer just idle)
    State.SLEEPING: frozenset({State.STARTING, State.FAILED, State.STOPPED}),
    # STARTING -> HEALTHY (ready), -> BACKOFF (exit or startup timeout), -> STOPPING (stop asked)
    State.STARTING: frozenset({State.HEALTHY, State.BACKOFF, State.STOPPING, State.STOPPED, State.FAILED}),
    State.HEALTHY: frozenset({State.DEGRADED, State.BACKOFF, State.STOPPING, State.STOPPED, State.FAILED}),
    State.DEGRADED: frozenset(
        {State.HEALTHY, State.UNHEALTHY, State.BACKOFF, State.STOPPING, State.STOPPED, State.FAILED}
    ),
    State.UNHEALTHY: frozenset(
        {State.HEALTHY, State.DEGRADED, State.BACKOFF, State.STOPPING, State.STOPPED, State.FAILED}
    ),
    # BACKOFF -> STARTING (delay over), -> FAILED (too many restarts), -> STOPPED (stop asked)
    State.BACKOFF: frozenset({State.STARTING, State.FAILED, State.STOPPED}),
    # STOPPING -> STARTING: a restart asked by an operator
    State.STOPPING: frozenset({State.STOPPED, State.STARTING, State.BACKOFF, State.FAILED}),
    # FAILED -> STARTING only when an operator asks (spawn/restart)
    State.FAILED: frozenset({State.STARTING, State.STOPPED}),
}


# Wherever a running instance may stop, it may fall asleep instead (an idle stop).
for _old, _new in list(TRANSITIONS.items()):
    if State.STOPPED in _new and _old not in (State.SLEEPING, State.FAILED, State.BACKOFF):
        TRANSITIONS[_old] = _new | {State.SLEEPING}


def can_move(old: State, new: State) -> bool:
    return old == new or new in TRANSITIONS[old]
