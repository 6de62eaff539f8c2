"""An async client for etcd v3's JSON gateway (the grpc-gateway every etcd serves on its client
port), on httpx, so that it runs in trio tasks without threads.

Why not a gRPC client: etcd's gateway is part of every etcd since 3.3, it needs nothing beyond the
HTTP client slum already has, and the registry's traffic is small (a watch stream, a lease
keep-alive, a few writes per operator action). The gateway speaks protobuf's JSON mapping: bytes
(keys, values) are base64, 64-bit integers are strings, and fields at their default value (0,
false, empty, the first enum value such as a PUT event) are left out.

Endpoints fail over: a request that cannot reach a member, or that a member answers with
"unavailable" (no leader, its own timeout), is tried on the next one; when none answers, the
caller gets `Unavailable` (503) with the reason. Errors that are not about reachability (a
compacted revision, a bad request) are not retried.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httptools
import httpx
import trio

from slum.errors import BadRequest, SlumError, Unavailable

log = logging.getLogger("slum.fleet.etcd")

REQUEST_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 1.0

# gRPC status codes the gateway puts in "code": these mean "this member cannot answer now",
# so another member may.
_RETRY_CODES = {
    1,  # CANCELLED (the member is stopping)
    4,  # DEADLINE_EXCEEDED
    8,  # RESOURCE_EXHAUSTED (too many requests)
    13,  # INTERNAL
    14,  # UNAVAILABLE: no leader, not started, stopping
}
OUT_OF_RANGE = 11  # a revision that has been compacted away
# What members answer while they elect a new leader; worth another try within ELECTION_S.
_ELECTING = ("leader changed", "no leader", "election")
ELECTION_S = 3.0


class EtcdError(SlumError):
    """etcd answered, and refused (not a reachability problem)."""

    status = 502

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class Compacted(EtcdError):
    """The revision asked for has been compacted: the caller must read everything again."""

    def __init__(self, message: str, compact_revision: int = 0) -> None:
        super().__init__(message, OUT_OF_RANGE)
        self.compact_revision = compact_revision


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that makes [prefix, end) every key starting with prefix."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


def _key(key: bytes | str) -> bytes:
    return key.encode() if isinstance(key, str) else key


@dataclass(frozen=True)
class KV:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @classmethod
    def from_json(cls, kv: dict[str, Any]) -> KV:
        return cls(
            key=unb64(kv.get("key")),
            value=unb64(kv.get("value")),
            create_revision=int(kv.get("create_revision", 0)),
            mod_revision=int(kv.get("mod_revision", 0)),
            version=int(kv.get("version", 0)),
            lease=int(kv.get("lease", 0)),
        )


@dataclass(frozen=True)
class RangeResult:
    kvs: list[KV]
    revision: int  # the store's revision when the range was read
    count: int
    more: bool = False


@dataclass(frozen=True)
class Event:
    type: Literal["PUT", "DELETE"]
    kv: KV


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction. target: MOD (mod_revision), CREATE (create_revision),
    VERSION or VALUE; a key that does not exist has revision and version 0."""

    key: bytes | str
    target: Literal["MOD", "CREATE", "VERSION", "VALUE"]
    result: Literal["EQUAL", "NOT_EQUAL", "GREATER", "LESS"]
    value: int | bytes | str

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": b64(_key(self.key)), "target": self.target, "result": self.result}
        if self.target == "VALUE":
            assert not isinstance(self.value, int)
            out["value"] = b64(_key(self.value))
        else:
            field_name = {"MOD": "mod_revision", "CREATE": "create_revision", "VERSION": "version"}[
                self.target
            ]
            out[field_name] = str(self.value)
        return out

    @classmethod
    def absent(cls, key: bytes | str) -> Compare:
        return cls(key, "CREATE", "EQUAL", 0)

    @classmethod
    def unchanged(cls, key: bytes | str, mod_revision: int) -> Compare:
        """The key is as it was read (mod_revision 0: still absent)."""
        return cls(key, "MOD", "EQUAL", mod_revision)


