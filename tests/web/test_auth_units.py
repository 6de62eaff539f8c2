"""The parts of auth that hold against a flood, with the real store and real Argon2."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from slum.errors import ConfigError, Unauthorized
from slum.store import connect, tokens
from slum.store.db import Store
from slum.web.auth import (
    BUCKET_BURST,
    Argon2Gate,
    Authenticator,
    Proxies,
    RateLimiter,
    TooManyRequests,
)


def test_token_format_is_checked_without_a_lookup() -> None:
    public_id, token, _ = tokens.new_token()
    assert tokens.parse(token) == (public_id, True)
    # one character changed anywhere: the checksum refuses it
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    assert tokens.parse(flipped) == (public_id if flipped[5:13] == public_id else flipped[5:13], False)
    assert tokens.parse("slum_" + "a" * 43) == (None, True)  # the old format
    assert tokens.parse("slum_guess") == (None, False)
    assert tokens.parse(token + "x") == (None, False)


def test_rate_limiter_bucket_refills_and_success_resets() -> None:
    rl = RateLimiter(burst=3, refill_per_s=1.0)
    for _ in range(3):
        assert rl.retry_after("a", 0.0) == 0
        rl.failed("a", 0.0)
    assert rl.retry_after("a", 0.0) == pytest.approx(1.0)
    assert rl.retry_after("b", 0.0) == 0  # nobody else pays
    assert rl.retry_after("a", 1.0) == 0  # refilled one
    rl.failed("a", 1.0)
    assert rl.retry_after("a", 1.5) > 0
    rl.succeeded("a")
    assert rl.retry_after("a", 1.5) == 0


def test_distinct_addresses_do_not_wipe_an_attackers_bucket() -> None:
    rl = RateLimiter(burst=BUCKET_BURST, refill_per_s=0.5, entries=10_000)
    for _ in range(200):
        rl.failed("203.0.113.9", 0.0)
    for i in range(10_001):
        rl.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 0.0)
    assert rl.retry_after("203.0.113.9", 0.0) > 0
    assert len(rl) <= 20_000  # bounded: the oldest one-off entries went


def test_client_address_believes_forwarded_for_only_from_trusted_proxies() -> None:
    plain = Proxies()
    assert plain.client({"x-forwarded-for": "1.2.3.4, 127.0.0.1"}) == "127.0.0.1"
    caddy = Proxies(["127.0.0.1", "10.0.0.0/8"])
    assert caddy.client({"x-forwarded-for": "1.2.3.4, 127.0.0.1"}) == "1.2.3.4"
    assert caddy.client({"x-forwarded-for": "6.6.6.6, 1.2.3.4, 10.1.1.1, 127.0.0.1"}) == "1.2.3.4"
    assert caddy.https({"x-forwarded-for": "127.0.0.1", "x-forwarded-proto": "https"})
    assert not plain.https({"x-forwarded-for": "127.0.0.1", "x-forwarded-proto": "https"})
    with pytest.raises(ConfigError):
        Proxies(["not-an-address"])


async def test_argon2_gate_bounds_concurrency_and_queue() -> None:
    _, token, token_hash = tokens.new_token()
    gate = Argon2Gate(slots=2, queue=4)
    peak = 0
    results: list[bool] = []

    async def one() -> None:
        results.append(await gate.verify(token_hash, token))

    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(one)
        while gate.waiting + gate.running < 6:  # noqa: ASYNC110 (the gate has no event)
            await trio.sleep(0.001)
        with pytest.raises(TooManyRequests) as refused:
            await gate.verify(token_hash, token)
        assert refused.value.retry_after >= 1
        while gate.running or gate.waiting:
            peak = max(peak, gate.running)
            await trio.sleep(0.001)
    assert peak <= 2 and results == [True] * 6


async def test_unknown_ids_and_bad_checksums_never_reach_argon2(tmp_path: Path) -> None:
    store = Store(tmp_path / "slum.db")
    try:
        _, token = await store.write(lambda c: tokens.create(c, "real"))
        auth = Authenticator(store)
        _, forged, _ = tokens.new_token()  # well formed, unknown id
        bad_check = token[:-1] + ("a" if token[-1] != "a" else "b")
        for i, guess in enumerate([forged, bad_check, "slum_" + "x" * 300, "nope"]):
            with pytest.raises(Unauthorized):
                await auth.verify_token(guess, f"client-{i}")
        assert auth.gate.running == 0 and auth.gate.refused == 0
        assert (await auth.verify_token(token, "client-0")).token_id is not None
    finally:
        store.close()


async def test_legacy_tokens_keep_working(tmp_path: Path) -> None:
    from argon2 import PasswordHasher

    legacy = "slum_" + "L" * 43
    conn = connect(tmp_path / "slum.db")
    with conn:
        # A database from before token ids: the row as the old token-gen wrote it.
        conn.execute(
            "INSERT INTO tokens (hash, legacy, public_id) VALUES (?, 1, 'oldtoken')",
            (PasswordHasher().hash(legacy),),
        )
    conn.close()
    store = Store(tmp_path / "slum.db")
    try:
        auth = Authenticator(store)
        assert (await auth.verify_token(legacy, "c")).token_id is not None
        with pytest.raises(Unauthorized):
            await auth.verify_token("slum_" + "M" * 43, "c")
    finally:
        store.close()


def test_migration_gives_old_tokens_an_id(tmp_path: Path) -> None:
    import apsw

    from slum.store.migrations import MIGRATIONS

    conn = apsw.Connection(str(tmp_path / "old.db"))
    conn.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
    for name, step in MIGRATIONS:
        if name.startswith("0007"):
            break
        with conn:
            step(conn)
            conn.execute("INSERT INTO _migrations VALUES (?, 0)", (name,))
    conn.execute("INSERT INTO tokens (hash) VALUES ('$argon2id$old')")
    conn.close()
    conn = connect(tmp_path / "old.db")
    rows = tokens.listing(conn)
    assert len(rows) == 1 and rows[0]["legacy"] and len(rows[0]["id"]) == 8
    conn.close()


def test_database_files_are_private(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "slum.db"
    conn = connect(db)
    with conn:
        conn.execute("INSERT INTO config (key, value) VALUES ('x', 'y')")
    for f in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        assert f.stat().st_mode & 0o777 == 0o600, f
    assert db.parent.stat().st_mode & 0o777 == 0o700
    conn.close()
    # An older slum's 0644 file is tightened on open.
    db.chmod(0o644)
    connect(db).close()
    assert db.stat().st_mode & 0o777 == 0o600
