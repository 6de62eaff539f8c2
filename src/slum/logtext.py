"""Turning a child's byte stream into log lines: joined partial lines, truncated long ones,
replaced invalid UTF-8, and a level read from the line itself where it says one."""

from __future__ import annotations

import json
import re

MAX_LINE = 16 * 1024
TRUNCATED = " …[truncated {} bytes]"

_LEVEL_WORD = re.compile(
    rb"^\W{0,3}(trace|debug|info|notice|warn|warning|error|err|fatal|critical|crit|panic)\b",
    re.IGNORECASE,
)
_LEVELS = {
    b"trace": "debug", b"debug": "debug", b"info": "info", b"notice": "info", b"warn": "warn",
    b"warning": "warn", b"error": "error", b"err": "error", b"fatal": "error",
    b"critical": "error", b"crit": "error", b"panic": "error",
}


def level_of(line: bytes, stream: str) -> str:
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
    return "warn" if stream == "stderr" else "info"


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
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                break
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
