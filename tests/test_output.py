"""Bytes to log lines: split, truncated, decoded, and given a level."""

from __future__ import annotations

import pytest

from slum.events import Hub, OutputStream
from slum.logtext import (
    GROUP_GAP_S,
    GROUP_MAX_LINES,
    MAX_LINE,
    TRUNCATED,
    LineSplitter,
    Parser,
    decode,
    level_of,
)


def feed_all(chunks: list[bytes], splitter: LineSplitter | None = None) -> list[bytes]:
    splitter = splitter or LineSplitter()
    lines: list[bytes] = []
    for chunk in chunks:
        lines += splitter.feed(chunk)
    return lines + splitter.flush()


def marker(skipped: int) -> bytes:
    return TRUNCATED.format(skipped).encode()


def test_partial_lines_are_joined_across_chunks() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"hel") == []
    assert splitter.feed(b"lo wo") == []
    assert splitter.feed(b"rld\nsecond") == [b"hello world"]
    assert splitter.feed(b" line\nthird\n") == [b"second line", b"third"]
    assert splitter.flush() == []


def test_one_byte_at_a_time() -> None:
    text = b"alpha\nbeta\r\n\ngamma"
    assert feed_all([text[i : i + 1] for i in range(len(text))]) == [b"alpha", b"beta", b"", b"gamma"]


def test_last_line_without_newline_comes_out_on_flush() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"done\nno newline") == [b"done"]
    assert splitter.flush() == [b"no newline"]
    assert splitter.flush() == []


def test_crlf_is_one_line_end() -> None:
    assert feed_all([b"one\r\ntwo\r", b"\nthree\r\n"]) == [b"one", b"two", b"three"]
    # A lone \r inside a line is content, not an end.
    assert feed_all([b"progress 10%\rprogress 20%\n"]) == [b"progress 10%\rprogress 20%"]


def test_a_line_of_exactly_max_with_crlf_is_not_truncated() -> None:
    line = b"x" * MAX_LINE
    assert feed_all([line + b"\r\n", b"next\n"]) == [line, b"next"]
    assert feed_all([line[:100], line[100:] + b"\r", b"\nnext\n"]) == [line, b"next"]


