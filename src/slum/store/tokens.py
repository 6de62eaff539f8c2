"""API tokens and dashboard sessions in SQLite.

A token is `slum_<id>_<secret><check>`: the public id names the one row whose Argon2 hash to
verify, and the check (a CRC-32 of the rest) lets a typo or a guess be refused without looking
anything up. Tokens made before this format (`slum_` + 43 letters and digits) have no id in them;
they are marked legacy and still verified, each against its own hash. Sessions are stored as the
SHA-256 of their id with an expiry, so they survive a restart and a database leak does not hand
them out.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import time
import zlib
from dataclasses import dataclass
from typing import Any

import apsw

from slum.errors import NotFound

PREFIX = "slum_"
ID_CHARS = string.ascii_lowercase + string.digits
SECRET_CHARS = string.ascii_letters + string.digits
ID_LEN = 8
SECRET_LEN = 40
CHECK_LEN = 6
TOKEN_RE = re.compile(rf"slum_([a-z0-9]{{{ID_LEN}}})_([A-Za-z0-9]{{{SECRET_LEN + CHECK_LEN}}})")
LEGACY_RE = re.compile(r"slum_[A-Za-z0-9]{43}")
# High-entropy secrets do not need Argon2's default 64 MiB to resist guessing; 16 MiB keeps
# two concurrent verifications small (see web/auth.py's bound on them).
HASH_MEMORY_KIB = 16 * 1024
HASH_TIME_COST = 3


@dataclass(frozen=True)
class TokenRow:
    id: int
    public_id: str
    hash: str
    tenant: str | None
    legacy: bool


def _encode(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, len(SECRET_CHARS))
        out.append(SECRET_CHARS[r])
    return "".join(reversed(out))


def checksum(body: str) -> str:
    return _encode(zlib.crc32(body.encode()), CHECK_LEN)


def parse(token: str) -> tuple[str | None, bool]:
    """(public id or None for a legacy token, well formed?). Pure and cheap: no I/O, no Argon2."""
    m = TOKEN_RE.fullmatch(token)
    if m is not None:
        body = token[:-CHECK_LEN]
        return m.group(1), secrets.compare_digest(checksum(body), token[-CHECK_LEN:])
    return None, LEGACY_RE.fullmatch(token) is not None


def hasher() -> Any:
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=HASH_TIME_COST, memory_cost=HASH_MEMORY_KIB, parallelism=1)


def new_token() -> tuple[str, str, str]:
    """(public id, token, Argon2 hash); the token itself is shown once and never stored."""
    public_id = "".join(secrets.choice(ID_CHARS) for _ in range(ID_LEN))
    body = f"{PREFIX}{public_id}_" + "".join(secrets.choice(SECRET_CHARS) for _ in range(SECRET_LEN))
    token = body + checksum(body)
    return public_id, token, hasher().hash(token)


def verify_hash(token_hash: str, token: str) -> bool:
    """Argon2: tens of milliseconds and HASH_MEMORY_KIB of memory; call it off the event loop."""
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    try:
        return bool(PasswordHasher().verify(token_hash, token))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# --- tokens ---
def create(
    conn: apsw.Connection, description: str | None = None, tenant: str | None = None
) -> tuple[str, str]:
    """A new token: returns (public id, token)."""
    public_id, token, token_hash = new_token()
    conn.execute(
        "INSERT INTO tokens (hash, public_id, description, tenant) VALUES (?, ?, ?, ?)",
        (token_hash, public_id, description, tenant),
    )
    return public_id, token


def find(conn: apsw.Connection, public_id: str) -> TokenRow | None:
    for row in conn.execute(
        "SELECT id, public_id, hash, tenant FROM tokens WHERE public_id = ? "
        "AND legacy = 0 AND revoked_at IS NULL",
        (public_id,),
    ):
        return TokenRow(row[0], row[1], row[2], row[3], False)
    return None


def legacy(conn: apsw.Connection) -> list[TokenRow]:
    return [
        TokenRow(r[0], r[1], r[2], r[3], True)
        for r in conn.execute(
            "SELECT id, public_id, hash, tenant FROM tokens WHERE legacy = 1 AND revoked_at IS NULL "
            "ORDER BY id"
        )
    ]


def active_scopes(conn: apsw.Connection) -> dict[int, str | None]:
    """Every usable token's row id -> its tenant scope (None = full access)."""
    return {r[0]: r[1] for r in conn.execute("SELECT id, tenant FROM tokens WHERE revoked_at IS NULL")}


def has_any(conn: apsw.Connection) -> bool:
    return any(conn.execute("SELECT 1 FROM tokens WHERE revoked_at IS NULL LIMIT 1"))


def listing(conn: apsw.Connection) -> list[dict[str, Any]]:
    return [
        {
            "id": r[0],
            "description": r[1],
            "scope": f"tenant:{r[2]}" if r[2] else "all",
            "tenant": r[2],
            "created": r[3],
            "last_used": r[4],
            "legacy": bool(r[5]),
        }
        for r in conn.execute(
            "SELECT public_id, description, tenant, created_at, last_used, legacy "
            "FROM tokens WHERE revoked_at IS NULL ORDER BY id"
        )
    ]


def revoke(conn: apsw.Connection, public_id: str) -> dict[str, Any]:
    """Revoke a token and end its sessions at once; returns what was revoked."""
    rows = list(
        conn.execute("SELECT id FROM tokens WHERE public_id = ? AND revoked_at IS NULL", (public_id,))
    )
    if not rows:
        raise NotFound(f"no token {public_id!r} (see `slum token-list`)")
    token_id = rows[0][0]
    conn.execute("UPDATE tokens SET revoked_at = datetime('now') WHERE id = ?", (token_id,))
    conn.execute("DELETE FROM sessions WHERE token_id = ?", (token_id,))
    ended = int(conn.changes())
    return {"id": public_id, "revoked": True, "sessions_ended": ended}


def touch(conn: apsw.Connection, token_id: int) -> None:
    conn.execute("UPDATE tokens SET last_used = datetime('now') WHERE id = ?", (token_id,))


# --- sessions ---
def session_key(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def create_session(conn: apsw.Connection, token_id: int, ttl_s: float) -> str:
    sid = secrets.token_urlsafe(32)
    now = time.time()
    conn.execute(
        "INSERT INTO sessions (key, token_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (session_key(sid), token_id, now, now + ttl_s),
    )
    # Expired sessions go when new ones come: the table stays the size of the live ones.
    conn.execute("DELETE FROM sessions WHERE expires_at < ?", (now,))
    return sid


def session_token(conn: apsw.Connection, sid: str) -> tuple[int, str | None] | None:
    """(token row id, tenant scope) of a live session whose token is not revoked, else None."""
    for row in conn.execute(
        "SELECT t.id, t.tenant FROM sessions s JOIN tokens t ON t.id = s.token_id "
        "WHERE s.key = ? AND s.expires_at > ? AND t.revoked_at IS NULL",
        (session_key(sid), time.time()),
    ):
        return int(row[0]), row[1]
    return None


def end_session(conn: apsw.Connection, sid: str) -> None:
    conn.execute("DELETE FROM sessions WHERE key = ?", (session_key(sid),))
