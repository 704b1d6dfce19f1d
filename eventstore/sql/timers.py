"""The timer index: durable timers in a table of their own, on SQLite and PostgreSQL.

A timer is a row keyed by its id, with the partition of the actor it is for and when it
is due; the recorders write and delete rows inside a batch's transaction (so a timer is
set, fired or cancelled atomically with the events of the turn that did it), and a
worker reads the rows of the partitions it owns that fall due within a horizon. The
index on ``(partition, due_at)`` makes that read cost what it returns, however many
timers are pending further out.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from eventsourcing.sqlite import SQLiteCursor
from psycopg.sql import SQL, Composed, Identifier

from eventstore.records import TimerRow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(at: datetime) -> int:
    """SQLite keeps due times as integer microseconds since the epoch (exact, ordered)."""
    delta = at.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


SQLITE_CREATE = [
    "CREATE TABLE IF NOT EXISTS ef_timers (timer_id TEXT PRIMARY KEY, address TEXT NOT NULL, "
    "partition INTEGER NOT NULL, due_us INTEGER NOT NULL, message TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS ef_timers_due ON ef_timers (partition, due_us, timer_id)",
]


def sqlite_write(c: SQLiteCursor, timers: Sequence[TimerRow], cleared: Sequence[str]) -> None:
    if cleared:
        c.executemany("DELETE FROM ef_timers WHERE timer_id = ?", [(t,) for t in cleared])
    if timers:
        c.executemany(
            "INSERT INTO ef_timers VALUES (?, ?, ?, ?, ?) ON CONFLICT (timer_id) DO UPDATE SET "
            "address = excluded.address, partition = excluded.partition, "
            "due_us = excluded.due_us, message = excluded.message",
            [(t.timer_id, t.address, t.partition, _micros(t.due_at), t.message) for t in timers],
        )


def sqlite_due(
    c: SQLiteCursor,
    partitions: Sequence[int],
    after: tuple[datetime, str | None] | None,
    until: datetime,
    limit: int,
) -> list[TimerRow]:
    if not partitions:
        return []
    marks = ",".join("?" * len(partitions))
    low, params = "", list[Any](partitions)
    if after is not None and after[1] is None:
        low, params = "AND due_us > ?", [*params, _micros(after[0])]
    elif after is not None:
        low, params = "AND (due_us, timer_id) > (?, ?)", [*params, _micros(after[0]), after[1]]
    c.execute(
        f"SELECT * FROM ef_timers WHERE partition IN ({marks}) {low} AND due_us <= ? "
        "ORDER BY due_us, timer_id LIMIT ?",
        [*params, _micros(until), limit],
    )
    return [_sqlite_row(r) for r in c.fetchall()]


def sqlite_of(c: SQLiteCursor, address: str) -> list[TimerRow]:
    c.execute("SELECT * FROM ef_timers WHERE address = ? ORDER BY due_us", (address,))
    return [_sqlite_row(r) for r in c.fetchall()]


def sqlite_count(c: SQLiteCursor) -> int:
    c.execute("SELECT count(*) FROM ef_timers")
    return int(c.fetchone()[0])


def _sqlite_row(r: Any) -> TimerRow:
    return TimerRow(
        timer_id=r["timer_id"],
        address=r["address"],
        partition=int(r["partition"]),
        due_at=_from_micros(int(r["due_us"])),
        message=r["message"],
    )


def pg_table(schema: str, prefix: str) -> Composed:
    return Composed([Identifier(schema), SQL("."), Identifier(f"{prefix}_timers")])


def pg_create(table: Composed, prefix: str) -> list[Composed]:
    return [
        SQL(
            "CREATE TABLE IF NOT EXISTS {t} (timer_id text PRIMARY KEY, address text NOT NULL, "
            "partition integer NOT NULL, due_at timestamptz NOT NULL, message text NOT NULL)"
        ).format(t=table),
        SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (partition, due_at, timer_id)").format(
            i=Identifier(f"{prefix}_timers_due"), t=table
        ),
    ]


def pg_due_query(table: Composed, after: tuple[datetime, str | None] | None) -> Composed:
    low = SQL("")
    if after is not None:
        low = (
            SQL("AND due_at > %s ")
            if after[1] is None
            else SQL("AND (due_at, timer_id) > (%s, %s) ")
        )
    return SQL(
        "SELECT * FROM {t} WHERE partition = ANY(%s) {low}AND due_at <= %s "
        "ORDER BY due_at, timer_id LIMIT %s"
    ).format(t=table, low=low)


def pg_due_params(
    partitions: Sequence[int],
    after: tuple[datetime, str | None] | None,
    until: datetime,
    limit: int,
) -> list[Any]:
    cursor = [] if after is None else [after[0]] if after[1] is None else list(after)
    return [list(partitions), *cursor, until, limit]


def pg_of_query(table: Composed) -> Composed:
    return SQL("SELECT * FROM {t} WHERE address = %s ORDER BY due_at").format(t=table)


def pg_count_query(table: Composed) -> Composed:
    return SQL("SELECT count(*) AS n FROM {t}").format(t=table)


def pg_row(r: Any) -> TimerRow:
    return TimerRow(
        timer_id=r["timer_id"],
        address=r["address"],
        partition=int(r["partition"]),
        due_at=r["due_at"],
        message=r["message"],
    )