@pytest.mark.parametrize("chunk", [65536, 4096, 1_000_003, 7])
def test_a_1mb_line_is_truncated_and_the_next_line_intact(chunk: int) -> None:
    size = 1024 * 1024
    head = bytes(range(97, 123)) * (size // 26 + 1)
    big = head[:size]
    data = b"before\n" + big + b"\nafter\n" + b"tail"
    chunks = (
        [data[i : i + chunk] for i in range(0, len(data), chunk)]
        if chunk != 7
        else ([data[:7], data[7:MAX_LINE], data[MAX_LINE:]])
    )
    lines = feed_all(chunks)
    assert lines == [b"before", big[:MAX_LINE] + marker(size - MAX_LINE), b"after", b"tail"]


def test_memory_stays_bounded_while_skipping() -> None:
    splitter = LineSplitter(max_line=10)
    for _ in range(100):
        assert splitter.feed(b"y" * 1000) == []
    assert len(splitter._buf) == 0
    assert splitter.feed(b"end\nok\n") == [b"y" * 10 + marker(100_000 + 3 - 10), b"ok"]


def test_a_truncated_line_at_end_of_stream_is_flushed_with_its_marker() -> None:
    splitter = LineSplitter(max_line=4)
    assert splitter.feed(b"abcdefgh") == []
    assert splitter.flush() == [b"abcd" + marker(4)]


def test_invalid_utf8_is_replaced() -> None:
    assert decode(b"caf\xc3\xa9 \xff\xfe ok") == "café \ufffd\ufffd ok"
    assert decode("naïve ☃".encode()) == "naïve ☃"
    # A character cut in half at a chunk boundary is whole again once the line is joined.
    snowman = "☃".encode()
    [line] = feed_all([b"a" + snowman[:1], snowman[1:] + b"b\n"])
    assert decode(line) == "a☃b"


@pytest.mark.parametrize(
    ("line", "level"),
    [
        (b"ERROR something broke", "error"),
        (b"error: lowercase", "error"),
        (b"[WARN] careful", "warn"),
        (b"WARNING: deprecated", "warn"),
        (b"  info starting", "info"),
        (b"DEBUG x=1", "debug"),
        (b"trace deep", "debug"),
        (b"FATAL gone", "error"),
        (b"panic: runtime error", "error"),
        (b"CRITICAL disk", "error"),
        (b"notice this", "info"),
        (b"information is not a level word", "info"),
        (b"an error later in the line", "info"),
        (b'{"level": "error", "msg": "x"}', "error"),
        (b'{"level":"WARNING","msg":"x"}', "warn"),
        (b'{"severity": "debug"}', "debug"),
        (b'{"lvl": "info"}', "info"),
        (b'{"level": "nonsense"}', "info"),
        (b'{"level": 50}', "info"),
        (b"{not json", "info"),
        (b"[1, 2]", "info"),
        (b"", "info"),
    ],
)
def test_level_of_stdout(line: bytes, level: str) -> None:
    assert level_of(line, "stdout") == level


def test_stderr_defaults_to_warn_but_says_its_own_level() -> None:
    assert level_of(b"Traceback (most recent call last):", "stderr") == "warn"
    assert level_of(b"", "stderr") == "warn"
    assert level_of(b"INFO: Uvicorn running", "stderr") == "info"
    assert level_of(b'{"level": "debug"}', "stderr") == "debug"


# --- Parser: entries from pipe reads ------------------------------------------------------
def _source(stream: str = "stderr") -> OutputStream:
    return OutputStream(Hub(), "svc:a", "a", stream)


def test_plain_lines_are_entries_at_once_and_keep_their_levels() -> None:
    src, parser = _source("stdout"), Parser()
    data = b"".join(b"GET /item/%d 200\n" % i for i in range(1000)) + b"ERROR it broke\n"
    got = parser.feed([(src, 100.0, data[:7000]), (src, 100.0, data[7000:])], 100.0)
    assert [e.message for e in got] == [f"GET /item/{i} 200" for i in range(1000)] + ["ERROR it broke"]
    assert {e.level for e in got[:-1]} == {"info"} and got[-1].level == "error"
    assert parser.hold_until() is None  # nothing held back: a plain line cannot grow


def test_a_trace_split_over_reads_is_one_entry_held_until_the_gap() -> None:
    src, parser = _source(), Parser()
    assert parser.feed([(src, 10.0, b"Traceback (most recent call last):\n")], 10.0) == []
    assert parser.hold_until() == pytest.approx(10.0 + GROUP_GAP_S)
    assert parser.feed([(src, 10.01, b'  File "x.py", line 1\n    boom()\n')], 10.01) == []
    got = parser.feed([(src, 10.02, b"ValueError: no\nnext line\n")], 10.02)
    assert [(e.message, e.level) for e in got] == [
        ('Traceback (most recent call last):\n  File "x.py", line 1\n    boom()\nValueError: no', "error"),
        ("next line", "warn"),
    ]  # a plain line: out at once, not held back
    assert parser.hold_until() is None


def test_a_pause_longer_than_the_gap_ends_an_entry() -> None:
    src, parser = _source(), Parser()
    parser.feed([(src, 10.0, b"panic: boom\n")], 10.0)
    got = parser.feed([(src, 10.0 + 2 * GROUP_GAP_S, b"  indented but late\n")], 10.5)
    assert [e.message for e in got] == ["panic: boom", "  indented but late"]


def test_the_last_line_names_the_level_of_a_group() -> None:
    src, parser = _source(), Parser()
    got = parser.feed(
        [(src, 1.0, b"Traceback (most recent call last):\n  x\nINFO: recovered\n"), (src, 1.0, b"")], 1.0
    )
    assert [(e.message.split("\n")[-1], e.level) for e in got] == [("INFO: recovered", "info")]


def test_a_group_is_bounded() -> None:
    src, parser = _source(), Parser()
    data = b"Traceback (most recent call last):\n" + b"  frame\n" * (GROUP_MAX_LINES + 10)
    got = parser.feed([(src, 1.0, data), (src, 1.0, b"")], 1.0)
    assert len(got) == 2 and got[0].message.count("\n") == GROUP_MAX_LINES - 1


def test_fast_and_line_by_line_paths_agree() -> None:
    lines = [b"plain %d" % i if i % 7 else b"  indented %d" % i for i in range(300)]
    data = b"\n".join(lines) + b"\n"
    src = _source()
    whole = Parser().feed([(src, 1.0, data), (src, 1.0, b"")], 1.0)
    # One read per line, taken in one batch (lines in separate batches: a plain line is not held
    # back, so an indented line in a later batch starts its own entry).
    one_by_one = Parser().feed([(src, 1.0, line + b"\n") for line in lines] + [(src, 1.0, b"")], 1.0)
    assert [e.message for e in whole] == [e.message for e in one_by_one]
    assert len(whole) < len(lines)  # the indented lines joined the line before them
