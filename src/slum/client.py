"""slum.Client: the Python API to a running `slum serve`, and what the CLI itself uses.

Standard library only (http.client), so `import slum` and `slum ps` stay fast. It talks to the
local control socket (no token needed) or to a server over HTTP with a token.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from slum.errors import (
    BadRequest,
    Conflict,
    NotFound,
    ServerUnreachable,
    SlumError,
    Unauthorized,
    Unavailable,
)

DEFAULT_HTTP = "http://127.0.0.1:8080"
_ERRORS: dict[int, type[SlumError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    429: Unavailable,
    503: Unavailable,
}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def control_socket_path(database: str | os.PathLike[str]) -> Path:
    """The control socket lives beside the database (slum.db -> slum.sock), so the CLI finds
    the server of the database it is pointed at. Unix socket paths are short (108 bytes): a long
    one moves to a per-user runtime dir under a name derived from the database path."""
    db = Path(database).absolute()
    path = db.with_suffix(".sock")
    if len(os.fsencode(path)) < 100:
        return path
    import hashlib

    runtime = Path(os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/slum-{os.getuid()}")
    digest = hashlib.sha256(os.fsencode(db)).hexdigest()[:16]
    return runtime / f"slum-{digest}.sock"


def resolve_server(server: str | None, database: str | None = None) -> str:
    """--server / SLUM_SERVER / TENEMENT_SERVER, else the control socket of the database, else
    http://127.0.0.1:8080."""
    server = server or os.environ.get("SLUM_SERVER") or os.environ.get("TENEMENT_SERVER")
    if server:
        return server
    sock = control_socket_path(database or os.environ.get("SLUM_DATABASE", "slum.db"))
    if sock.exists():
        return f"unix:{sock}"
    return DEFAULT_HTTP


