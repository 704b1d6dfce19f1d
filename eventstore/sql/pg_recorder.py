"""The PostgreSQL recorder: `eventsourcing`'s process recorder, extended with what a batch writes.

The same additions as the SQLite recorder (command outcomes, workflow visibility rows,
timers and fenced tracking in the batch's transaction), but committed with one call to
a server-side function (``pg_commit.py``), and with a schema it only creates when
something is missing, so that opening a store never deadlocks with a commit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    StoredEvent,
)
from eventsourcing.postgres import PostgresFactory, PostgresProcessRecorder
from eventsourcing.utils import retry
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier

from eventstore.records import ExecutionRow, Outcome, TimerRow
from eventstore.sql import timers
from eventstore.sql.pg_commit import call_params, call_sql, create_function_sql
from eventstore.sql.rows import execution_from_row, outcome_from_row, stored_from_row


class EntityflowPostgresRecorder(PostgresProcessRecorder):
    """PostgreSQL recorder: events, fenced tracking, outcomes and executions in one transaction."""

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        prefix = self.events_table_name.removesuffix("_events")
        schema = Identifier(self.datastore.schema)
        self.commands_table = Composed([schema, SQL("."), Identifier(f"{prefix}_commands")])
        self.executions_table = Composed([schema, SQL("."), Identifier(f"{prefix}_executions")])
        self.timers_table = timers.pg_table(self.datastore.schema, prefix)
        self.sql_create_statements += [
            SQL(
                "CREATE TABLE IF NOT EXISTS {t} (command_id text PRIMARY KEY, "
                "address text NOT NULL, command text NOT NULL, status text NOT NULL, "
                "result text, version bigint, error text, recorded_at timestamptz NOT NULL, "
                "code text)"
            ).format(t=self.commands_table),
            # Tables an older version created lack the columns added since.
            SQL("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS code text").format(t=self.commands_table),
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (recorded_at)").format(
                i=Identifier(f"{prefix}_commands_recorded_at"), t=self.commands_table
            ),
            SQL(
                "CREATE TABLE IF NOT EXISTS {t} (address text PRIMARY KEY, "
                "workflow_type text NOT NULL, workflow_id text NOT NULL, status text NOT NULL, "
                "started_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, "
                "summary text NOT NULL)"
            ).format(t=self.executions_table),
            SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (workflow_type, status, updated_at)").format(
                i=Identifier(f"{prefix}_executions_type_status"), t=self.executions_table
            ),
            *timers.pg_create(self.timers_table, prefix),
        ]
        tracking = Composed([schema, SQL("."), Identifier(self.tracking_table_name)])
        events = Composed([schema, SQL("."), Identifier(self.events_table_name)])
        function = f"{prefix}_commit"
        self.sql_create_statements.append(
            create_function_sql(
                schema=self.datastore.schema,
                name=function,
                events_table=events,
                tracking_table=tracking,
                commands_table=self.commands_table,
                executions_table=self.executions_table,
                timers_table=self.timers_table,
                channel=self.channel_name,
                lock_timeout=self.datastore.lock_timeout,
            )
        )
        self._sql_commit = call_sql(schema=self.datastore.schema, name=function)
        self._sql_outcomes = SQL("SELECT * FROM {t} WHERE command_id = ANY(%s)").format(
            t=self.commands_table
        )

    def _create_table(self, curs: psycopg.Cursor[DictRow]) -> None:
        """Create what is missing; on a complete schema, only refresh the commit function.

        ``CREATE INDEX IF NOT EXISTS`` and ``ALTER TABLE ... IF NOT EXISTS`` lock their
        table before they look, so a process opening the store while another commits
        (which locks the events table, then writes outcomes) can deadlock with it. The
        creation lock keeps openers apart but not committers; skipping the statements
        when nothing is missing does.
        """
        migrating = self.datastore.single_row_tracking and not self.tracking_migration_previous
        if self.tracking_table_exists and not migrating and self._schema_complete(curs):
            for statement in self.sql_create_statements:
                if "CREATE OR REPLACE FUNCTION" in statement.as_string():
                    curs.execute(statement, prepare=False)
            return
        super()._create_table(curs)

    def _schema_complete(self, curs: psycopg.Cursor[DictRow]) -> bool:
        schema = self.datastore.schema
        prefix = self.events_table_name.removesuffix("_events")
        tables = [self.events_table_name, self.tracking_table_name]
        tables += [f"{prefix}_commands", f"{prefix}_executions", f"{prefix}_timers"]
        curs.execute(
            "SELECT count(*) AS n FROM information_schema.tables "
            "WHERE table_schema = %s AND table_name = ANY(%s)",
            (schema, tables),
        )
        row = curs.fetchone()
        if row is None or row["n"] != len(tables):
            return False
        curs.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = %s AND column_name = 'code'",
            (schema, f"{prefix}_commands"),
        )
        return curs.fetchone() is not None

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """Commit a batch with one call to the commit function (see ``pg_commit``)."""
        if kwargs.get("tracking") is not None:  # eventsourcing's own process-event path
            ids: Sequence[int] | None = super().insert_events(stored_events, **kwargs)
            return ids
        params = call_params(
            stored_events,
            kwargs.get("positions", ()),
            kwargs.get("outcomes", ()),
            kwargs.get("executions", ()),
            kwargs.get("timers", ()),
            kwargs.get("timers_cleared", ()),
        )
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            try:
                curs.execute(self._sql_commit, params, prepare=True)
            except psycopg.errors.IntegrityError as exc:
                # The first line says what was taken; the PL/pgSQL context adds nothing.
                raise IntegrityError(exc.diag.message_primary or str(exc)) from exc
            return [row["notification_id"] for row in curs.fetchall()]

    def migrate(self) -> None:
        """Nothing to do: the create statements add missing columns (IF NOT EXISTS)."""

    def select_outcomes(self, command_ids: Iterable[str]) -> dict[str, Outcome[Any]]:
        ids = list(dict.fromkeys(command_ids))
        if not ids:
            return {}
        # One statement on an autocommit connection: one round trip where BEGIN, SELECT,
        # ROLLBACK took three. Workers ask this once per batch, before handling it.
        with self.datastore.cursor() as curs:
            curs.execute(self._sql_outcomes, (ids,), prepare=True)
            rows: list[DictRow] = curs.fetchall()
        return {row["command_id"]: outcome_from_row(row) for row in rows}

    def delete_outcomes_before(self, cutoff: datetime) -> int:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("DELETE FROM {t} WHERE recorded_at < %s").format(t=self.commands_table),
                (cutoff,),
            )
            return int(curs.rowcount)

    def select_executions(
        self, workflow_type: str | None, status: str | None, limit: int, after: str | None
    ) -> list[ExecutionRow]:
        clauses: list[Composed | SQL] = []
        params: list[Any] = []
        if workflow_type is not None:
            clauses.append(SQL("workflow_type = %s"))
            params.append(workflow_type)
        if status is not None:
            clauses.append(SQL("status = %s"))
            params.append(status)
        if after is not None:
            clauses.append(SQL("address > %s"))
            params.append(after)
        where = SQL("WHERE ") + SQL(" AND ").join(clauses) if clauses else SQL("")
        query = SQL("SELECT * FROM {t} {w} ORDER BY address LIMIT %s").format(
            t=self.executions_table, w=where
        )
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, [*params, limit])
            return [execution_from_row(r) for r in curs.fetchall()]

    def select_execution(self, address: str) -> ExecutionRow | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT * FROM {t} WHERE address = %s").format(t=self.executions_table),
                (address,),
            )
            row = curs.fetchone()
        return execution_from_row(row) if row is not None else None

    def ping(self) -> None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT 1")

    def select_due_timers(
        self,
        partitions: Sequence[int],
        after: tuple[datetime, str | None] | None,
        until: datetime,
        limit: int,
    ) -> list[TimerRow]:
        if not partitions:
            return []
        query = timers.pg_due_query(self.timers_table, after)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, timers.pg_due_params(partitions, after, until, limit))
            return [timers.pg_row(r) for r in curs.fetchall()]

    def select_timers(self, address: str) -> list[TimerRow]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(timers.pg_of_query(self.timers_table), (address,))
            return [timers.pg_row(r) for r in curs.fetchall()]

    def count_timers(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(timers.pg_count_query(self.timers_table))
            row = curs.fetchone()
        return int(row["n"]) if row is not None else 0

    def count_executions(self) -> dict[tuple[str, str], int]:
        query = SQL(
            "SELECT workflow_type, status, count(*) AS n FROM {t} GROUP BY workflow_type, status"
        ).format(t=self.executions_table)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query)
            return {(r["workflow_type"], r["status"]): int(r["n"]) for r in curs.fetchall()}

    def select_latest_snapshots(self, wanted: Sequence[tuple[str, str]]) -> list[StoredEvent]:
        """The newest snapshot of each stream whose topic is the one asked for (one query)."""
        if not wanted:
            return []
        snapshots = Composed(
            [
                Identifier(self.datastore.schema),
                SQL("."),
                Identifier(self.events_table_name.removesuffix("_events") + "_snapshots"),
            ]
        )
        query = SQL(
            "SELECT s.* FROM unnest(%s::text[], %s::text[]) AS w(id, topic) "
            "CROSS JOIN LATERAL (SELECT * FROM {t} x WHERE x.originator_id = w.id "
            "AND x.topic = w.topic ORDER BY x.originator_version DESC LIMIT 1) s"
        ).format(t=snapshots)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, ([sid for sid, _ in wanted], [t for _, t in wanted]))
            return [stored_from_row(row) for row in curs.fetchall()]

    def select_tails(self, after: Sequence[tuple[str, int]]) -> list[StoredEvent]:
        """The events of many streams after a version each, in one query."""
        if not after:
            return []
        events = Composed(
            [Identifier(self.datastore.schema), SQL("."), Identifier(self.events_table_name)]
        )
        # One index range scan per stream: LATERAL with OFFSET 0 keeps the planner from
        # flattening it into a join, which it hash-joins against a scan of the whole table
        # whenever the table's statistics are missing or stale (25 ms at 200k events).
        query = SQL(
            "SELECT e.* FROM unnest(%s::text[], %s::bigint[]) AS a(id, after) "
            "CROSS JOIN LATERAL (SELECT * FROM {t} x WHERE x.originator_id = a.id "
            "AND x.originator_version > a.after OFFSET 0) e "
            "ORDER BY e.originator_id, e.originator_version"
        ).format(t=events)
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(query, ([sid for sid, _ in after], [v for _, v in after]))
            return [stored_from_row(row) for row in curs.fetchall()]


class EntityflowPostgresFactory(PostgresFactory):
    process_recorder_class = EntityflowPostgresRecorder


__all__ = ["EntityflowPostgresFactory", "EntityflowPostgresRecorder"]
