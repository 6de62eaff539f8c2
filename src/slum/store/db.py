"""One SQLite file. Writes go through one connection, one at a time, in a worker thread; reads use
a small pool of their own connections (WAL lets them run beside the writer). The event loop never
touches SQLite itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import apsw
import trio

from slum.errors import SlumError
from slum.store.migrations import migrate

T = TypeVar("T")
READERS = 4
BUSY_TIMEOUT_MS = 5000


class StoreError(SlumError):
    pass


def describe_error(path: str | os.PathLike[str], e: BaseException) -> str:
    """One line an operator can act on, for what SQLite said about the database at path."""
    if isinstance(e, apsw.BusyError | apsw.LockedError):
        return (
            f"database {path} is locked by another process (waited "
            f"{BUSY_TIMEOUT_MS // 1000} s): is another slum or a long transaction using it?"
        )
    if isinstance(e, apsw.FullError):
        return f"database {path}: the disk is full: free some space"
    if isinstance(e, apsw.CorruptError | apsw.NotADBError):
        return f"database {path} is damaged or not a slum database: {e}"
    if isinstance(e, apsw.ReadOnlyError | apsw.CantOpenError | apsw.PermissionsError):
        return f"cannot open database {path} for writing: {e}"
    return f"database {path}: {e}"


def connect(path: str | os.PathLike[str], *, migrate_schema: bool = True) -> apsw.Connection:
    """Open (and create, and migrate) the database; usable from plain sync code like the CLI."""
    p = Path(path)
    try:
        if p.parent and not p.parent.exists():
            p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _private(p)
        conn = apsw.Connection(str(p))
        conn.set_busy_timeout(BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if migrate_schema:
            migrate(conn)
    except apsw.Error as e:
        raise StoreError(describe_error(p, e)) from None
    except OSError as e:
        raise StoreError(f"cannot open database {p}: {e.strerror or e}") from None
    return conn


@contextlib.contextmanager
def immediate(conn: apsw.Connection, path: str | os.PathLike[str]) -> Iterator[apsw.Connection]:
    """A write transaction for a process beside a running slum (the CLI on --database). BEGIN
    IMMEDIATE takes the write lock first, waiting on the busy timeout; a deferred transaction
    that reads and then writes gets SQLITE_BUSY at once, without waiting, whenever slum wrote in
    between (WAL's snapshot rule), which a busy server does every few milliseconds."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except apsw.Error as e:
        raise StoreError(describe_error(path, e)) from None
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as e:
        if not conn.getautocommit():
            conn.execute("ROLLBACK")
        if isinstance(e, apsw.Error):
            raise StoreError(describe_error(path, e)) from None
        raise


def _private(path: Path) -> None:
    """Logs and node tokens live here: 0600, created so (never readable for a moment) and
    tightened if an older slum left it 0644. SQLite gives -wal and -shm the database's mode."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            st = f.stat()
        except OSError:
            continue
        if st.st_uid == os.getuid() and st.st_mode & 0o077:
            f.chmod(0o600)


def _transaction(conn: apsw.Connection, fn: Callable[[apsw.Connection], T]) -> T:
    # Not a `return` inside the `with`: the connection's __exit__ is typed as one that may
    # swallow the exception, and it does not (it rolls back and lets it go on).
    with conn:
        result = fn(conn)
    return result


class Store:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._writer = connect(self.path)
        self._write_lock = trio.CapacityLimiter(1)
        self._readers: list[apsw.Connection] = []
        self._read_limiter = trio.CapacityLimiter(READERS)

    async def write(self, fn: Callable[[apsw.Connection], T]) -> T:
        """Run fn(conn) in one transaction on the single write connection, off the event loop."""

        return await trio.to_thread.run_sync(_transaction, self._writer, fn, limiter=self._write_lock)

    async def write_on(
        self, thread: Callable[[Callable[[], T]], Awaitable[T]], fn: Callable[[apsw.Connection], T]
    ) -> T:
        """Like write, but run by `thread` (the ingest writer's own, lower-priority thread).

        The transaction is explicit BEGIN/COMMIT statements, not the connection's context
        manager: APSW holds the GIL through a commit made by `__exit__`, and committing a batch
        with its FTS index is the longest step of ingestion (measured: the loop thread's p99
        wait beside a writer 24-28 ms that way, 6-7 ms with COMMIT as a statement, 4 ms with no
        writer at all)."""
        conn = self._writer

        def run() -> T:
            conn.execute("BEGIN")
            try:
                result = fn(conn)
                conn.execute("COMMIT")  # may fail too (busy, full): then roll back below
            except BaseException:
                if not conn.getautocommit():  # SQLite may have rolled back already (FULL)
                    conn.execute("ROLLBACK")
                raise
            return result

        async with self._write_lock:
            return await thread(run)

    async def write_raw(self, fn: Callable[[apsw.Connection], T]) -> T:
        """Like write, but fn manages its own transactions (several, or none)."""
        return await trio.to_thread.run_sync(fn, self._writer, limiter=self._write_lock)

    async def read(self, fn: Callable[[apsw.Connection], T]) -> T:
        def run() -> T:
            conn = self._readers.pop() if self._readers else connect(self.path, migrate_schema=False)
            try:
                return fn(conn)
            finally:
                self._readers.append(conn)

        return await trio.to_thread.run_sync(run, limiter=self._read_limiter)

    def write_sync(self, fn: Callable[[apsw.Connection], T]) -> T:
        """Only for start-up and shutdown, before or after the loop serves anything."""
        return _transaction(self._writer, fn)

    def close(self) -> None:
        for conn in self._readers:
            conn.close()
        self._readers.clear()
        self._writer.close()
