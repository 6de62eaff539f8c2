"""Log queries: FTS5 expressions built from user words (never passing syntax through), results
newest first by rowid. The writer is store/ingest.py."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slum.errors import BadRequest
from slum.events import LEVELS, LogLine, StoredLog

MAX_LIMIT = 5000
_WORD = re.compile(r'"([^"]*)"|(\S+)')


def fts_match(search: str) -> str:
    """User words -> an FTS5 query: each word (or "quoted phrase") becomes a quoted phrase, all
    must match; a trailing * keeps its prefix meaning. Nothing else of FTS5 syntax gets through."""
    terms = []
    for quoted, word in _WORD.findall(search):
        text = quoted if quoted else word
        prefix = not quoted and text.endswith("*")
        text = text.rstrip("*") if prefix else text
        # FTS5 drops punctuation anyway; keeping only tokens avoids empty phrases.
        tokens = re.findall(r"\w+", text)
        if not tokens:
            continue
        phrase = '"' + " ".join(tokens) + '"'
        terms.append(phrase + " *" if prefix else phrase)
    if not terms:
        raise BadRequest(f"search {search!r} has no words to look for")
    return " AND ".join(terms)


STREAMS = ("stdout", "stderr", "system")


@dataclass
class LogQuery:
    instance_id: str | None = None
    tenant_id: str | None = None
    level: str | None = None  # exactly this level
    min_level: str | None = None  # this level and above
    search: str | None = None
    since: float | None = None  # unix seconds
    until: float | None = None
    limit: int = 100
    offset: int = 0
    before_id: int | None = None  # cursor: entries older than this id
    after_id: int | None = None  # entries newer than this id, oldest first (resume, follow)
    stream: str | None = None  # stdout | stderr | system

    def validate(self) -> LogQuery:
        if self.stream is not None and self.stream not in STREAMS:
            raise BadRequest(f"invalid stream {self.stream!r}: one of {', '.join(STREAMS)}")
        for name in ("level", "min_level"):
            value = getattr(self, name)
            if value is not None and value not in LEVELS:
                raise BadRequest(f"invalid {name} {value!r}: one of {', '.join(LEVELS)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
        if self.offset < 0:
            raise BadRequest("offset must be >= 0")
        return self

    def matches(self, line: LogLine) -> bool:
        """For live streams: the same filters as the SQL, minus search (done by words)."""
        if self.instance_id is not None and line.instance_id != self.instance_id:
            return False
        if self.tenant_id is not None and line.tenant_id != self.tenant_id:
            return False
        if self.level is not None and line.level != self.level:
            return False
        if self.stream is not None and line.stream != self.stream:
            return False
        if self.min_level is not None and LEVELS.index(line.level) < LEVELS.index(self.min_level):
            return False
        if self.search:
            words = [w.rstrip("*").lower() for _, w in _WORD.findall(self.search) if w]
            phrases = [q.lower() for q, _ in _WORD.findall(self.search) if q]
            text = line.message.lower()
            return all(w in text for w in words + phrases)
        return True


def query(conn: Any, q: LogQuery) -> list[dict[str, Any]]:
    where: list[str] = []
    args: list[Any] = []
    src = "logs l"
    if q.search:
        src = "logs_fts f JOIN logs l ON l.id = f.rowid"
        where.append("logs_fts MATCH ?")
        args.append(fts_match(q.search))
    for column, value in (("l.instance_id", q.instance_id), ("l.tenant_id", q.tenant_id),
                          ("l.level", q.level), ("l.stream", q.stream)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.min_level is not None:
        allowed = LEVELS[LEVELS.index(q.min_level):]
        where.append(f"l.level IN ({','.join('?' * len(allowed))})")
        args.extend(allowed)
    if q.since is not None:
        where.append("l.ts_us >= ?")
        args.append(int(q.since * 1_000_000))
    if q.until is not None:
        where.append("l.ts_us <= ?")
        args.append(int(q.until * 1_000_000))
    if q.before_id is not None:
        where.append("l.id < ?")
        args.append(q.before_id)
    if q.after_id is not None:
        where.append("l.id > ?")
        args.append(q.after_id)
    order_col = "f.rowid" if q.search else "l.id"
    order = "ASC" if q.after_id is not None else "DESC"
    sql = (f"SELECT l.id, l.ts_us, l.level, l.stream, l.instance_id, l.tenant_id, l.message "
           f"FROM {src} {'WHERE ' + ' AND '.join(where) if where else ''} "
           f"ORDER BY {order_col} {order} LIMIT ? OFFSET ?")
    args += [q.limit, q.offset]
    try:
        rows = list(conn.execute(sql, args))
    except Exception as e:  # apsw.SQLError on a query FTS5 still refuses
        if "fts5" in str(e).lower() or "syntax" in str(e).lower():
            raise BadRequest(f"invalid search {q.search!r}: {e}") from None
        raise
    return [row_to_entry(r) for r in rows]


def row_to_entry(r: tuple[Any, ...]) -> dict[str, Any]:
    return {"id": r[0], "timestamp": iso(r[1] / 1_000_000), "level": r[2], "stream": r[3],
            "instance_id": r[4], "tenant_id": r[5], "message": r[6]}


def stored_to_entry(s: StoredLog) -> dict[str, Any]:
    line = s.line
    return {"id": s.id, "timestamp": iso(line.ts), "level": line.level, "stream": line.stream,
            "instance_id": line.instance_id, "tenant_id": line.tenant_id,
            "message": line.message}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """'10m', '2h', '7d', '30s', a unix time, or an ISO-8601 time -> unix seconds."""
    if value is None or value == "":
        return None
    now = time.time() if now is None else now
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)", value.strip())
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]
        return now - float(m.group(1)) * unit
    try:
        number = float(value)
        if math.isfinite(number):
            return number
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"invalid time {value!r}: use 10m, 2h, 7d, a unix time or ISO-8601") \
            from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
