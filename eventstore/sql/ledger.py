"""What an API node must remember about requests: idempotency keys and accepted commands.

An ``Idempotency-Key`` (IETF draft) maps to one command id, the fingerprint of the first
request that used it and, once there is one, the final response. A key is *claimed* by the
request working on it for a short lease, so a concurrent retry sees it in flight; a request
that could not finish (a timeout, a crash) lets the lease lapse and the next retry takes
the key over with the same command id, which the runtime deduplicates.

Accepted command ids are recorded before a command is sent, so that "pending" (accepted,
not processed yet) can be told apart from "never seen" after an API node restarts.

Both live in the event store's database (SQLite or PostgreSQL), in tables of their own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from psycopg.sql import SQL, Composed, Identifier

from eventstore.sql.store import Store, _translated_errors

ClaimVerdict = Literal["claimed", "replay", "in_flight", "mismatch"]


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """One idempotency key as stored."""

    key: str
    fingerprint: str
    command_id: str
    locked_until: float
    expires_at: float
    status_code: int | None = None
    body: bytes | None = None

    @property
    def finished(self) -> bool:
        return self.status_code is not None


@dataclass(frozen=True, slots=True)
class Claim:
    """The verdict on a request carrying a key, and the key's record after it.

    - ``claimed``: this request owns the key now; use ``record.command_id``.
    - ``replay``: the key has a final response; send ``record.status_code``/``record.body``.
    - ``in_flight``: another request holds the key's lease right now.
    - ``mismatch``: the key was first used with another request (fingerprint differs).
    """

    verdict: ClaimVerdict
    record: IdempotencyRecord


def _record(row: Any) -> IdempotencyRecord:
    body = row["body"]
    return IdempotencyRecord(
        key=row["key"],
        fingerprint=row["fingerprint"],
        command_id=row["command_id"],
        locked_until=float(row["locked_until"]),
        expires_at=float(row["expires_at"]),
        status_code=row["status_code"],
        body=bytes(body) if body is not None else None,
    )


class _Dialect:
    """The statements of one database; parameters are named the same in both."""

    def __init__(self, kind: str, schema: str | None) -> None:
        pg = kind == "postgresql"

        def table(name: str) -> str | Composed:
            if not pg:
                return name
            return Composed([Identifier(schema or "public"), SQL("."), Identifier(name)])

        def stmt(text: str, **tables: Any) -> Any:
            if not pg:
                return text.replace("%(", ":").replace(")s", "").format(**tables)
            return SQL(text).format(**tables)

        keys, accepted = table("ef_idempotency_keys"), table("ef_accepted_commands")
        blob, real = ("bytea", "double precision") if pg else ("BLOB", "REAL")
        self.create = [
            stmt(
                "CREATE TABLE IF NOT EXISTS {t} (key text PRIMARY KEY, fingerprint text NOT NULL, "
                f"command_id text NOT NULL, locked_until {real} NOT NULL, "
                f"expires_at {real} NOT NULL, status_code integer, body {blob})",
                t=keys,
            ),
            stmt(
                "CREATE TABLE IF NOT EXISTS {t} (command_id text PRIMARY KEY, address text NOT "
                f"NULL, command text NOT NULL, accepted_at {real} NOT NULL)",
                t=accepted,
            ),
            stmt(
                "CREATE INDEX IF NOT EXISTS {i} ON {t} (expires_at)",
                i=Identifier("ef_idempotency_keys_expires") if pg else "ef_idempotency_expires",
                t=keys,
            ),
            stmt(
                "CREATE INDEX IF NOT EXISTS {i} ON {t} (accepted_at)",
                i=Identifier("ef_accepted_commands_at") if pg else "ef_accepted_at",
                t=accepted,
            ),
        ]
        # The first statement of a claim writes, so SQLite takes its write lock up front.
        self.insert_key = stmt(
            "INSERT INTO {t} (key, fingerprint, command_id, locked_until, expires_at) "
            "VALUES (%(key)s, %(fingerprint)s, %(command_id)s, %(locked_until)s, "
            "%(expires_at)s) ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint, "
            "command_id = excluded.command_id, locked_until = excluded.locked_until, "
            "expires_at = excluded.expires_at, status_code = NULL, body = NULL "
            "WHERE {t}.expires_at <= %(now)s RETURNING 1",
            t=keys,
        )
        self.select_key = stmt(
            "SELECT * FROM {t} WHERE key = %(key)s" + (" FOR UPDATE" if pg else ""), t=keys
        )
        self.lock_key = stmt(
            "UPDATE {t} SET locked_until = %(locked_until)s WHERE key = %(key)s", t=keys
        )
        self.finish_key = stmt(
            "UPDATE {t} SET status_code = %(status_code)s, body = %(body)s, locked_until = 0 "
            "WHERE key = %(key)s AND command_id = %(command_id)s",
            t=keys,
        )
        self.release_key = stmt(
            "UPDATE {t} SET locked_until = 0 WHERE key = %(key)s AND command_id = %(command_id)s "
            "AND status_code IS NULL",
            t=keys,
        )
        self.prune_keys = stmt("DELETE FROM {t} WHERE expires_at <= %(now)s", t=keys)
        self.insert_accepted = stmt(
            "INSERT INTO {t} VALUES (%(command_id)s, %(address)s, %(command)s, %(accepted_at)s) "
            "ON CONFLICT (command_id) DO NOTHING",
            t=accepted,
        )
        self.select_accepted = stmt(
            "SELECT address, command, accepted_at FROM {t} WHERE command_id = %(command_id)s",
            t=accepted,
        )
        self.prune_accepted = stmt("DELETE FROM {t} WHERE accepted_at <= %(before)s", t=accepted)


@dataclass(frozen=True, slots=True)
class AcceptedCommand:
    command_id: str
    address: str
    command: str
    accepted_at: float


class RequestLedger:
    """Idempotency keys and accepted command ids, kept in the store's database."""

    def __init__(self, store: Store, *, clock: Any = time.time) -> None:
        self._datastore = store.datastore
        self._sql = _Dialect(store.kind, getattr(self._datastore, "schema", None))
        self._clock = clock
        with _translated_errors("creating the request ledger"), self._tx() as c:
            for statement in self._sql.create:
                c.execute(statement)

    def _tx(self) -> Any:
        return self._datastore.transaction(commit=True)

    # -- idempotency keys -----------------------------------------------------------------

    def claim(
        self, key: str, fingerprint: str, command_id: str, *, lease: float, ttl: float
    ) -> Claim:
        """Take a key for one request, or say why not (see :class:`Claim`)."""
        now = self._clock()
        fresh = {
            "key": key,
            "fingerprint": fingerprint,
            "command_id": command_id,
            "locked_until": now + lease,
            "expires_at": now + ttl,
            "now": now,
        }
        with _translated_errors("claiming an idempotency key"), self._tx() as c:
            c.execute(self._sql.insert_key, fresh)
            if c.fetchone() is not None:  # a new key, or an expired one started afresh
                return Claim("claimed", _record({**fresh, "status_code": None, "body": None}))
            c.execute(self._sql.select_key, {"key": key})
            record = _record(c.fetchone())
            if record.fingerprint != fingerprint:
                return Claim("mismatch", record)
            if record.finished:
                return Claim("replay", record)
            if record.locked_until > now:
                return Claim("in_flight", record)
            # The request that held it gave up (timed out, or its node died): take over,
            # keeping the original command id so the runtime deduplicates a resend.
            c.execute(self._sql.lock_key, {"key": key, "locked_until": now + lease})
        return Claim(
            "claimed",
            IdempotencyRecord(
                key=key,
                fingerprint=fingerprint,
                command_id=record.command_id,
                locked_until=now + lease,
                expires_at=record.expires_at,
            ),
        )

    def finish(self, key: str, command_id: str, status_code: int, body: bytes) -> None:
        """Store the final response of a key; retries get it from now on."""
        params = {"key": key, "command_id": command_id, "status_code": status_code, "body": body}
        with _translated_errors("finishing an idempotency key"), self._tx() as c:
            c.execute(self._sql.finish_key, params)

    def release(self, key: str, command_id: str) -> None:
        """Let the next retry take the key over (no final response was reached)."""
        with _translated_errors("releasing an idempotency key"), self._tx() as c:
            c.execute(self._sql.release_key, {"key": key, "command_id": command_id})

    # -- accepted commands -------------------------------------------------------------

    def accept(self, commands: Sequence[tuple[str, str, str]]) -> None:
        """Record ``(command_id, address, command)`` triples as accepted, in one transaction."""
        if not commands:
            return
        now = self._clock()
        rows = [
            {"command_id": cid, "address": address, "command": command, "accepted_at": now}
            for cid, address, command in commands
        ]
        with _translated_errors("recording accepted commands"), self._tx() as c:
            c.executemany(self._sql.insert_accepted, rows)

    def accepted(self, command_id: str) -> AcceptedCommand | None:
        with (
            _translated_errors("reading accepted commands"),
            self._datastore.transaction(commit=False) as c,
        ):
            c.execute(self._sql.select_accepted, {"command_id": command_id})
            row = c.fetchone()
        if row is None:
            return None
        return AcceptedCommand(
            command_id, row["address"], row["command"], float(row["accepted_at"])
        )

    # -- housekeeping --------------------------------------------------------------------

    def prune(self, *, accepted_retention: float) -> int:
        """Forget expired keys and accepted ids older than the retention; return the count."""
        now = self._clock()
        with _translated_errors("pruning the request ledger"), self._tx() as c:
            c.execute(self._sql.prune_keys, {"now": now})
            removed = _rowcount(c)
            c.execute(self._sql.prune_accepted, {"before": now - accepted_retention})
            return removed + _rowcount(c)


def _rowcount(cursor: Any) -> int:
    count = getattr(cursor, "rowcount", None)
    if count is None:  # eventsourcing's SQLite cursor wrapper hides the sqlite3 cursor's
        count = cursor.sqlite_cursor.rowcount
    return max(0, int(count))