@dataclass(frozen=True)
class Put:
    key: bytes | str
    value: bytes | str
    lease: int = 0

    def to_json(self) -> dict[str, Any]:
        req: dict[str, Any] = {"key": b64(_key(self.key)), "value": b64(_key(self.value))}
        if self.lease:
            req["lease"] = str(self.lease)
        return {"request_put": req}


def _key_range(key: bytes | str, prefix: bool) -> dict[str, Any]:
    """One key, or with `prefix` every key under it (etcd's half-open [key, range_end))."""
    req: dict[str, Any] = {"key": b64(_key(key))}
    if prefix:
        req["range_end"] = b64(prefix_end(_key(key)))
    return req


@dataclass(frozen=True)
class Delete:
    key: bytes | str
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"request_delete_range": _key_range(self.key, self.prefix)}


@dataclass(frozen=True)
class Get:
    key: bytes | str
    prefix: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"request_range": _key_range(self.key, self.prefix)}


Op = Put | Delete | Get


@dataclass(frozen=True)
class TxnResult:
    succeeded: bool
    revision: int
    # One entry per op of the branch that ran: for a Get, its KVs; otherwise an empty list.
    responses: list[list[KV]] = field(default_factory=list)


@dataclass(frozen=True)
class WatchBatch:
    """What one watch response carries: events at increasing revisions, and the store's revision
    (header) when it was sent. A batch with no events is the watch's creation or a progress
    notification."""

    revision: int
    events: list[Event]


def _parse_events(result: dict[str, Any]) -> list[Event]:
    return [
        Event("DELETE" if e.get("type") == "DELETE" else "PUT", KV.from_json(e.get("kv", {})))
        for e in result.get("events", ())
    ]


def parse_endpoints(spec: str) -> list[str]:
    """etcd://host:port[,host:port...] (or http://...) -> ["http://host:port", ...]."""
    return parse_registry_url(spec)[0]


def parse_registry_url(spec: str, default_prefix: str = "/slum/") -> tuple[list[str], str]:
    """etcd://host:port[,host:port...][/prefix/] -> (["http://host:port", ...], "/prefix/")."""
    if not isinstance(spec, str):
        raise BadRequest("the registry must be a string: etcd://host:port[,host:port...]")
    text = spec.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "etcd", text
    if scheme not in ("etcd", "http"):
        raise BadRequest(f"invalid registry {spec!r}: expected etcd://host:port[,host:port...]")
    hosts, slash, path = rest.partition("/")
    prefix = default_prefix
    if slash and path.strip("/"):
        prefix = "/" + path.strip("/") + "/"
        if any(ord(ch) < 33 or ord(ch) == 127 or ch in "?#" for ch in prefix):
            raise BadRequest(f"invalid registry {spec!r}: the key prefix {prefix!r}")
    out = []
    for part in hosts.split(","):
        hostport = part.strip()
        if not hostport:
            continue
        host, colon, port = hostport.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadRequest(f"invalid etcd endpoint {hostport!r} in {spec!r}: expected host:port")
        if any(ch in hostport for ch in "?#@ \t\\"):
            raise BadRequest(f"invalid etcd endpoint {hostport!r}: expected host:port")
        out.append(f"http://{hostport}")
    if not out:
        raise BadRequest(f"invalid registry {spec!r}: no etcd endpoint")
    return out, prefix


