"""`slum ps` without the argument parser or http.client: the command people run in loops.

Only the standard library's os, socket and json, talking HTTP/1.1 to the local control socket.
Anything out of the ordinary (a remote --server, a token, an error answer, no socket) returns None,
and the full CLI handles it, with its messages and exit codes.
"""

from __future__ import annotations

import json
import os
import socket

TYPE_CHECKING = False  # not typing's: importing typing costs a few ms
if TYPE_CHECKING:
    from typing import Any

FLAGS = {"--json", "--all", "-a"}
TIMEOUT_S = 30.0


def ps(args: list[str]) -> int | None:
    if not args or args[0] not in ("ps", "ls") or not set(args[1:]) <= FLAGS:
        return None
    server = os.environ.get("SLUM_SERVER")
    if server and not server.startswith("unix:"):
        return None
    path = server[5:] if server else _socket_path(os.environ.get("SLUM_DATABASE", "slum.db"))
    every = bool({"--all", "-a"} & set(args))
    instances = _get(path, "/_/api/instances?all=1" if every else "/_/api/instances")
    if instances is None:
        return None
    from slum.cli.output import ps_command

    return ps_command(_Answered(instances), all=every, json="--json" in args)


class _Answered:
    """What ps_command asks of a client, answered already."""

    def __init__(self, instances: Any) -> None:
        self._instances = instances

    def instances(self) -> Any:
        return self._instances

    def request(self, method: str, path: str, query: Any = None) -> Any:
        return self._instances


def _socket_path(database: str) -> str | None:
    """As slum.client.control_socket_path, for the short-path case it covers (a long one is
    hashed into a runtime dir: that case takes the full CLI)."""
    db = os.path.abspath(database)
    root, ext = os.path.splitext(db)
    path = root + ".sock" if ext else db + ".sock"
    return path if len(os.fsencode(path)) < 100 else None


def _get(path: str | None, target: str) -> Any:
    if path is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT_S)
            sock.connect(path)
            sock.sendall(
                f"GET {target} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json"
                "\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = lines[0].split(b" ", 2)
            if len(status) < 2 or status[1] != b"200":
                return None
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(b":") for h in lines[1:])}
            length = headers.get(b"content-length", b"")
            # The server keeps the connection open after the answer: read what it announced.
            if not length.isdigit() or b"transfer-encoding" in headers:
                return None
            parts = [body]
            left = int(length) - len(body)
            while left > 0:
                chunk = sock.recv(min(left, 1 << 20))
                if not chunk:
                    return None
                parts.append(chunk)
                left -= len(chunk)
    except OSError:
        return None
    try:
        return json.loads(b"".join(parts))
    except ValueError:
        return None
