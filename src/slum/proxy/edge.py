"""The edge listener: accepts HTTP/1.1 connections, routes each request by Host, wakes the
instance if it sleeps, and forwards. slum's own /api and /_/ go to the web app on the control
socket like any other upstream, marked so the web app knows they came from the network."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httptools
import trio

from slum.errors import SlumError
from slum.proxy import io, weights
from slum.proxy.forward import Exchange, Pool, Upstream, UpstreamError, forward
from slum.proxy.http import ClientConnection, ClientGone, HeadTooLarge, Request, simple_response
from slum.proxy.routing import RouteTable, is_own_path
from slum.supervisor import Instance, Supervisor

RACE_WINDOW_S = 0.2
# (target label, method, status, seconds, path): metrics recording, microseconds, no await
RequestHook = Callable[[str, bytes, int, float, bytes], None]
# Is this the token of a router we trust? (cached after the first check: no argon2 per request)
RouterCheck = Callable[[str], Awaitable[bool]]


@dataclass
class EdgeOptions:
    max_body: int = 0
    default_instance: str | None = None
    connect_timeout_s: float = 5
    response_timeout_s: float = 60
    idle_timeout_s: float = 300
    trust_router: RouterCheck | None = None


def node_upstream(address: str) -> Upstream:
    """http://host:port of a remote slum node -> where its edge listens."""
    rest = address.partition("://")[2] or address
    hostport = rest.split("/", 1)[0]
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]:")
    else:
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "80")
    return Upstream(("node", address), int(port or 80), host=host)