class Etcd:
    """etcd v3 over its JSON gateway, with several endpoints tried in turn."""

    def __init__(self, endpoints: Sequence[str], *, timeout: float = REQUEST_TIMEOUT_S) -> None:
        if not endpoints:
            raise BadRequest("no etcd endpoint")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._current = 0  # the endpoint that answered last: tried first next time
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(CONNECT_TIMEOUT_S, timeout)),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
            # etcd is reached directly; a proxy from the environment would only be in the way.
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Etcd:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _order(self) -> list[int]:
        n = len(self.endpoints)
        return [(self._current + i) % n for i in range(n)]

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST body to /v3/<path> on the first member that answers; Unavailable if none does.
        While the members are electing a leader (one was lost), the round is tried again for up
        to ELECTION_S: an election is over in about a second, a lost quorum is not."""
        started = trio.current_time()
        while True:
            reasons: list[str] = []
            data = await self._round(path, body, reasons)
            if data is not None:
                return data
            electing = any(marker in r for r in reasons for marker in _ELECTING)
            if not electing or trio.current_time() - started > ELECTION_S:
                raise Unavailable("etcd unavailable: " + "; ".join(reasons))
            await trio.sleep(0.1)

    async def _round(self, path: str, body: dict[str, Any], reasons: list[str]) -> dict[str, Any] | None:
        for i in self._order():
            url = self.endpoints[i]
            try:
                resp = await self._http.post(f"{url}/v3/{path}", json=body)
            except httpx.TimeoutException:
                reasons.append(f"{url}: no answer within {self.timeout:g} s")
                continue
            except httpx.HTTPError as e:
                reasons.append(f"{url}: {_describe(e)}")
                continue
            data = _json(resp)
            if resp.status_code == 200 and "error" not in data:
                self._current = i
                return data
            code = int(data.get("code", 0)) if isinstance(data.get("code"), int | str) else 0
            message = _error_message(resp)
            if code in _RETRY_CODES or (code == 0 and resp.status_code >= 500):
                reasons.append(f"{url}: {message}")
                continue
            if code == OUT_OF_RANGE:
                raise Compacted(f"etcd: {message}")
            raise EtcdError(f"etcd refused {path}: {message}", code)
        return None

    async def range(
        self,
        key: bytes | str,
        *,
        prefix: bool = False,
        revision: int = 0,
        limit: int = 0,
        serializable: bool = False,
    ) -> RangeResult:
        """Keys [key] or [key*]; serializable reads the member's local copy (no quorum needed,
        possibly stale), the default is linearizable."""
        body = _key_range(key, prefix)
        if revision:
            body["revision"] = str(revision)
        if limit:
            body["limit"] = str(limit)
        if serializable:
            body["serializable"] = True
        data = await self.call("kv/range", body)
        return RangeResult(
            kvs=[KV.from_json(kv) for kv in data.get("kvs", ())],
            revision=_revision(data),
            count=int(data.get("count", 0)),
            more=bool(data.get("more", False)),
        )

    async def get(self, key: bytes | str) -> KV | None:
        result = await self.range(key)
        return result.kvs[0] if result.kvs else None

    async def put(self, key: bytes | str, value: bytes | str, *, lease: int = 0) -> int:
        """Returns the revision of the write."""
        body = Put(key, value, lease).to_json()["request_put"]
        return _revision(await self.call("kv/put", body))

    async def delete(self, key: bytes | str, *, prefix: bool = False) -> int:
        """Returns how many keys were deleted."""
        body = Delete(key, prefix).to_json()["request_delete_range"]
        return int((await self.call("kv/deleterange", body)).get("deleted", 0))

    async def txn(
        self, compare: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op] = ()
    ) -> TxnResult:
        """All compares hold -> success ops, else failure ops; atomically, at one revision."""
        data = await self.call(
            "kv/txn",
            {
                "compare": [c.to_json() for c in compare],
                "success": [op.to_json() for op in success],
                "failure": [op.to_json() for op in failure],
            },
        )
        responses = []
        for r in data.get("responses", ()):
            rng = r.get("response_range")
            responses.append([KV.from_json(kv) for kv in rng.get("kvs", ())] if rng else [])
        return TxnResult(bool(data.get("succeeded", False)), _revision(data), responses)

    async def grant(self, ttl: int) -> int:
        """A new lease of ttl seconds; returns its id."""
        data = await self.call("lease/grant", {"TTL": str(ttl)})
        return int(data["ID"])

    async def keepalive(self, lease: int) -> int:
        """Renews the lease once; returns its remaining TTL, 0 when it has already expired."""
        data = await self.call("lease/keepalive", {"ID": str(lease)})
        result = data.get("result", data)
        if "error" in result:
            raise Unavailable(f"etcd lease keep-alive: {result['error']}")
        return int(result.get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        try:
            await self.call("lease/revoke", {"ID": str(lease)})
        except EtcdError as e:
            if "not found" not in e.message:
                raise

    async def status(self) -> list[dict[str, Any]]:
        """Each member's own view (leader, revision, version), or why it did not answer."""
        out: list[dict[str, Any]] = []
        for url in self.endpoints:
            try:
                resp = await self._http.post(f"{url}/v3/maintenance/status", json={})
                data = _json(resp)
                if resp.status_code != 200 or "error" in data:
                    out.append({"endpoint": url, "error": str(data.get("message") or resp.text)})
                    continue
                out.append(
                    {
                        "endpoint": url,
                        "version": data.get("version"),
                        "leader": data.get("leader", "0") != "0",
                        "revision": _revision(data),
                    }
                )
            except httpx.HTTPError as e:
                out.append({"endpoint": url, "error": _describe(e)})
        return out

    @asynccontextmanager
    async def watch(
        self,
        key: bytes | str,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        require_leader: bool = True,
        progress_notify: bool = True,
    ) -> AsyncIterator[WatchStream]:
        """A watch stream on one member (the first that accepts it), as an async iterator of
        batches.

        start_revision: the first revision to send (last seen + 1 to catch up after an outage).
        require_leader: the member ends the stream when it loses its leader (instead of keeping
        a watch that can no longer see changes), so that the caller learns about a lost quorum.
        Iterating raises Unavailable when the stream breaks or ends, and Compacted when the
        start revision is gone.
        """
        create = _key_range(key, prefix)
        if start_revision:
            create["start_revision"] = str(start_revision)
        if progress_notify:
            create["progress_notify"] = True
        body = json.dumps({"create_request": create}).encode()
        reasons: list[str] = []
        for i in self._order():
            url = self.endpoints[i]
            try:
                stream = await WatchStream.open(url, body, require_leader, self.timeout)
            except Unavailable as e:
                reasons.append(e.message)
                continue
            try:
                self._current = i
                yield stream
                return
            finally:
                await stream.aclose()
        raise Unavailable("etcd unavailable (watch): " + "; ".join(reasons))


