"""One parser for the log filters of the JSON endpoint and the live stream."""

from __future__ import annotations

import pytest

from slum.errors import BadRequest
from slum.store.logs import MAX_TIME, LogQuery, parse_since


@pytest.mark.parametrize("args", [{"level": "warn+"}, {"level": "warn "}, {"min_level": "warn"}])
def test_warn_and_above_three_ways(args: dict[str, str]) -> None:
    q = LogQuery.from_args(args)
    assert (q.level, q.min_level) == (None, "warn")


def test_filters() -> None:
    q = LogQuery.from_args(
        {
            "instance_id": "web:a",
            "search": "boom",
            "since": "100",
            "limit": "5",
            "before_id": "9",
            "level": "error",
        }
    )
    assert (q.instance_id, q.search, q.since, q.limit, q.before_id, q.level) == (
        "web:a",
        "boom",
        100.0,
        5,
        9,
        "error",
    )


@pytest.mark.parametrize(
    "args",
    [
        {"offset": str(10**30)},
        {"before_id": str(2**63)},
        {"after_id": "-1"},
        {"offset": "-1"},
        {"since": "1e20"},
        {"until": "-1e300"},
        {"since": "1e13"},
        {"since": "nan"},
        {"since": "9" * 400 + "d"},
        {"search": '"'},
        {"search": "***"},
        {"level": "loud+"},
        {"limit": "0"},
        {"limit": "x"},
        {"offset": "1" * 5000},
    ],
)
def test_refused(args: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        LogQuery.from_args(args)


def test_parse_since_bounds() -> None:
    assert parse_since("10m", now=1000.0) == 400.0
    assert parse_since(str(MAX_TIME)) == MAX_TIME
    with pytest.raises(BadRequest):
        parse_since(str(MAX_TIME * 10))
