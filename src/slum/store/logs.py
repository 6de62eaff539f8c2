"""Log queries: FTS5 expressions built from user words (never passing syntax through), results
newest first by rowid. The writer is store/ingest.py."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import apsw

from slum.config import DNS_LABEL
from slum.errors import BadRequest
from slum.events import LEVELS, LogLine, StoredLog

MAX_LIMIT = 5000
MAX_ID = 2**62  # larger cannot be a row id and would overflow SQLite's integers
MAX_SECONDS = 1e12  # year ~33,000: microseconds of it still fit SQLite's integers
MAX_TIME = 1e14  # what parse_since accepts: seconds, or browsers' milliseconds
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
    service: str | None = None  # every instance of a service (tenement's process=)
    name: str | None = None  # instances with this id, of any service (tenement's id=)
    stream: str | None = None  # stdout | stderr | system

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> LogQuery:
        """The filters of an HTTP query string (the JSON endpoint and the live stream alike),
        validated. `level=warn+` means warn and above; in a URL that `+` arrives as a space, so
        `level=warn ` means the same, as does `min_level=warn`."""
        level: str | None = args.get("level") or None
        min_level: str | None = args.get("min_level") or None
        if level and level.endswith(("+", " ")):
            min_level, level = level.rstrip("+ ") or None, None
        # tenement's filters: process= (a service) and id= (an instance of it)
        service, name = args.get("process") or None, args.get("id") or None
        instance_id = args.get("instance_id") or None
        if service and name and instance_id is None:
            instance_id, service, name = f"{service}:{name}", None, None
        return cls(
            service=service,
            name=name,
            instance_id=instance_id,
            tenant_id=args.get("tenant_id") or None,
            level=level,
            min_level=min_level,
            search=args.get("search") or None,
            since=parse_since(args.get("since")),
            until=parse_since(args.get("until")),
            limit=_int(args, "limit", 100),
            offset=_int(args, "offset", 0),
            before_id=_int(args, "before_id", 0) or None,
            after_id=_int(args, "after_id", 0) or None,
            stream=args.get("stream") or None,
        ).validate()

    def validate(self) -> LogQuery:
        if self.stream is not None and self.stream not in STREAMS:
            raise BadRequest(f"invalid stream {self.stream[:40]!r}: one of {', '.join(STREAMS)}")
        for name in ("level", "min_level"):
            value = getattr(self, name)
            if value is not None and value not in LEVELS:
                raise BadRequest(f"invalid {name} {value!r}: one of {', '.join(LEVELS)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}")
        for name in ("offset", "before_id", "after_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= MAX_ID:
                raise BadRequest(f"{name} must be between 0 and {MAX_ID}")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and not -MAX_SECONDS <= value <= MAX_SECONDS:
                raise BadRequest(f"{name} is out of range (a unix time in seconds)")
        for label, value in (("process", self.service), ("id", self.name)):
            if value is not None and not DNS_LABEL.fullmatch(value):
                raise BadRequest(f"{label} {value[:40]!r} is not a valid name")
        if self.search is not None:
            fts_match(self.search)  # a search with nothing to look for is a 400 here, not later
        return self

    def matches(self, line: LogLine) -> bool:
        """For live streams: the same filters as the SQL, minus search (done by words)."""
        if self.instance_id is not None and line.instance_id != self.instance_id:
            return False
        if self.tenant_id is not None and line.tenant_id != self.tenant_id:
            return False
        if self.service is not None and not (line.instance_id or "").startswith(self.service + ":"):
            return False
        if self.name is not None and not (line.instance_id or "").endswith(":" + self.name):
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


def query(conn: apsw.Connection, q: LogQuery) -> list[dict[str, Any]]:
    where: list[str] = []
    args: list[Any] = []
    src = "logs l"
    if q.search:
        src = "logs_fts f JOIN logs l ON l.id = f.rowid"
        where.append("logs_fts MATCH ?")
        args.append(fts_match(q.search))
    for column, value in (
        ("l.instance_id", q.instance_id),
        ("l.tenant_id", q.tenant_id),
        ("l.level", q.level),
        ("l.stream", q.stream),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    # service and name are DNS labels (validated): no LIKE wildcard can be in them
    if q.service is not None:
        where.append("l.instance_id LIKE ?")
        args.append(f"{q.service}:%")
    if q.name is not None:
        where.append("l.instance_id LIKE ?")
        args.append(f"%:{q.name}")
    if q.min_level is not None:
        allowed = LEVELS[LEVELS.index(q.min_level) :]
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
    sql = (
        f"SELECT l.id, l.ts_us, l.level, l.stream, l.instance_id, l.tenant_id, l.message "
        f"FROM {src} {'WHERE ' + ' AND '.join(where) if where else ''} "
        f"ORDER BY {order_col} {order} LIMIT ? OFFSET ?"
    )
    args += [q.limit, q.offset]
    try:
        rows = list(conn.execute(sql, args))
    except Exception as e:  # apsw.SQLError on a query FTS5 still refuses
        if "fts5" in str(e).lower() or "syntax" in str(e).lower():
            raise BadRequest(f"invalid search {q.search!r}: {e}") from None
        raise
    return [row_to_entry(r) for r in rows]


def row_to_entry(r: tuple[Any, ...]) -> dict[str, Any]:
    return {
        "id": r[0],
        "timestamp": iso(r[1] / 1_000_000),
        "level": r[2],
        "stream": r[3],
        "instance_id": r[4],
        "tenant_id": r[5],
        "message": r[6],
    }


def stored_to_entry(s: StoredLog) -> dict[str, Any]:
    line = s.line
    return {
        "id": s.id,
        "timestamp": iso(line.ts),
        "level": line.level,
        "stream": line.stream,
        "instance_id": line.instance_id,
        "tenant_id": line.tenant_id,
        "message": line.message,
    }


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _int(args: Mapping[str, str], name: str, default: int) -> int:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {raw[:40]!r}") from None


def parse_since(value: str | None, now: float | None = None) -> float | None:
    """'10m', '2h', '7d', '30s', a unix time, or an ISO-8601 time -> unix seconds. Anything past
    MAX_TIME either way is refused (400) rather than overflowing a query later."""
    t = _parse_time(value, now)
    if t is not None and not -MAX_TIME <= t <= MAX_TIME:
        raise BadRequest(f"time {str(value)[:40]!r} is out of range")
    return t


def _parse_time(value: str | None, now: float | None) -> float | None:
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
        raise BadRequest(f"invalid time {value[:40]!r}: use 10m, 2h, 7d, a unix time or ISO-8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return dt.timestamp()
    except (OverflowError, ValueError):  # year 1 with a positive offset lands before year 1
        raise BadRequest(f"time {value[:40]!r} is out of range") from None
