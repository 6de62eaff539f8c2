"""Who is asking, and what they may do.

Trust comes from the socket: a request on the control socket (mode 0600) is the local operator;
everything the edge forwards arrives on a socket of its own and must authenticate, with a Bearer
token or a session cookie. Tokens cost the attacker, not slum: what cannot be a token is refused
without Argon2, a well-formed token names the one hash to check, Argon2 runs at most
ARGON2_SLOTS at a time behind a short queue (429 past it), and failures drain a per-client token
bucket (429 until it refills). A token may be scoped to one tenant: `g.scope` holds that tenant
id (None = everything), and the views ask scope_tenant / require_unscoped / check_instance.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import trio

from slum.errors import ConfigError, SlumError, Unauthorized, Unavailable
from slum.store import tokens as store_tokens
from slum.store.db import Store
from slum.store.logs import LogQuery

# Quart's request and g are imported in the functions that use them: slum's start imports this
# module (Listener, Authenticator), and Quart (~16 MB of RSS) loads with the web app at the first
# request to it (specs/performance.md).

SESSION_COOKIE = "slum_session"
# The __Host- prefix (Secure, Path=/, no Domain: no sibling subdomain can set or shadow it) is
# only possible where the browser accepts Secure cookies: over https.
SECURE_SESSION_COOKIE = "__Host-slum_session"
SESSION_COOKIES = (SECURE_SESSION_COOKIE, SESSION_COOKIE)
SESSION_TTL_S = 7 * 24 * 3600
NO_TOKEN = "no API token yet: run `slum token-gen` on the server, then use it as a Bearer token"
TRUSTED_SCOPE_KEY = "slum.trusted"
MAX_TOKEN_LEN = 200
ARGON2_SLOTS = 2
ARGON2_QUEUE = 8
BUCKET_BURST = 10.0  # failures allowed at once from one client
BUCKET_REFILL_PER_S = 0.5  # then one more every two seconds
BUCKET_ENTRIES = 10_000  # per tier (see RateLimiter)
OFFENDER_FAILURES = 3
VERIFIED_CACHE = 1024
TOUCH_EVERY_S = 60.0
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Forbidden(SlumError):
    status = 403


class TooManyRequests(SlumError):
    status = 429

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after + 0.999))


@dataclass(frozen=True)
class Identity:
    token_id: int | None  # None: the local operator on the control socket
    tenant: str | None  # the token's scope; None = everything


OPERATOR = Identity(None, None)


# --- where a request comes from ---
class Proxies:
    """`trusted_proxies`: X-Forwarded-For and X-Forwarded-Proto are believed only from these."""

    def __init__(self, entries: list[str] | tuple[str, ...] = ()) -> None:
        self.networks = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
            except ValueError:
                raise ConfigError(
                    f"settings.trusted_proxies: {entry!r} is not an IP address or "
                    "network (e.g. 127.0.0.1 or 10.0.0.0/8)"
                ) from None

    def trusted(self, address: str) -> bool:
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def client(self, headers: Any) -> str:
        """The client's address: the edge appends the peer it saw as the last X-Forwarded-For
        entry; an entry before it is believed only while the one after it is a trusted proxy."""
        hops = [h.strip() for h in str(headers.get("x-forwarded-for", "")).split(",")]
        hops = [h for h in hops if h]
        if not hops:
            return "local"
        i = len(hops) - 1
        while i > 0 and self.trusted(hops[i]):
            i -= 1
        return hops[i]

    def https(self, headers: Any) -> bool:
        """Did the browser talk https? Its Origin says so (a browser does not lie about where
        its page is); a trusted proxy's X-Forwarded-Proto says so."""
        if str(headers.get("origin", "")).startswith("https://"):
            return True
        hops = [h.strip() for h in str(headers.get("x-forwarded-for", "")).split(",") if h.strip()]
        return (
            bool(hops)
            and self.trusted(hops[-1])
            and str(headers.get("x-forwarded-proto", "")).split(",")[0].strip() == "https"
        )


