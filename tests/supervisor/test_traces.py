"""A stack trace arriving as consecutive lines is one log entry, its level from its last line
(or, when that names none, an error: a trace is an error report)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.supervisor.harness import child, service, supervised


@pytest.mark.parametrize(
    ("trace", "first", "last", "lines", "level"),
    [
        ("python", "Traceback (most recent call last):", "IndexError: list index out of range", 4, "error"),
        ("logging", "ERROR:root:order failed", "IndexError: list index out of range", 5, "error"),
        (
            "java",
            'Exception in thread "main" java.lang.IllegalStateException: boom',
            "\t... 2 more",
            6,
            "error",
        ),
        ("go", "panic: runtime error: index out of range [3] with length 3", "exit status 2", 8, "error"),
    ],
)
async def test_a_stack_trace_is_one_entry(
    tmp_path: Path, trace: str, first: str, last: str, lines: int, level: str
) -> None:
    svc = service("t", child("traces.py"), env={"TRACE": trace}, restart="never")
    async with supervised(tmp_path, svc) as h:
        await h.sup.spawn("t", "a")
        await h.logs.wait_for(lambda: h.logs.count("t:a", "after the trace", "stderr") == 1)
        entries = [e.message for e in h.logs.of("t:a", "stderr")]
        assert entries[0] == "before the trace" and entries[-1] == "after the trace"
        assert len(entries) == 3, entries
        trace_entry = h.logs.of("t:a", "stderr")[1]
        got = trace_entry.message.split("\n")
        assert got[0] == first and got[-1] == last and len(got) >= lines, got
        assert trace_entry.level == level
        # The lines around it keep their own entries and levels.
        assert h.logs.of("t:a", "stderr")[0].level == "warn"