MAX_WATCH_LINE = 64 * 1024 * 1024  # one watch response (a batch of events) at most


class WatchStream:
    """One /v3/watch response read straight from a trio socket.

    Why not httpx here: its streamed body is a chain of async generators, and a watch is never
    read to its end; closing it early leaves generators for the garbage collector (a warning
    each time). A socket, httptools' parser (which the edge already uses) and a line buffer close
    deterministically and are cancelled cleanly.
    """

    def __init__(self, sock: trio.abc.Stream, url: str) -> None:
        self._sock = sock
        self.url = url
        self._parser = httptools.HttpResponseParser(self)
        self._buf = bytearray()
        self._headers_done = False
        self._ended = False

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._buf += body

    def on_message_complete(self) -> None:
        self._ended = True

    @classmethod
    async def open(cls, url: str, body: bytes, require_leader: bool, limit_s: float) -> WatchStream:
        host, port = _host_port(url)
        try:
            with trio.fail_after(min(CONNECT_TIMEOUT_S, limit_s)):
                sock = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError) as e:
            why = "connection refused" if _refused(e) else "cannot connect"
            raise Unavailable(f"{url}: {why}") from None
        stream = cls(sock, url)
        try:
            with trio.fail_after(limit_s):
                await stream._start(host, port, body, require_leader)
        except trio.TooSlowError:
            await stream.aclose()
            raise Unavailable(f"{url}: the watch was not created within {limit_s:g} s") from None
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def _start(self, host: str, port: int, body: bytes, require_leader: bool) -> None:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = (
            f"POST /v3/watch HTTP/1.1\r\nHost: {authority}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
        )
        if require_leader:
            # grpc-gateway passes Grpc-Metadata-* headers on as gRPC metadata; etcd reads
            # "hasleader" to refuse (and later cancel) a watch on a member without a leader.
            head += "Grpc-Metadata-hasleader: true\r\n"
        await self._send(head.encode() + b"\r\n" + body)
        while not self._headers_done:
            await self._receive()
        status = self._parser.get_status_code()
        if status != 200:
            while not self._ended and len(self._buf) < 4096:
                await self._receive()
            raise Unavailable(f"{self.url}: {_error_text(bytes(self._buf), status)}")

    async def _send(self, data: bytes) -> None:
        try:
            await self._sock.send_all(data)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            raise Unavailable(f"{self.url}: watch broke: {e or type(e).__name__}") from None

    async def _receive(self) -> None:
        if self._ended:
            raise Unavailable(f"etcd {self.url}: watch ended")
        try:
            data = await self._sock.receive_some(65536)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as e:
            raise Unavailable(f"etcd {self.url}: watch broke: {e or type(e).__name__}") from None
        if not data:
            raise Unavailable(f"etcd {self.url}: watch broke: the member closed the connection")
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            raise Unavailable(f"etcd {self.url}: unreadable watch response: {e}") from None

    async def _line(self) -> bytes:
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                if line.strip():
                    return line
                continue
            if len(self._buf) > MAX_WATCH_LINE:
                raise Unavailable(f"etcd {self.url}: a watch response over {MAX_WATCH_LINE} bytes")
            if self._ended and self._buf.strip():
                line = bytes(self._buf)
                self._buf.clear()
                return line
            await self._receive()

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> WatchBatch:
        result = _result(await self._line(), self.url)
        if result.get("canceled"):
            _raise_canceled(result, self.url)
        return WatchBatch(_revision(result), _parse_events(result))

    async def aclose(self) -> None:
        await self._sock.aclose()


