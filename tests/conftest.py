"""Shared test helpers: real programs, real sockets on 127.0.0.1, real SQLite files."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHILDREN = Path(__file__).resolve().parent / "children"
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def children() -> Path:
    return CHILDREN


@pytest.hookimpl(trylast=True)  # after -m has deselected what this run does not include
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In CI (SLUM_REQUIRE_ALL=1) a test that would be skipped for a missing part (the built
    dashboard, chromium, the binary) stops the run instead: a skip would hide a broken build."""
    import os

    if os.environ.get("SLUM_REQUIRE_ALL") != "1":
        return
    missing = {
        mark.kwargs.get("reason", "a required part")
        for item in items
        for mark in item.iter_markers("skipif")
        if mark.args and mark.args[0]
    }
    if missing:
        raise pytest.UsageError("required in CI but missing: " + "; ".join(sorted(missing)))