class Edge:
    def __init__(self, table: RouteTable, supervisor: Supervisor | None, control_socket: str,
                 options: EdgeOptions | None = None, on_request: RequestHook | None = None) -> None:
        self.table = table
        self.supervisor = supervisor
        self.instances: dict[str, Instance] = supervisor.instances if supervisor else {}
        self.options = options or EdgeOptions()
        o = self.options
        self.pool = Pool(o.connect_timeout_s, o.response_timeout_s, o.idle_timeout_s)
        self.web = Upstream(("web",), unix_path=control_socket)
        self.on_request = on_request
        self.connections = 0
        self.nodes: dict[str, Upstream] = {}

    async def serve(self, host: str, port: int, *,
                    task_status: trio.TaskStatus[list[socket.socket]] = (
                        trio.TASK_STATUS_IGNORED)) -> None:
        listeners = io.listen_tcp(host, port)
        try:
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(io.serve, listener, self.handle, nursery)
                task_status.started(listeners)
        finally:
            for listener in listeners:
                listener.close()

    async def handle(self, stream: io.Connection) -> None:
        conn = ClientConnection(stream)
        self.connections += 1
        try:
            while True:
                try:
                    req = await conn.next_request()
                except httptools.HttpParserError:
                    await stream.send_all(simple_response(400, "bad request", keep_alive=False))
                    return
                except HeadTooLarge:
                    await stream.send_all(simple_response(431, "request head too large",
                                                          keep_alive=False))
                    return
                if req is None or not await self.dispatch(conn, req):
                    return
                # Sends and receives that need not wait do not yield: yield once per request
                # so that a busy keep-alive connection cannot starve the others.
                await trio.lowlevel.checkpoint()
        except (trio.BrokenResourceError, trio.ClosedResourceError, ClientGone, OSError):
            pass
        finally:
            self.connections -= 1
            stream.close()

    async def dispatch(self, conn: ClientConnection, req: Request) -> bool:
        started = time.perf_counter()
        if not req.host:
            return await self._reply(conn, req, 400, "missing Host header")
        if req.router_token and req.tenant_hint and self.options.trust_router is not None \
                and await self.options.trust_router(req.router_token.decode("latin-1")):
            # Routed here by a router that proved itself: the tenant it names is ours to serve.
            target = self.table.tenant_target(req.tenant_hint.decode("latin-1"))
        else:
            target = self.table.resolve(req.host.decode("latin-1"))
        kind = target.kind
        inst: Instance | None = None
        up = self.web
        label = kind
        extra = b""
        if kind == "instance" or kind == "service":
            inst = self.instances.get(target.value)
            if inst is None:
                # {service}.{domain} by weight, or a new id of an auto_spawn service.
                try:
                    inst = await weights.instance_for(self.supervisor, kind, target.value)
                except SlumError as e:
                    return await self._reply(conn, req, e.status, e.message, retry=True)
        elif kind == "own":
            if is_own_path(req.path):
                extra, label = b"X-Slum-Edge: 1\r\n", "slum"
            elif self.options.default_instance:
                inst = self.instances.get(self.options.default_instance)
                if inst is None:
                    return await self._reply(conn, req, 404, "no default instance")
            else:
                return await self._reply(conn, req, 302, "see /_/", location="/_/")
        elif kind == "tenant" and target.tenant is not None:
            route = target.tenant
            if route.status != "active":
                return await self._reply(conn, req, 503, f"tenant {route.tenant} is suspended")
            if route.server == "local":
                inst = self.instances.get(f"{route.service}:{route.tenant}")
                if inst is None and self.supervisor is not None and route.service:
                    inst = self.supervisor.ensure_known(route.service, route.tenant)
                if inst is None:
                    return await self._reply(conn, req, 404,
                                             f"tenant {route.tenant} has no instance here")
            else:
                if route.server_status != "online" or not route.address:
                    return await self._reply(conn, req, 502, f"tenant {route.tenant} is on server "
                                             f"{route.server}, which is offline")
                node = self.nodes.get(route.address)
                if node is None:
                    node = self.nodes[route.address] = node_upstream(route.address)
                up = node
                label = f"server:{route.server}"
                extra = (b"X-Tenant-ID: " + route.tenant.encode() + b"\r\nX-Slum-Router: "
                         + (route.token or "").encode() + b"\r\n")
        else:
            return await self._reply(conn, req, 404, f"unknown host {target.value}")
        if inst is not None:
            label = inst.id
            extra = b"X-Tenant-ID: " + inst.name.encode() + b"\r\n"
            inst.streams += 1
            inst.touch()
        try:
            if inst is None:
                ex = await forward(conn, req, up, self.pool, extra, max_body=self.options.max_body)
            else:
                ex = await self._to_instance(conn, req, inst, extra)
        except UpstreamError as e:
            return await self._reply(conn, req, e.status, e.message, label=label, started=started)
        except SlumError as e:
            return await self._reply(conn, req, e.status, e.message, retry=True, label=label,
                                     started=started)
        finally:
            if inst is not None:
                inst.streams -= 1
                inst.touch()
        if self.on_request is not None:
            self.on_request(label, req.method, ex.status, time.perf_counter() - started,
                            req.path)
        return ex.keep_alive

    async def _to_instance(self, conn: ClientConnection, req: Request, inst: Instance,
                           extra: bytes) -> Exchange:
        for attempt in (1, 2):
            if not inst.serving:
                assert self.supervisor is not None
                await self.supervisor.wake(inst)
            pid = inst.pid
            up = Upstream((inst.port, pid), inst.port or 0, unix_path=inst.unix_path,
                          response_timeout_s=inst.service.request_timeout)
            try:
                return await forward(conn, req, up, self.pool, extra,
                                     max_body=self.options.max_body)
            except UpstreamError as e:
                if not e.refused or attempt == 2:
                    raise
                # The process may have just exited, before the supervisor saw it: if its state
                # moves within a moment, wake it again and retry once; nothing was sent yet.
                with trio.move_on_after(RACE_WINDOW_S):
                    while inst.serving and inst.pid == pid:
                        await inst.wait_changed()
                if inst.serving and inst.pid == pid:
                    raise
        raise AssertionError("unreachable")

    async def _reply(self, conn: ClientConnection, req: Request, status: int, text: str, *,
                     location: str | None = None, retry: bool = False, label: str = "edge",
                     started: float | None = None) -> bool:
        # A body we did not read would be taken for the next request: close instead.
        keep = req.keep_alive and req.content_length <= 0 and not req.chunked
        extra = []
        if location:
            extra.append(("Location", location))
        if retry and status == 503:
            extra.append(("Retry-After", "2"))
        await conn.stream.send_all(simple_response(status, text, keep_alive=keep, extra=extra))
        if self.on_request is not None:
            elapsed = time.perf_counter() - started if started is not None else 0.0
            self.on_request(label, req.method, status, elapsed, req.path)
        return keep