class Client:
    def __init__(
        self,
        server: str | None = None,
        token: str | None = None,
        *,
        database: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.server = resolve_server(server, database)
        self.token = token or os.environ.get("SLUM_TOKEN") or os.environ.get("TENEMENT_TOKEN")
        self.timeout = timeout
        if self.server.startswith("unix:"):
            self._unix: str | None = self.server[5:]
            self._host = ""
        else:
            url = urlsplit(self.server if "://" in self.server else "http://" + self.server)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise BadRequest(f"invalid server {self.server!r}: use http://host:port or unix:/path")
            self._unix = None
            self._host = url.netloc
            self._https = url.scheme == "https"

    def _connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        t = self.timeout if timeout is None else timeout
        if self._unix is not None:
            return _UnixConnection(self._unix, t)
        if self._https:
            return http.client.HTTPSConnection(self._host, timeout=t)
        return http.client.HTTPConnection(self._host, timeout=t)

    def _where(self) -> str:
        return f"control socket {self._unix}" if self._unix else self.server

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        conn = self._connection(timeout)
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json"}
        if self.token and self._unix is None:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (ConnectionRefusedError, FileNotFoundError):
            raise ServerUnreachable(
                f"no slum server is running at {self._where()} (start one with `slum serve`)"
            ) from None
        except (OSError, http.client.HTTPException) as e:
            raise ServerUnreachable(f"cannot talk to slum at {self._where()}: {e}") from None
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        if response.status >= 400:
            message = (data or {}).get("error") if isinstance(data, dict) else None
            cls = _ERRORS.get(response.status, SlumError)
            raise cls(message or f"HTTP {response.status} from {self._where()}")
        return data

    # --- instances ---
    def instances(self) -> list[dict[str, Any]]:
        return self.request("GET", "/_/api/instances")  # type: ignore[no-any-return]

    def instance(self, ref: str) -> dict[str, Any]:
        return self.request("GET", f"/_/api/instances/{quote(ref)}")  # type: ignore[no-any-return]

    def spawn(self, service: str, instance_id: str) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "POST",
            "/_/api/instances",
            {"service": service, "id": instance_id},
        )

    def stop(self, ref: str) -> dict[str, Any]:
        return self.request("POST", f"/_/api/instances/{quote(ref)}/stop")  # type: ignore[no-any-return]

    def restart(self, ref: str) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "POST",
            f"/_/api/instances/{quote(ref)}/restart",
        )

    def health(self, ref: str) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "GET",
            f"/_/api/instances/{quote(ref)}/health",
        )

    # --- deploys and traffic ---
    def deploy(self, service: str, version: str, *, weight: int = 100, timeout: float = 30) -> dict[str, Any]:
        """Start service:version, wait until healthy (at most `timeout` s), then give it
        `weight`; raises Unavailable with the reason if it does not get healthy."""
        return self.request(  # type: ignore[no-any-return]
            "POST",
            "/_/api/deploys",
            {"service": service, "version": version, "weight": weight, "timeout": timeout},
            timeout=timeout + self.timeout,
        )

    def route(self, service: str, source: str, target: str) -> dict[str, Any]:
        """Blue/green: all of `source`'s traffic to `target`, in one step."""
        return self.request(  # type: ignore[no-any-return]
            "POST",
            f"/_/api/services/{quote(service)}/route",
            {"from": source, "to": target},
        )

    def set_weight(self, ref: str, weight: int) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "POST",
            f"/_/api/instances/{quote(ref)}/weight",
            {"weight": weight},
        )

    def storage(self, ref: str) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "GET",
            f"/_/api/instances/{quote(ref)}/storage",
        )

    # --- server ---
    def server_health(self) -> dict[str, Any]:
        return self.request("GET", "/api/health")  # type: ignore[no-any-return]

    def config(self) -> dict[str, Any]:
        return self.request("GET", "/_/api/config")  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        return self.request("GET", "/_/api/status")  # type: ignore[no-any-return]

    def overview(self) -> dict[str, Any]:
        return self.request("GET", "/_/api/overview")  # type: ignore[no-any-return]

    # --- fleet ---
    def servers(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/servers")  # type: ignore[no-any-return]

    def add_server(
        self, address: str, name: str | None = None, token: str | None = None, capacity: int | None = None
    ) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "POST",
            "/api/servers",
            {"address": address, "name": name, "token": token, "capacity": capacity},
        )

    def remove_server(self, ref: str) -> dict[str, Any]:
        return self.request("DELETE", f"/api/servers/{quote(ref)}")  # type: ignore[no-any-return]

    def tenants(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/tenants")  # type: ignore[no-any-return]

    def tenant(self, tenant_id: str) -> dict[str, Any]:
        """One tenant, with its `aliases` and its instance here (`instance`, or None)."""
        return self.request(  # type: ignore[no-any-return]
            "GET",
            f"/_/api/tenants/{quote(tenant_id, safe='')}",
        )

    def add_tenant(
        self, tenant_id: str, server: str | None = None, service: str | None = None
    ) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "POST",
            "/api/tenants",
            {"id": tenant_id, "server": server, "service": service},
        )

    def remove_tenant(self, tenant_id: str) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "DELETE",
            f"/api/tenants/{quote(tenant_id)}",
        )

    def move_tenant(self, tenant_id: str, to: str) -> dict[str, Any]:
        """Started on server `to`, stopped where it was; `moved_from` names that server, and
        `warnings` says what it did not do (the move stands)."""
        return self.request(  # type: ignore[no-any-return]
            "POST",
            f"/api/tenants/{quote(tenant_id, safe='')}/move",
            {"to": to},
        )

    def add_alias(self, tenant_id: str, domain: str) -> dict[str, Any]:
        """Route a custom domain to the tenant; returns the tenant with its `aliases`."""
        return self.request(  # type: ignore[no-any-return]
            "POST",
            f"/api/tenants/{quote(tenant_id, safe='')}/aliases",
            {"domain": domain},
        )

    def remove_alias(self, tenant_id: str, domain: str) -> dict[str, Any]:
        return self.request(  # type: ignore[no-any-return]
            "DELETE",
            f"/api/tenants/{quote(tenant_id, safe='')}/aliases/{quote(domain, safe='')}",
        )

    # --- tokens ---
    def tokens(self) -> list[dict[str, Any]]:
        """Tokens: id, description, scope, created, last_used; never the secret."""
        return self.request("GET", "/_/api/tokens")  # type: ignore[no-any-return]

    def create_token(self, description: str | None = None, tenant: str | None = None) -> dict[str, Any]:
        """A new token ({"id", "token", ...}); the secret is in this answer only."""
        return self.request(  # type: ignore[no-any-return]
            "POST",
            "/_/api/tokens",
            {"description": description, "tenant": tenant},
        )

    def revoke_token(self, token_id: str) -> dict[str, Any]:
        """Revoke a token by its id; its sessions end at once."""
        return self.request(  # type: ignore[no-any-return]
            "DELETE",
            f"/_/api/tokens/{quote(token_id, safe='')}",
        )

    # --- logs ---
    def logs(self, **filters: Any) -> list[dict[str, Any]]:
        return self.request("GET", "/_/api/logs", query=filters)  # type: ignore[no-any-return]

    def follow_logs(self, after_id: int | None = None, **filters: Any) -> Iterator[dict[str, Any]]:
        """Yield log entries as they arrive (SSE), resuming after after_id; reconnects are the
        caller's business (the CLI reconnects with the last id it saw)."""
        conn = self._connection(timeout=None)
        query = {k: v for k, v in filters.items() if v is not None}
        headers = {"Accept": "text/event-stream"}
        if after_id is not None:
            headers["Last-Event-ID"] = str(after_id)
        if self.token and self._unix is None:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request("GET", "/_/api/logs/stream?" + urlencode(query), headers=headers)
            response = conn.getresponse()
            if response.status >= 400:
                raw = response.read()
                try:
                    message = json.loads(raw).get("error")
                except (ValueError, AttributeError):
                    message = None
                raise _ERRORS.get(response.status, SlumError)(message or f"HTTP {response.status}")
            name, data = "", list[str]()
            for raw_line in response:
                line = raw_line.decode("utf-8", "replace").rstrip("\n").rstrip("\r")
                if not line:
                    if name == "log" and data:
                        yield json.loads("\n".join(data))
                    elif name == "lagged" and data:
                        yield {"lagged": json.loads("\n".join(data)).get("missed", 0)}
                    name, data = "", []
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
        except (ConnectionRefusedError, FileNotFoundError):
            raise ServerUnreachable(f"no slum server is running at {self._where()}") from None
        except (OSError, http.client.HTTPException) as e:
            raise ServerUnreachable(f"lost the connection to slum at {self._where()}: {e}") from None
        finally:
            conn.close()


def database_path(value: str | None) -> Path:
    return Path(value or os.environ.get("SLUM_DATABASE", "slum.db"))
