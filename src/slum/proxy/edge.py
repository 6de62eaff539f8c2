"""The edge listener: accepts HTTP/1.1 connections, routes each request by Host, wakes the
instance if it sleeps, and forwards. slum's own /api and /_/ go to the web app on the control
socket like any other upstream, marked so the web app knows they came from the network."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from slum.errors import SlumError
from slum.proxy import io, weights
from slum.proxy.forward import Exchange, Pool, Upstream, UpstreamError, forward
from slum.proxy.http import ClientConnection, ClientError, ClientGone, Request, simple_response
from slum.proxy.routing import RouteTable, is_own_path
from slum.proxy.stats import Counters, EdgeStatistics
from slum.proxy.trust import RouterTrust
from slum.supervisor import Instance, Supervisor
from slum.supervisor.lease import Endpoint

log = logging.getLogger("slum.edge")
LINGER_S = 2.0  # after refusing a request whose body is unread, read (and drop) it this long
TIMEOUT_TICK_S = 0.25
FD_RESERVE = 256  # descriptors kept for the database, children's pipes, the web app
# (target label, method, status, seconds, path): metrics recording, microseconds, no await
RequestHook = Callable[[str, bytes, int, float, bytes], None]


@dataclass
class EdgeOptions:
    max_body: int = 0
    default_instance: str | None = None
    connect_timeout_s: float = 5
    response_timeout_s: float = 60
    idle_timeout_s: float = 300
    trust_router: RouterTrust | None = None
    header_timeout_s: float = 30
    keepalive_timeout_s: float = 60
    body_timeout_s: float = 60
    max_connections: int = 0  # 0: derived from the open-files limit
    pool_idle_s: float = 1.5
    # Is this peer one of `trusted_proxies`? (its X-Forwarded-Proto is believed)
    trusted_proxy: Callable[[str], bool] | None = None


def node_upstream(address: str) -> Upstream:
    """http://host:port of a remote slum node -> where its edge listens."""
    rest = address.partition("://")[2] or address
    hostport = rest.split("/", 1)[0]
    if hostport.startswith("["):
        host, _, port = hostport[1:].partition("]:")
    else:
        host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "80")
    return Upstream(("node", address), int(port or 80), host=host)


