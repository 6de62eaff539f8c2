"""Tokens and sessions. A token is stored only as an Argon2 hash; a verified token is remembered
by its SHA-256 so argon2 (tens of ms, off the loop) runs once per token, not per request; repeated
failures slow down the client that makes them, nobody else."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
from dataclasses import dataclass
from typing import Any

import trio

from slum.errors import Unauthorized, Unavailable

PREFIX = "slum_"
SESSION_COOKIE = "slum_session"
SESSION_TTL_S = 7 * 24 * 3600
NO_TOKEN = "no API token yet: run `slum token-gen` on the server, then use it as a Bearer token"
_ALPHABET = string.ascii_letters + string.digits


def _hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher()


def generate_token() -> tuple[str, str]:
    """A new token and its Argon2 hash; the token itself is shown once and never stored."""
    token = PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(43))
    return token, _hasher().hash(token)


def store_token(conn: Any, token_hash: str) -> int:
    conn.execute("INSERT INTO tokens (hash) VALUES (?)", (token_hash,))
    return int(conn.last_insert_rowid())


def active_tokens(conn: Any) -> list[tuple[int, str]]:
    return list(conn.execute("SELECT id, hash FROM tokens WHERE revoked_at IS NULL"))


def _verify_hash(token_hash: str, token: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    try:
        return bool(_hasher().verify(token_hash, token))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@dataclass
class Session:
    token_id: int
    expires: float


class Authenticator:
    def __init__(self, read_tokens: Any) -> None:
        # read_tokens: async () -> [(id, hash)], read fresh each time so that a token made by
        # `slum token-gen` while serving works from the next request on.
        self._read_tokens = read_tokens
        self._verified: dict[bytes, int] = {}
        self._failures: dict[str, tuple[int, float]] = {}
        self.sessions: dict[str, Session] = {}

    async def verify_token(self, token: str, client: str) -> int:
        tokens = await self._read_tokens()
        if not tokens:
            raise Unavailable(NO_TOKEN)
        await self._slow_down(client)
        digest = hashlib.sha256(token.encode()).digest()
        ids = {tid for tid, _ in tokens}
        known = self._verified.get(digest)
        if known is not None and known in ids:
            return int(known)
        if token.startswith(PREFIX) and len(token) < 200:
            for tid, token_hash in tokens:
                if await trio.to_thread.run_sync(_verify_hash, token_hash, token):
                    self._verified[digest] = tid
                    self._failures.pop(client, None)
                    return int(tid)
        self._failed(client)
        raise Unauthorized("invalid token")

    async def require_tokens(self) -> None:
        if not await self._read_tokens():
            raise Unavailable(NO_TOKEN)

    async def verify_session(self, sid: str) -> int:
        session = self.sessions.get(sid)
        if session is None or session.expires < time.time():
            self.sessions.pop(sid, None)
            raise Unauthorized("session expired: log in again")
        tokens = await self._read_tokens()
        if session.token_id not in {tid for tid, _ in tokens}:
            self.sessions.pop(sid, None)
            raise Unauthorized("session revoked: log in again")
        return session.token_id

    def new_session(self, token_id: int) -> str:
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = Session(token_id, time.time() + SESSION_TTL_S)
        return sid

    def end_session(self, sid: str | None) -> None:
        if sid:
            self.sessions.pop(sid, None)

    async def _slow_down(self, client: str) -> None:
        count, _ = self._failures.get(client, (0, 0.0))
        if count > 2:
            await trio.sleep(min(0.05 * 2 ** (count - 2), 5.0))

    def _failed(self, client: str) -> None:
        count, _ = self._failures.get(client, (0, 0.0))
        self._failures[client] = (count + 1, time.time())
        if len(self._failures) > 10000:
            self._failures.clear()


def bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if not hmac.compare_digest(scheme.lower(), "bearer") or not value.strip():
        return None
    return value.strip()


def client_address(headers: Any) -> str:
    """The peer the edge saw: the last X-Forwarded-For entry is the one the edge appended."""
    forwarded = headers.get("x-forwarded-for", "")
    return str(forwarded).rsplit(",", 1)[-1].strip() or "local"