# --- the cost of guessing ---
class RateLimiter:
    """A token bucket per client: each failure takes one, they refill at BUCKET_REFILL_PER_S,
    a success forgets the client. Memory is bounded in two tiers, each evicting its oldest
    entry: one-off failures (probation) cannot push out clients that failed repeatedly
    (offenders), so a flood of distinct addresses does not wipe an attacker's bucket."""

    def __init__(
        self,
        burst: float = BUCKET_BURST,
        refill_per_s: float = BUCKET_REFILL_PER_S,
        entries: int = BUCKET_ENTRIES,
    ) -> None:
        self.burst = burst
        self.refill_per_s = refill_per_s
        self.entries = entries
        # key -> (tokens left, when, failures)
        self._probation: OrderedDict[str, tuple[float, float, int]] = OrderedDict()
        self._offenders: OrderedDict[str, tuple[float, float, int]] = OrderedDict()

    def _level(self, key: str, now: float) -> tuple[float, int]:
        entry = self._offenders.get(key) or self._probation.get(key)
        if entry is None:
            return self.burst, 0
        left, when, failures = entry
        return min(self.burst, left + (now - when) * self.refill_per_s), failures

    def retry_after(self, key: str, now: float | None = None) -> float:
        """0 if the client may try now, else the seconds until it may."""
        now = time.monotonic() if now is None else now
        left, _ = self._level(key, now)
        return 0.0 if left >= 1 else (1 - left) / self.refill_per_s

    def failed(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        left, failures = self._level(key, now)
        entry = (max(left - 1, 0.0), now, failures + 1)
        self._probation.pop(key, None)
        self._offenders.pop(key, None)
        tier = self._offenders if failures + 1 >= OFFENDER_FAILURES else self._probation
        tier[key] = entry
        while len(tier) > self.entries:
            tier.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._probation.pop(key, None)
        self._offenders.pop(key, None)

    def __len__(self) -> int:
        return len(self._probation) + len(self._offenders)


def _argon2_memory_returns() -> None:
    """Argon2's memory (one malloc of 16-64 MiB per verification) must go back to the system
    when the verification ends. glibc raises its mmap threshold after such a block is freed, so
    later ones come from per-thread arenas that keep them: with trio's worker threads that grew
    slum by hundreds of MB under a flood. A fixed threshold keeps big blocks mmapped."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, 1024 * 1024)  # M_MMAP_THRESHOLD: 1 MiB, and no longer dynamic
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


class Argon2Gate:
    """At most ARGON2_SLOTS verifications run at once (each holds its hash's memory cost);
    a legacy hash (Argon2's 64 MiB default) takes every slot. Past ARGON2_QUEUE waiting,
    the caller is told to come back later instead of queueing without bound."""

    def __init__(self, slots: int = ARGON2_SLOTS, queue: int = ARGON2_QUEUE) -> None:
        _argon2_memory_returns()
        self.slots = slots
        self.queue = queue
        self._sem = trio.Semaphore(slots)
        self._whole = trio.Lock()
        self.waiting = 0
        self.running = 0
        self.refused = 0

    async def verify(self, token_hash: str, token: str, *, heavy: bool = False) -> bool:
        if self.waiting + self.running >= self.slots + self.queue:
            self.refused += 1
            raise TooManyRequests("too many token checks at once: try again shortly", 1)
        taken = 0
        queued = True
        self.waiting += 1
        try:
            async with self._whole if heavy else contextlib.nullcontext():
                for _ in range(self.slots if heavy else 1):
                    await self._sem.acquire()
                    taken += 1
                self.waiting -= 1
                queued = False
                self.running += 1
                try:
                    return await trio.to_thread.run_sync(store_tokens.verify_hash, token_hash, token)
                finally:
                    self.running -= 1
        finally:
            if queued:
                self.waiting -= 1
            for _ in range(taken):
                self._sem.release()


# --- tokens and sessions ---
class Authenticator:
    def __init__(self, store: Store, proxies: Proxies | None = None) -> None:
        self.store = store
        self.proxies = proxies or Proxies()
        self.limiter = RateLimiter()
        self.gate = Argon2Gate()
        # SHA-256 of a verified token -> its row id: Argon2 runs once per token, not per request.
        self._verified: OrderedDict[bytes, int] = OrderedDict()
        self._touched: dict[int, float] = {}

    async def verify_token(self, token: str, client: str | None) -> Identity:
        """client None: no per-client bucket (a router's check is keyed by nothing an attacker
        could drain for everyone); the Argon2 gate still bounds the cost."""
        if len(token) > MAX_TOKEN_LEN or not token.startswith(store_tokens.PREFIX):
            return await self._refuse(client)
        digest = hashlib.sha256(token.encode()).digest()
        known = self._verified.get(digest)
        if known is not None:
            scopes = await self.store.read(store_tokens.active_scopes)
            if known in scopes:
                await self._touch(known)
                return Identity(known, scopes[known])
            self._verified.pop(digest, None)
        if client is not None:
            wait = self.limiter.retry_after(client)
            if wait:
                raise TooManyRequests("too many failed attempts: slow down", wait)
        public_id, well_formed = store_tokens.parse(token)
        if not well_formed:
            return await self._refuse(client)
        if public_id is not None:
            row = await self.store.read(lambda c: store_tokens.find(c, public_id))
            candidates = [row] if row is not None else []
        else:
            candidates = await self.store.read(store_tokens.legacy)
        for row in candidates:
            if await self.gate.verify(row.hash, token, heavy=row.legacy):
                self._verified[digest] = row.id
                while len(self._verified) > VERIFIED_CACHE:
                    self._verified.popitem(last=False)
                if client is not None:
                    self.limiter.succeeded(client)
                await self._touch(row.id)
                return Identity(row.id, row.tenant)
        return await self._refuse(client)

    async def _refuse(self, client: str | None) -> Identity:
        if client is not None:
            self.limiter.failed(client)
        await self.require_tokens()
        raise Unauthorized("invalid token")

    async def _touch(self, token_id: int) -> None:
        now = time.monotonic()
        if now - self._touched.get(token_id, -TOUCH_EVERY_S) >= TOUCH_EVERY_S:
            self._touched[token_id] = now
            await self.store.write(lambda c: store_tokens.touch(c, token_id))

    async def require_tokens(self) -> None:
        if not await self.store.read(store_tokens.has_any):
            raise Unavailable(NO_TOKEN)

    async def verify_session(self, sid: str) -> Identity:
        found = None
        if len(sid) <= MAX_TOKEN_LEN:
            found = await self.store.read(lambda c: store_tokens.session_token(c, sid))
        if found is None:
            raise Unauthorized("session expired: log in again")
        return Identity(*found)

    async def new_session(self, token_id: int) -> str:
        return await self.store.write(lambda c: store_tokens.create_session(c, token_id, SESSION_TTL_S))

    async def end_session(self, sid: str | None) -> None:
        if sid and len(sid) <= MAX_TOKEN_LEN:
            await self.store.write(lambda c: store_tokens.end_session(c, sid))

    def forget(self) -> None:
        """After a revocation: verified tokens are checked against the table again."""
        self._verified.clear()


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if not hmac.compare_digest(scheme.lower(), "bearer") or not value.strip():
        return None
    return value.strip()


def session_id() -> str | None:
    from quart import request

    for name in SESSION_COOKIES:
        sid = request.cookies.get(name)
        if sid:
            return sid
    return None


# --- the before_request check ---
async def authenticate(auth: Authenticator) -> None:
    """Decide who the request is; sets g.scope (tenant id or None) and g.identity."""
    from quart import g, request

    if request.scope.get(TRUSTED_SCOPE_KEY):
        g.identity, g.scope = OPERATOR, None
        return
    client = auth.proxies.client(request.headers)
    token = bearer(request.headers.get("authorization"))
    if token is not None:
        identity = await auth.verify_token(token, client)
    else:
        sid = session_id()
        if not sid:
            await auth.require_tokens()
            raise Unauthorized("authentication required: Authorization: Bearer slum_...")
        identity = await auth.verify_session(sid)
        if request.method in STATE_CHANGING:
            check_same_origin(required=True)
            check_json_body()
    g.identity, g.scope = identity, identity.tenant


def check_same_origin(*, required: bool) -> None:
    """A cookie rides along with any request a sibling subdomain's page makes (same site, so
    SameSite does not help): a state change must come from the dashboard's own origin."""
    from quart import request

    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site == "same-origin" or (not required and origin is None and fetch_site is None):
            return
        raise Forbidden("cross-origin request refused: no Origin from the dashboard")
    own = request.headers.get("x-forwarded-host") or request.headers.get("host") or ""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != own.lower():
        raise Forbidden(f"cross-origin request refused: origin {origin} is not this dashboard")


def check_json_body() -> None:
    """A form (urlencoded, multipart, text/plain) can be posted cross-site without CORS; a JSON
    content type cannot. A request without a body and without a content type carries nothing."""
    from quart import request

    content_type = request.headers.get("content-type")
    has_body = (
        request.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in request.headers
    )
    if content_type is None and not has_body:
        return
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise Forbidden("a request with a session cookie must send Content-Type: application/json")


# --- the scope views ask about ---
def scope_tenant() -> str | None:
    """The tenant this request is limited to, or None for full access."""
    from quart import g

    tenant: str | None = g.get("scope")
    return tenant


def require_unscoped() -> None:
    """Fleet, config, token and server-wide endpoints: not for a tenant-scoped token."""
    tenant = scope_tenant()
    if tenant is not None:
        raise Forbidden(f"this token is limited to tenant {tenant}")


def instance_allowed(instance_id: str) -> bool:
    tenant = scope_tenant()
    return tenant is None or instance_id.partition(":")[2] == tenant


def check_instance(instance_id: str) -> None:
    if not instance_allowed(instance_id):
        raise Forbidden(f"this token is limited to tenant {scope_tenant()}")


def check_tenant(tenant_id: str | None) -> None:
    tenant = scope_tenant()
    if tenant is not None and tenant_id != tenant:
        raise Forbidden(f"this token is limited to tenant {tenant}")


def scope_log_query(q: LogQuery) -> LogQuery:
    """Narrow a log query to the token's tenant; a filter naming anything else is refused, so
    no filter can widen the scope."""
    tenant = scope_tenant()
    if tenant is None:
        return q
    if q.tenant_id is not None:
        check_tenant(q.tenant_id)
    if q.instance_id is not None:
        check_instance(q.instance_id)
    q.tenant_id = tenant
    return q


# --- which socket a request came on ---
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class Listener:
    """The ASGI app as served on one socket: the control socket marks its requests trusted
    (Hypercorn's scope carries no address for unix sockets, so the mark is how the app knows);
    the edge's socket marks nothing and answers the lifespan itself (the control socket's
    server runs the app's start-up and shut-down once)."""

    def __init__(self, app: ASGIApp, *, trusted: bool) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" and not self.trusted:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        scope = dict(scope)
        if self.trusted:
            scope[TRUSTED_SCOPE_KEY] = True
        else:
            scope.pop(TRUSTED_SCOPE_KEY, None)
        await self.app(scope, receive, send)