def _host_port(url: str) -> tuple[str, int]:
    hostport = url.partition("://")[2].rstrip("/")
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def _error_text(body: bytes, status: int) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return f"HTTP {status}"
    if not isinstance(data, dict):
        return f"HTTP {status}"
    err = data.get("error")
    if isinstance(err, dict):  # a stream's error: {"error": {"grpc_code", "message", ...}}
        err = err.get("message")
    return str(data.get("message") or err or f"HTTP {status}")


def _result(line: bytes, url: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except ValueError:
        raise Unavailable(f"etcd {url}: unreadable watch response {line[:100]!r}") from None
    if not isinstance(data, dict):
        raise Unavailable(f"etcd {url}: unreadable watch response {line[:100]!r}")
    if "error" in data:
        err = data["error"]
        message = err.get("message") if isinstance(err, dict) else err
        raise Unavailable(f"etcd {url}: watch ended: {message}")
    result = data.get("result", {})
    return result if isinstance(result, dict) else {}


def _raise_canceled(result: dict[str, Any], url: str) -> None:
    compact = int(result.get("compact_revision", 0))
    if compact:
        raise Compacted(f"etcd {url}: the watch's start revision is compacted (at {compact})", compact)
    reason = result.get("cancel_reason") or "canceled by the member"
    raise Unavailable(f"etcd {url}: watch ended: {reason}")


def _revision(data: dict[str, Any]) -> int:
    header = data.get("header") or {}
    return int(header.get("revision", 0))


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {"error": resp.text[:200] or f"HTTP {resp.status_code}"}
    return data if isinstance(data, dict) else {"error": "unexpected answer"}


def _error_message(resp: httpx.Response) -> str:
    return _error_text(resp.content, resp.status_code)


def _describe(e: BaseException) -> str:
    if isinstance(e, httpx.ConnectError):
        # httpcore says "All connection attempts failed"; the cause says why.
        return "connection refused" if _refused(e) else "cannot connect"
    return str(e) or type(e).__name__


def _refused(e: BaseException | None) -> bool:
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, ConnectionRefusedError) or "refused" in str(e).lower():
            return True
        if isinstance(e, BaseExceptionGroup):
            return any(_refused(sub) for sub in e.exceptions)
        e = e.__cause__ or e.__context__
        seen += 1
    return False


def lease_ttl_for(interval_s: float) -> int:
    """A lease TTL in whole seconds that survives two missed keep-alives at interval_s."""
    return max(2, math.ceil(interval_s * 3))
