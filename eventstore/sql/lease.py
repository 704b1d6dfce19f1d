"""Leases: at most one active holder of a name (one relay per namespace), with failover.

On PostgreSQL the lease is a session-level advisory lock held on a connection of its own:
the database releases it when the holder's session ends (its process died, its
connection broke), so a standby takes over within moments, and a holder asks the
database before each publish whether its session still holds it. On SQLite (one machine
by nature) it is an exclusive ``flock`` on a file beside the database, which the kernel
releases when the holder's process dies.

The lease narrows who may publish; the fenced position in the store (see
:class:`~eventstore.records.FencedTracking`) is what makes a stale holder's progress
impossible to record.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg.conninfo import make_conninfo

from eventstore.sql.store import Store


class Lease(Protocol):
    """An exclusive, fail-over lease on one name."""

    name: str

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it; True when this holder has it now."""

    def held(self) -> bool:
        """Whether this holder still has the lease (asks the authority, not a cache)."""

    def release(self) -> None: ...


def _key(text: str) -> int:
    """A stable signed 64-bit advisory lock key for a name."""
    return int.from_bytes(
        hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True
    )


class PostgresLease:
    """A session-level ``pg_try_advisory_lock`` on a dedicated connection."""

    def __init__(self, conninfo: str, name: str) -> None:
        self.name = name
        self._conninfo = conninfo
        self._key = _key(name)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None

    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
        return self._conn

    def try_acquire(self) -> bool:
        try:
            row = (
                self._connection()
                .execute("SELECT pg_try_advisory_lock(%s)", (self._key,))
                .fetchone()
            )
        except psycopg.Error:
            self._drop()
            return False
        return bool(row and row[0])

    def held(self) -> bool:
        if self._conn is None or self._conn.closed:
            return False
        try:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND classid = %s AND objid = %s AND objsubid = 1",
                ((self._key >> 32) & 0xFFFFFFFF, self._key & 0xFFFFFFFF),
            ).fetchone()
        except psycopg.Error:
            self._drop()
            return False
        return bool(row and int(str(row[0])) > 0)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def release(self) -> None:
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        self._drop()


class FileLease:
    """An exclusive ``flock`` on a lock file (SQLite stores: one machine)."""

    def __init__(self, path: Path, name: str) -> None:
        self.name = name
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def lease_for(store: Store, name: str) -> Lease:
    """The lease that fits the store: an advisory lock, or a lock file beside the database."""
    location = store.location
    if location.kind == "postgresql":
        scoped = f"{location.conninfo.get('dbname')}/{location.schema}/{name}"
        return PostgresLease(make_conninfo(**location.conninfo), scoped)
    dbname = location.env["SQLITE_DBNAME"]
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
    if "mode=memory" in dbname:
        digest = hashlib.blake2b(dbname.encode(), digest_size=8).hexdigest()
        path = Path(tempfile.gettempdir()) / f"entityflow-{digest}.{safe}.lock"
    else:
        path = Path(f"{dbname}.{safe}.lock")
    return FileLease(path, name)
