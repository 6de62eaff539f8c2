"""The built SPA, served at /_/ with index.html for client-side routes. The Python package works
without it (tests use the placeholder page); `make spa` builds it into static/."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
STATIC = HERE / "static"
PLACEHOLDER = HERE / "placeholder"


def root() -> Path:
    return STATIC if (STATIC / "index.html").is_file() else PLACEHOLDER


def resolve(path: str) -> tuple[Path, bool]:
    """Path of the file to send for /_/{path}, and whether it may be cached forever."""
    base = root().resolve()
    if path:
        try:
            candidate = (base / path).resolve()
            found = candidate.is_file() and candidate.is_relative_to(base)
        except (OSError, ValueError):  # a NUL, a name too long: no such file
            found = False
        if found:
            return candidate, "/immutable/" in f"/{path}"
    return base / "index.html", False
