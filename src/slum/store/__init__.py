"""SQLite (APSW): one file, WAL, one writer, readers on their own connections."""

from slum.store.db import Store, connect, immediate

__all__ = ["Store", "connect", "immediate"]