def connection_cap(configured: int) -> int:
    """Raise the open-files limit as far as allowed; the cap is what fits in it: a client
    connection and its upstream connection take two descriptors."""
    limit = io.raise_fd_limit()
    derived = max(16, (limit - FD_RESERVE) // 2)
    return min(configured, derived) if configured > 0 else derived


def _refused(error: Exception) -> bool:
    """Refused before anything was sent: safe to send again to a process that just replaced it."""
    return isinstance(error, UpstreamError) and error.refused


class Edge:
    """The containment unit is the client connection: whatever a client or an upstream does,
    handle() answers, counts, logs or closes that one connection and never raises."""

    def __init__(
        self,
        table: RouteTable,
        supervisor: Supervisor | None,
        control_socket: str,
        options: EdgeOptions | None = None,
        on_request: RequestHook | None = None,
    ) -> None:
        self.table = table
        self.supervisor = supervisor
        self.instances: dict[str, Instance] = supervisor.instances if supervisor else {}
        self.options = options or EdgeOptions()
        o = self.options
        self.pool = Pool(o.connect_timeout_s, o.response_timeout_s, o.idle_timeout_s, o.pool_idle_s)
        self.web = Upstream(("web",), unix_path=control_socket)
        self.on_request = on_request
        self.nodes: dict[str, Upstream] = {}
        self.gate = io.Gate(o.max_connections or 1 << 30)
        self.counters = Counters()
        self.draining = False
        self._open: set[ClientConnection] = set()
        self._accepting: trio.CancelScope | None = None
        self._all_closed = trio.Event()

    @property
    def connections(self) -> int:
        return self.gate.open

    def statistics(self) -> EdgeStatistics:
        return self.counters.snapshot(self.gate.open, self.gate.limit, self.pool.idle_count(), self.draining)

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[list[socket.socket]] = (trio.TASK_STATUS_IGNORED),
    ) -> None:
        self.gate.limit = connection_cap(self.options.max_connections)
        listeners = io.listen_tcp(host, port)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sweep_pool)
                nursery.start_soon(self._expire_waits)
                with trio.CancelScope() as self._accepting:
                    async with trio.open_nursery() as accepting:
                        for listener in listeners:
                            accepting.start_soon(io.serve, listener, self.handle, nursery, self.gate)
                        task_status.started(listeners)
                # Draining: no more accepts; the connections left finish in `nursery`.
                for listener in listeners:
                    listener.close()
                await trio.sleep_forever()
        finally:
            for listener in listeners:
                listener.close()

    async def _sweep_pool(self) -> None:
        while True:
            await trio.sleep(max(self.pool.keepalive_s, 0.5))
            self.pool.sweep()

    async def _expire_waits(self) -> None:
        """Timeouts of client connections, to within TIMEOUT_TICK_S."""
        while True:
            await trio.sleep(TIMEOUT_TICK_S)
            now = trio.current_time()
            for conn in self._open:
                conn.expire(now)

    async def drain(self, grace_s: float) -> None:
        """Stop accepting; let requests in flight finish for up to grace_s (keep-alive
        connections close after their current response; idle ones at once)."""
        self.draining = True
        if self._accepting is not None:
            self._accepting.cancel()
        for conn in list(self._open):
            # Idle between requests, or connected without a request yet: nothing in flight.
            if conn.waiting == "idle" or (conn.waiting == "head" and not conn.requests):
                conn.scope.cancel()
        with trio.move_on_after(grace_s):
            if self.gate.open:
                await self._all_closed.wait()

    async def handle(self, stream: io.Connection) -> None:
        o = self.options
        conn = ClientConnection(stream, o.header_timeout_s, o.keepalive_timeout_s, o.body_timeout_s)
        if o.trusted_proxy is not None:
            conn.via_proxy = o.trusted_proxy(conn.peer)
        self.counters.accepted += 1
        self._open.add(conn)
        try:
            with conn.scope:
                await self._serve(conn)
            if conn.scope.cancelled_caught and (not self.draining or conn.waiting == "upstream"):
                await self._timed_out(conn)
        except (ClientGone, OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception as e:  # a bug: contained to this connection, and said
            self.counters.upstream_fault("edge", f"internal error: {type(e).__name__}: {e}")
        finally:
            self._open.discard(conn)
            conn.release()
            stream.close()
            self.gate.leave()
            if self.draining and not self.gate.open:
                self._all_closed.set()

    async def _timed_out(self, conn: ClientConnection) -> None:
        status, text = 408, "request timeout"
        if conn.waiting == "upstream":
            timeout_s = self.pool.response_timeout_s
            text = f"upstream sent no response within {timeout_s:g}s"
            self.counters.upstream_fault(conn.label, text)
            status = 504
            req = conn.request
            if self.on_request is not None and req is not None:
                self.on_request(conn.label, req.method, status, timeout_s, req.path)
        else:
            self.counters.timeouts += 1
            if conn.waiting == "idle":
                return
        if not conn.responded:
            with trio.move_on_after(1):
                await conn.stream.send_all(simple_response(status, text, keep_alive=False))

    async def _serve(self, conn: ClientConnection) -> None:
        while True:
            try:
                req = await conn.next_request()
            except ClientError as e:
                self.counters.client_errors += 1
                await conn.stream.send_all(simple_response(e.status, e.message, keep_alive=False))
                await self._linger(conn)
                return
            if req is None:
                return
            if not await self.dispatch(conn, req):
                return
            # Sends and receives that need not wait do not yield: yield once per request
            # so that a busy keep-alive connection cannot starve the others.
            await trio.lowlevel.checkpoint()
            if self.draining:
                return

    async def _linger(self, conn: ClientConnection) -> None:
        """Closing with unread bytes would reset the connection and could destroy the answer
        before the client reads it: stop sending, drop what still comes, for a moment."""
        sock = conn.stream.sock
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        with trio.move_on_after(LINGER_S):
            left = 64 * 1024 * 1024
            while left > 0:
                data = await conn.stream.receive_some(65536)
                if not data:
                    break
                left -= len(data)

    async def dispatch(self, conn: ClientConnection, req: Request) -> bool:
        started = time.perf_counter()
        if req.bad is not None:
            self.counters.client_errors += 1
            return await self._reply(conn, req, req.bad.status, req.bad.message)
        if not req.host:
            self.counters.client_errors += 1
            return await self._reply(conn, req, 400, "missing Host header")
        if self.draining:
            req.keep_alive = False
        trust = self.options.trust_router
        if (
            req.router_token
            and req.tenant_hint
            and trust is not None
            and await trust.check(req.router_token.decode("latin-1"), conn.peer)
        ):
            # Routed here by a router that proved itself: the tenant it names is ours to serve.
            target = self.table.tenant_target(req.tenant_hint.decode("latin-1"))
        else:
            target = self.table.resolve(req.host.decode("latin-1"))
        kind = target.kind
        inst: Instance | None = None
        up = self.web
        label = kind
        extra = b""
        app = True
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
                extra, label, app = b"X-Slum-Edge: 1\r\n", "slum", False
                if req.upgrade:
                    # Never to slum's web app: an h2c upgrade would open an HTTP/2 connection
                    # whose streams carry none of the edge's markers.
                    req.upgrade = req.keep_alive = False
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
                    return await self._reply(conn, req, 404, f"tenant {route.tenant} has no instance here")
            else:
                if route.server_status != "online" or not route.address:
                    return await self._reply(
                        conn, req, 502, f"tenant {route.tenant} is on server {route.server}, which is offline"
                    )
                node = self.nodes.get(route.address)
                if node is None:
                    try:
                        node = node_upstream(route.address)
                    except ValueError:
                        return await self._reply(
                            conn, req, 502, f"server {route.server} has an invalid address"
                        )
                    self.nodes[route.address] = node
                up = node
                label = f"server:{route.server}"
                extra = (
                    b"X-Tenant-ID: "
                    + route.tenant.encode()
                    + b"\r\nX-Slum-Router: "
                    + (route.token or "").encode()
                    + b"\r\n"
                )
        else:
            return await self._reply(conn, req, 404, f"unknown host {target.value}")
        if inst is not None:
            label = inst.id
            extra = b"X-Tenant-ID: " + inst.name.encode() + b"\r\n"
        conn.label = label
        try:
            if inst is None:
                ex = await forward(conn, req, up, self.pool, extra, max_body=self.options.max_body, app=app)
            else:
                ex = await self._to_instance(conn, req, inst, extra)
        except UpstreamError as e:
            if not e.refused or e.status != 502:
                self.counters.upstream_fault(label, e.message)
            else:
                self.counters.upstream[label] = self.counters.upstream.get(label, 0) + 1
            if conn.responded:
                return False
            return await self._reply(conn, req, e.status, e.message, label=label, started=started)
        except ClientError as e:
            self.counters.client_errors += 1
            if conn.responded:
                return False
            return await self._reply(conn, req, e.status, e.message, label=label, started=started)
        except SlumError as e:
            return await self._reply(conn, req, e.status, e.message, retry=True, label=label, started=started)
        if ex.fault:
            self.counters.upstream_fault(label, ex.fault)
        if self.on_request is not None:
            self.on_request(label, req.method, ex.status, time.perf_counter() - started, req.path)
        if not ex.keep_alive and not ex.body_done and not ex.streaming and ex.status:
            await self._linger(conn)
        return ex.keep_alive

    async def _to_instance(
        self, conn: ClientConnection, req: Request, inst: Instance, extra: bytes
    ) -> Exchange:
        assert self.supervisor is not None
        max_body = self.options.max_body

        def call(at: Endpoint) -> Awaitable[Exchange]:
            up = Upstream(
                (at.port, at.pid), at.port, unix_path=at.unix_path, response_timeout_s=at.request_timeout
            )
            return forward(conn, req, up, self.pool, extra, max_body=max_body)

        async with self.supervisor.lease(inst) as lease:
            return await lease.send(call, _refused)

    async def _reply(
        self,
        conn: ClientConnection,
        req: Request,
        status: int,
        text: str,
        *,
        location: str | None = None,
        retry: bool = False,
        label: str = "edge",
        started: float | None = None,
    ) -> bool:
        # A body we did not read would be taken for the next request: close instead.
        keep = req.keep_alive and not req.has_body and not self.draining
        extra = []
        if location:
            extra.append(("Location", location))
        if retry and status == 503:
            extra.append(("Retry-After", "2"))
        conn.responded = True
        await conn.stream.send_all(simple_response(status, text, keep_alive=keep, extra=extra))
        if self.on_request is not None:
            elapsed = time.perf_counter() - started if started is not None else 0.0
            self.on_request(label, req.method, status, elapsed, req.path)
        if not keep and req.has_body:
            await self._linger(conn)
        return keep
