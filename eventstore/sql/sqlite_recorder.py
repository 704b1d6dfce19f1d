"""The SQLite recorder: `eventsourcing`'s process recorder, extended with what a batch writes.

`eventsourcing` already commits new events and a tracking record in one transaction.
A batch of commands must also record each command's outcome (so a duplicate gets the
original reply) and the visibility row of each workflow it touched, and its tracking
must be fenced: it may only move from the position its writer last saw, so a zombie
worker cannot commit. This recorder adds exactly that, inside the same transaction,
through the recorder's own ``_insert_events`` hook (``pg_recorder.py`` does the same on
PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import SQLiteCursor, SQLiteFactory, SQLiteProcessRecorder

from eventstore.records import ExecutionRow, FencedTracking, Outcome, TimerRow
from eventstore.sql import timers
from eventstore.sql.rows import execution_from_row, outcome_from_row, stored_from_row

_MAX_SQLITE_PARAMS = 500


def _encode_result(result: Any) -> str:
    return json.dumps(result, separators=(",", ":"), default=str)


def _outcome_params(o: Outcome[Any]) -> dict[str, Any]:
    return {
        "command_id": o.command_id,
        "address": o.address,
        "command": o.command,
        "status": o.status,
        "result": _encode_result(o.result),
        "version": o.version,
        "error": o.error,
        "recorded_at": o.recorded_at,
        "code": o.code,
    }


def _execution_params(e: ExecutionRow) -> dict[str, Any]:
    return {
        "address": e.address,
        "workflow_type": e.workflow_type,
        "workflow_id": e.workflow_id,
        "status": e.status,
        "started_at": e.started_at or e.updated_at,
        "updated_at": e.updated_at,
        "summary": json.dumps(e.summary, separators=(",", ":"), default=str),
    }


def _position_conflict(t: FencedTracking) -> IntegrityError:
    return IntegrityError(
        f"tracked position of {t.application_name!r} is no longer {t.expected}: another "
        "worker has processed this partition since (this worker is stale)"
    )


class EntityflowSQLiteRecorder(SQLiteProcessRecorder):
    """SQLite recorder: events, fenced tracking, outcomes and executions in one transaction."""

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            "CREATE TABLE IF NOT EXISTS ef_commands ("
            "command_id TEXT PRIMARY KEY, address TEXT NOT NULL, command TEXT NOT NULL, "
            "status TEXT NOT NULL, result TEXT, version INTEGER, error TEXT, "
            "recorded_at TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS ef_commands_recorded_at ON ef_commands (recorded_at)",
            "CREATE TABLE IF NOT EXISTS ef_executions ("
            "address TEXT PRIMARY KEY, workflow_type TEXT NOT NULL, workflow_id TEXT NOT NULL, "
            "status TEXT NOT NULL, started_at TEXT NOT NULL, updated_at TEXT NOT NULL, "
            "summary TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS ef_executions_type_status "
            "ON ef_executions (workflow_type, status, updated_at)",
            *timers.SQLITE_CREATE,
        ]

    def _insert_events(
        self,
        c: SQLiteCursor,
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> Sequence[int] | None:
        for t in kwargs.get("positions", ()):
            self._advance(c, t)
        returning = super()._insert_events(c, stored_events, **kwargs)
        outcomes: Sequence[Outcome[Any]] = kwargs.get("outcomes", ())
        if outcomes:
            # A command id recorded before is a conflict, unless its outcome was
            # dead_lettered: a re-driven command replaces that one (and only that one).
            c.executemany(
                "INSERT INTO ef_commands (command_id, address, command, status, result, "
                "version, error, recorded_at, code) VALUES (:command_id, :address, :command, "
                ":status, :result, :version, :error, :recorded_at, :code) "
                "ON CONFLICT (command_id) DO UPDATE SET address = excluded.address, "
                "command = excluded.command, status = excluded.status, "
                "result = excluded.result, version = excluded.version, "
                "error = excluded.error, recorded_at = excluded.recorded_at, "
                "code = excluded.code WHERE ef_commands.status = 'dead_lettered'",
                [
                    {**_outcome_params(o), "recorded_at": o.recorded_at.isoformat()}
                    for o in outcomes
                ],
            )
            if c.sqlite_cursor.rowcount != len(outcomes):
                raise IntegrityError("a command id of this batch has an outcome already")
        executions: Sequence[ExecutionRow] = kwargs.get("executions", ())
        for e in executions:
            params = _execution_params(e)
            params["started_at"] = params["started_at"].isoformat()
            params["updated_at"] = params["updated_at"].isoformat()
            c.execute(
                "INSERT INTO ef_executions VALUES (:address, :workflow_type, :workflow_id, "
                ":status, :started_at, :updated_at, :summary) ON CONFLICT (address) DO UPDATE "
                "SET status = excluded.status, updated_at = excluded.updated_at, "
                "summary = excluded.summary",
                params,
            )
        timers.sqlite_write(c, kwargs.get("timers", ()), kwargs.get("timers_cleared", ()))
        return returning

    def _advance(self, c: SQLiteCursor, t: FencedTracking) -> None:
        if t.expected is None:
            c.execute(
                "INSERT INTO tracking VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                (t.application_name, t.notification_id),
            )
        else:
            c.execute(
                "UPDATE tracking SET notification_id = ? "
                "WHERE application_name = ? AND notification_id = ? RETURNING 1",
                (t.notification_id, t.application_name, t.expected),
            )
        if c.fetchone() is None:
            raise _position_conflict(t)

    def migrate(self) -> None:
        """Bring tables an older version created up to date (columns added since)."""
        with self.datastore.transaction(commit=True) as c:
            c.execute("PRAGMA table_info(ef_commands)")
            if "code" not in {row["name"] for row in c.fetchall()}:
                c.execute("ALTER TABLE ef_commands ADD COLUMN code TEXT")

    def select_outcomes(self, command_ids: Iterable[str]) -> dict[str, Outcome[Any]]:
        ids = list(dict.fromkeys(command_ids))
        found: dict[str, Outcome[Any]] = {}
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(ids), _MAX_SQLITE_PARAMS):
                chunk = ids[i : i + _MAX_SQLITE_PARAMS]
                marks = ",".join("?" * len(chunk))
                c.execute(f"SELECT * FROM ef_commands WHERE command_id IN ({marks})", chunk)
                for row in c.fetchall():
                    found[row["command_id"]] = outcome_from_row(row)
        return found

    def delete_outcomes_before(self, cutoff: datetime) -> int:
        with self.datastore.transaction(commit=True) as c:
            c.execute("DELETE FROM ef_commands WHERE recorded_at < ?", (cutoff.isoformat(),))
            c.execute("SELECT changes()")
            return int(c.fetchone()[0])

    def select_executions(
        self, workflow_type: str | None, status: str | None, limit: int, after: str | None
    ) -> list[ExecutionRow]:
        clauses, params = [], []
        if workflow_type is not None:
            clauses.append("workflow_type = ?")
            params.append(workflow_type)
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if after is not None:
            clauses.append("address > ?")
            params.append(after)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT * FROM ef_executions {where} ORDER BY address LIMIT ?",
                [*params, limit],
            )
            return [execution_from_row(r) for r in c.fetchall()]

    def select_execution(self, address: str) -> ExecutionRow | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT * FROM ef_executions WHERE address = ?", (address,))
            row = c.fetchone()
            return execution_from_row(row) if row is not None else None

    def ping(self) -> None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT 1")

    def select_due_timers(
        self,
        partitions: Sequence[int],
        after: tuple[datetime, str | None] | None,
        until: datetime,
        limit: int,
    ) -> list[TimerRow]:
        with self.datastore.transaction(commit=False) as c:
            return timers.sqlite_due(c, partitions, after, until, limit)

    def select_timers(self, address: str) -> list[TimerRow]:
        with self.datastore.transaction(commit=False) as c:
            return timers.sqlite_of(c, address)

    def count_timers(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            return timers.sqlite_count(c)

    def count_executions(self) -> dict[tuple[str, str], int]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT workflow_type, status, count(*) FROM ef_executions "
                "GROUP BY workflow_type, status"
            )
            return {(str(r[0]), str(r[1])): int(r[2]) for r in c.fetchall()}

    def select_tails(self, after: Sequence[tuple[str, int]]) -> list[StoredEvent]:
        """The events of many streams after a version each, in one query per chunk."""
        found: list[StoredEvent] = []
        with self.datastore.transaction(commit=False) as c:
            for i in range(0, len(after), _MAX_SQLITE_PARAMS // 2):
                chunk = after[i : i + _MAX_SQLITE_PARAMS // 2]
                values = ",".join("(?,?)" for _ in chunk)
                c.execute(
                    f"WITH t(id, after) AS (VALUES {values}) SELECT e.* FROM "
                    f"{self.events_table_name} e JOIN t ON e.originator_id = t.id "
                    "AND e.originator_version > t.after "
                    "ORDER BY e.originator_id, e.originator_version",
                    [v for pair in chunk for v in pair],
                )
                found += [stored_from_row(row) for row in c.fetchall()]
        return found

    def select_latest_snapshots(self, wanted: Sequence[tuple[str, str]]) -> list[StoredEvent]:
        """The newest snapshot of each stream whose topic is the one asked for."""
        found: list[StoredEvent] = []
        with self.datastore.transaction(commit=False) as c:
            for stream_id, topic in wanted:
                c.execute(
                    "SELECT * FROM stored_snapshots WHERE originator_id = ? AND topic = ? "
                    "ORDER BY originator_version DESC LIMIT 1",
                    (stream_id, topic),
                )
                found += [stored_from_row(row) for row in c.fetchall()]
        return found


class EntityflowSQLiteFactory(SQLiteFactory):
    process_recorder_class = EntityflowSQLiteRecorder


__all__ = ["EntityflowSQLiteFactory", "EntityflowSQLiteRecorder"]
