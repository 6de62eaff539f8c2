"""How the CLI prints: tables, durations, sizes, and log lines that cannot drive the terminal."""

from __future__ import annotations

import pytest

from slum.cli.output import duration, escape_controls, log_line, size, table


def test_a_table_pads_columns_and_shows_none_as_a_dash() -> None:
    text = table(["ID", "PORT", "REASON"], [("web:a", 30001, None), ("web:long-name", None, "ok")])
    assert text.splitlines() == [
        "ID             PORT   REASON",
        "web:a          30001  -",
        "web:long-name  -      ok",
    ]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "-"),
        (0, "-"),
        (59.9, "59s"),
        (60, "1m00s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (86399, "23h59m"),
        (86400 * 3 + 3600 * 5, "3d05h"),
    ],
)
def test_durations(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown


@pytest.mark.parametrize(
    ("n", "shown"),
    [
        (None, "-"),
        (0, "0B"),
        (1023, "1023B"),
        (1024, "1.0KiB"),
        (5 * 2**20, "5.0MiB"),
        (3 * 2**40, "3072.0GiB"),
    ],
)
def test_sizes(n: int | None, shown: str) -> None:
    assert size(n) == shown


def test_control_characters_are_shown_not_obeyed() -> None:
    hostile = "ok\x1b]0;owned\x07\rerased\x08\x9b2J\tkept"
    assert escape_controls(hostile) == "ok\\x1b]0;owned\\x07\\x0derased\\x08\\x9b2J\tkept"
    entry = {
        "timestamp": "2026-01-01T00:00:00Z",
        "instance_id": None,
        "level": "warn",
        "message": "\x1b[2Jgone",
    }
    assert log_line(entry, escape=True) == "2026-01-01T00:00:00Z slum warn  \\x1b[2Jgone"
    assert log_line(entry) == "2026-01-01T00:00:00Z slum warn  \x1b[2Jgone"
