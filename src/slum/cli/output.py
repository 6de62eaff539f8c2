"""How the CLI prints: tables for people, JSON for scripts, one line for errors."""

from __future__ import annotations

import json
import sys

TYPE_CHECKING = False  # not typing's: `slum ps` imports this module, and typing costs ms
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    if not seconds:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


# C0 controls but tab, DEL, and C1 controls (U+0080-U+009F: CSI and OSC in 8-bit terminals).
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x09), *range(0x0A, 0x20), 0x7F, *range(0x80, 0xA0)]}


def escape_controls(text: str) -> str:
    """ESC, BEL, CR, backspace... as visible \\xNN: a log line cannot set the terminal's
    title, clear the screen or rewrite what was printed before it."""
    return text.translate(_CONTROLS)


def log_line(entry: dict[str, Any], *, escape: bool = False) -> str:
    who = entry.get("instance_id") or "slum"
    message = escape_controls(entry["message"]) if escape else entry["message"]
    return f"{entry['timestamp']} {who} {entry['level']:<5} {message}"


def error(message: str) -> None:
    sys.stderr.write(f"slum: error: {message}\n")


def ps_command(client: Any, *, all: bool = False, json: bool = False) -> int:
    """`slum ps`: here, so that the fast path in cli/__init__.py can run it without cyclopts."""
    instances = client.request("GET", "/_/api/instances", query={"all": "1"}) if all else client.instances()
    if json:
        print_json(instances)
        return 0
    if not instances:
        print("no instances (spawn one with `slum spawn SERVICE --id ID`)")
        return 0
    rows: list[tuple[Any, ...]] = [
        (
            i["id"],
            i["status"],
            i.get("health"),
            i.get("port"),
            i.get("pid"),
            duration(i.get("uptime_secs")),
            i.get("restarts"),
            i.get("wakes"),
            "; ".join(
                x
                for x in (
                    i.get("reason") or (i.get("last_reason") if i["status"] == "crash-looping" else None),
                    i.get("storage_warning"),
                )
                if x
            ),
        )
        for i in instances
    ]
    headers = ["INSTANCE", "STATUS", "HEALTH", "PORT", "PID", "UPTIME", "RESTARTS", "WAKES", "REASON"]
    if all:
        headers.insert(0, "SERVER")
        rows = [(i.get("server", "local"), *row) for i, row in zip(instances, rows, strict=True)]
    print(table(headers, rows))
    return 0
