"""Turning a child's byte stream into log entries: joined partial lines, truncated long ones,
replaced invalid UTF-8, a stack trace grouped into one entry, and a level read from the text itself
where it says one. Runs in the ingestion thread, never on the event loop."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from slum.events import LogLine, OutputStream

MAX_LINE = 16 * 1024
TRUNCATED = " …[truncated {} bytes]"

_LEVEL_WORD = re.compile(
    rb"^\W{0,3}(trace|debug|info|notice|warn|warning|error|err|fatal|critical|crit|panic)\b",
    re.IGNORECASE,
)
_LEVELS = {
    b"trace": "debug",
    b"debug": "debug",
    b"info": "info",
    b"notice": "info",
    b"warn": "warn",
    b"warning": "warn",
    b"error": "error",
    b"err": "error",
    b"fatal": "error",
    b"critical": "error",
    b"crit": "error",
    b"panic": "error",
}


def level_of(line: bytes, stream: str) -> str:
    return explicit_level(line) or ("warn" if stream == "stderr" else "info")


def explicit_level(line: bytes) -> str | None:
    """The level a line names itself (a JSON field, or a leading word), or None."""
    if line[:1] == b"{":
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            value = doc.get("level") or doc.get("severity") or doc.get("lvl")
            if isinstance(value, str) and value.lower().encode() in _LEVELS:
                return _LEVELS[value.lower().encode()]
    m = _LEVEL_WORD.match(line)
    if m:
        return _LEVELS[m.group(1).lower()]
    return None


class LineSplitter:
    """Feed chunks, get complete lines. A line longer than MAX_LINE is cut, its rest skipped up to
    the next newline and counted in the marker, so memory stays bounded whatever the child writes."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self._buf = bytearray()
        self._skipping = 0
        self._head = b""
        self._max = max_line

    def feed(self, chunk: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        last = chunk.rfind(b"\n")
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                break
            if start and not self._buf and not self._skipping and nl < last:
                # The lines between the first and the last newline, split in C.
                middle = chunk[start:last].split(b"\n")
                if b"\r" in chunk:
                    middle = [piece.removesuffix(b"\r") for piece in middle]
                if max(map(len, middle)) > self._max:
                    middle = [
                        piece
                        if len(piece) <= self._max
                        else piece[: self._max] + TRUNCATED.format(len(piece) - self._max).encode()
                        for piece in middle
                    ]
                lines += middle
                start = last + 1
                continue
            piece = chunk[start:nl]
            start = nl + 1
            # The \r of a \r\n ending is not content: strip it before measuring, so a line of
            # exactly max bytes is not reported as truncated by one byte.
            if self._skipping:
                lines.append(self._cut(self._skipping + len(piece.removesuffix(b"\r"))))
                self._skipping = 0
                continue
            if self._buf:
                self._buf += piece
                piece = bytes(self._buf)
                self._buf.clear()
            piece = piece.removesuffix(b"\r")
            if len(piece) > self._max:
                lines.append(piece[: self._max] + TRUNCATED.format(len(piece) - self._max).encode())
            else:
                lines.append(piece)
        rest = chunk[start:]
        if self._skipping:
            self._skipping += len(rest)
        else:
            self._buf += rest
            # One byte of slack: a full-length line's \r may be here, its \n in the next chunk.
            if len(self._buf) > self._max + 1:
                self._head = bytes(self._buf[: self._max])
                self._skipping = len(self._buf) - self._max
                self._buf.clear()
        return lines

    def _cut(self, skipped: int) -> bytes:
        return self._head + TRUNCATED.format(skipped).encode()

    def flush(self) -> list[bytes]:
        """End of stream: what is left is a line too."""
        if self._skipping:
            line = self._cut(self._skipping)
            self._skipping = 0
            return [line]
        if self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            return [line]
        return []


def decode(line: bytes) -> str:
    return line.decode("utf-8", errors="replace")


# --- multi-line entries ---------------------------------------------------------------------
# A stack trace is written as many lines within a moment. Lines of one stream that continue the
# previous one (see _Group.continues) and arrive within GROUP_GAP_S of it are one entry. Generous,
# because a busy machine can deschedule a child between two writes of one trace; only an entry
# that looks like a trace is held back that long waiting for more (see _Group.may_grow).
GROUP_GAP_S = 0.100
GROUP_MAX_LINES = 500
GROUP_MAX_BYTES = 64 * 1024
_EXCEPTION_HEAD = re.compile(rb"^(?:[A-Za-z_$][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)\b")
_PY_CHAIN = (b"During handling of the above exception", b"The above exception was the direct")


# A line start that may continue an entry or start a trace; a chunk without one takes the fast path.
_INTERESTING = re.compile(
    rb"\n(?:[ \t\r\n]|Traceback \(|panic: |fatal error: |Caused by: |During handling|The above"
    rb"|(?:[A-Za-z_$][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)\b)"
)


def _plain(source: OutputStream, ts: float, lines: list[bytes], out: list[LogLine]) -> None:
    """Lines that are entries of their own, without a call per line where it can be helped."""
    iid, tid, stream = source.instance_id, source.tenant_id, source.stream
    default = "warn" if stream == "stderr" else "info"
    match, levels = _LEVEL_WORD.match, _LEVELS
    for line in lines:
        if line[:1] == b"{":
            level = explicit_level(line) or default
        else:
            m = match(line)
            level = levels[m.group(1).lower()] if m else default
        out.append(LogLine(ts, iid, tid, stream, level, line.decode("utf-8", "replace")))


class _Group:
    __slots__ = ("go", "java", "last_indented", "last_ts", "lines", "python", "size", "ts")

    def __init__(self, line: bytes, ts: float) -> None:
        self.lines = [line]
        self.ts = self.last_ts = ts
        self.size = len(line)
        self.python = line.startswith(b"Traceback (most recent call last)")
        self.go = line.startswith((b"panic: ", b"fatal error: "))
        self.java = line.startswith(b"Exception in thread ") or bool(_EXCEPTION_HEAD.match(line))
        self.last_indented = False

    def add(self, line: bytes, ts: float) -> None:
        self.lines.append(line)
        self.last_ts = ts
        self.size += len(line) + 1
        self.last_indented = line[:1] in (b" ", b"\t")
        if self.last_indented and line.lstrip().startswith(b"at "):
            self.java = True
        elif line.startswith(b"Traceback (most recent call last)"):
            self.python = True

    @property
    def may_grow(self) -> bool:
        """Worth waiting for: a trace's lines come in separate writes (a logger writes a whole
        record at once, so a plain line is not held back waiting for one)."""
        return self.python or self.go or self.java or len(self.lines) > 1

    def continues(self, line: bytes) -> bool:
        """Whether `line` (arriving in time) belongs to this entry."""
        if len(self.lines) >= GROUP_MAX_LINES or self.size + len(line) > GROUP_MAX_BYTES:
            return False
        if line[:1] in (b" ", b"\t") or self.go:
            # Indented: a frame of any language's trace. A Go panic dump has unindented lines
            # (goroutine headers, function names) and ends when the process does.
            return True
        if line.startswith(b"Traceback (most recent call last)"):
            return True  # logging.exception: the message line, then the trace
        if self.python:
            # The exception line after the frames, and the chained tracebacks after it.
            return self.last_indented or not line.strip() or line.startswith(_PY_CHAIN)
        if line.startswith(b"Caused by: ") and self.java:
            return True
        # An exception's name after a logger's line: "...ERROR failed" then "java.lang.X: ..."
        return len(self.lines) == 1 and _EXCEPTION_HEAD.match(line) is not None

    def entry(self, source: OutputStream) -> LogLine:
        lines = self.lines
        while len(lines) > 1 and not lines[-1].strip():
            lines.pop()
        trace = self.python or self.go or self.java
        level = explicit_level(lines[-1]) or (explicit_level(lines[0]) if len(lines) > 1 else None)
        if level is None:
            level = "error" if trace else ("warn" if source.stream == "stderr" else "info")
        text = lines[0] if len(lines) == 1 else b"\n".join(lines)
        return LogLine(self.ts, source.instance_id, source.tenant_id, source.stream, level, decode(text))


class _StreamState:
    __slots__ = ("group", "splitter")

    def __init__(self) -> None:
        self.splitter = LineSplitter()
        self.group: _Group | None = None


class Parser:
    """Turns what the hub took (pipe reads and ready-made system lines) into entries. Keeps each
    stream's partial line and open entry between calls; one caller at a time (the ingest task)."""

    def __init__(self) -> None:
        self._streams: dict[OutputStream, _StreamState] = {}

    def feed(self, items: Iterable[Any], now: float, *, final: bool = False) -> list[LogLine]:
        """Items are LogLines or (OutputStream, read time, bytes; b"" at EOF). An entry that may
        still grow is held until GROUP_GAP_S after its last line (see hold_until)."""
        out: list[LogLine] = []
        streams = self._streams
        for item in items:
            if isinstance(item, LogLine):
                out.append(item)
                continue
            source, ts, data = item
            state = streams.get(source)
            if state is None:
                state = streams[source] = _StreamState()
            if data:
                lines = state.splitter.feed(data)
                n = len(lines)
                if n > 3 and _INTERESTING.search(data, data.find(b"\n") + 1) is None:
                    # No line after the first can continue or start a trace: past the first two
                    # (which may continue what came before), each line is its own entry.
                    self._line(state, source, ts, lines[0], out)
                    self._line(state, source, ts, lines[1], out)
                    if state.group is not None:
                        out.append(state.group.entry(source))
                        state.group = None
                    _plain(source, ts, lines[2:-1], out)
                    self._line(state, source, ts, lines[-1], out)
                else:
                    for line in lines:
                        self._line(state, source, ts, line, out)
            else:
                for line in state.splitter.flush():
                    self._line(state, source, ts, line, out)
                if state.group is not None:
                    out.append(state.group.entry(source))
                del streams[source]
        for source, state in list(streams.items()):
            if final:
                for line in state.splitter.flush():
                    self._line(state, source, now, line, out)
            group = state.group
            if group is not None and (final or not group.may_grow or now - group.last_ts >= GROUP_GAP_S):
                out.append(group.entry(source))
                state.group = None
            if final:
                del streams[source]
        return out

    def hold_until(self) -> float | None:
        """When the earliest held entry is due (wall time), or None if none is held."""
        due = [
            s.group.last_ts + GROUP_GAP_S
            for s in self._streams.values()
            if s.group is not None and s.group.may_grow
        ]
        return min(due) if due else None

    @staticmethod
    def _line(state: _StreamState, source: OutputStream, ts: float, line: bytes, out: list[LogLine]) -> None:
        group = state.group
        if group is not None:
            if ts - group.last_ts <= GROUP_GAP_S and group.continues(line):
                group.add(line, ts)
                return
            out.append(group.entry(source))
        state.group = _Group(line, ts)
