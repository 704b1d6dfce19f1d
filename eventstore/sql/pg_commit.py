"""A batch commit on PostgreSQL in one round trip: one call to a server-side function.

`eventsourcing`'s insert path sends a pipeline of statements per transaction (begin,
lock, notify, insert, our positions, outcomes and visibility rows, commit); on a worker
that commits a batch every few milliseconds, the client-side work of that pipeline was
a third of the loop. This function does the same steps, in the same order and under the
same lock discipline (an EXCLUSIVE lock on the events table, so notification ids are
issued in commit order; a NOTIFY for subscribers), inside the database:

1. move each tracked position only from the value the caller read (compare-and-set):
   a caller whose view is stale, a zombie, fails with a unique violation;
2. record the command outcomes (a command id recorded before is a unique violation,
   unless its outcome was ``dead_lettered``: a re-driven command replaces it);
3. upsert the workflow visibility rows;
4. delete the timers fired or cancelled, upsert the timers set;
5. lock the events table, notify, insert the events (a taken version is a unique
   violation) and return their notification ids.

The call runs as one implicit transaction: all of it, or none of it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Composed, Identifier, Literal

from eventstore.records import ExecutionRow, FencedTracking, Outcome, TimerRow

_STALE = ": another worker has processed this partition since (this worker is stale)"

_BODY = """
DECLARE
    stale text;
    written bigint;
BEGIN
    IF cardinality(new_names) > 0 THEN
        WITH done AS (
            INSERT INTO {tracking} SELECT * FROM unnest(new_names, new_values)
            ON CONFLICT DO NOTHING RETURNING application_name)
        SELECT string_agg(format('tracked position of %L is no longer None', v.name), ', ')
        INTO stale FROM unnest(new_names) AS v(name)
        WHERE v.name NOT IN (SELECT application_name FROM done);
        IF stale IS NOT NULL THEN
            RAISE EXCEPTION '%', stale || {stale} USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    IF cardinality(names) > 0 THEN
        WITH done AS (
            UPDATE {tracking} AS t SET notification_id = v.new
            FROM unnest(names, expected, moved_to) AS v(name, expected, new)
            WHERE t.application_name = v.name AND t.notification_id = v.expected
            RETURNING t.application_name)
        SELECT string_agg(
            format('tracked position of %L is no longer %s', v.name, v.expected), ', ')
        INTO stale FROM unnest(names, expected) AS v(name, expected)
        WHERE v.name NOT IN (SELECT application_name FROM done);
        IF stale IS NOT NULL THEN
            RAISE EXCEPTION '%', stale || {stale} USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    IF cardinality(c_ids) > 0 THEN
        INSERT INTO {commands} AS c (command_id, address, command, status, result, version,
            error, recorded_at, code) SELECT * FROM unnest(
            c_ids, c_addresses, c_commands, c_statuses, c_results, c_versions, c_errors,
            c_times, c_codes)
        ON CONFLICT (command_id) DO UPDATE SET address = excluded.address,
            command = excluded.command, status = excluded.status, result = excluded.result,
            version = excluded.version, error = excluded.error,
            recorded_at = excluded.recorded_at, code = excluded.code
        WHERE c.status = 'dead_lettered';
        GET DIAGNOSTICS written = ROW_COUNT;
        IF written < cardinality(c_ids) THEN
            RAISE EXCEPTION 'a command id of this batch has an outcome already'
                USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    IF cardinality(x_addresses) > 0 THEN
        INSERT INTO {executions} SELECT * FROM unnest(
            x_addresses, x_types, x_ids, x_statuses, x_started, x_updated, x_summaries)
        ON CONFLICT (address) DO UPDATE SET status = excluded.status,
            updated_at = excluded.updated_at, summary = excluded.summary;
    END IF;
    IF cardinality(t_cleared) > 0 THEN
        DELETE FROM {timers} WHERE timer_id = ANY(t_cleared);
    END IF;
    IF cardinality(t_ids) > 0 THEN
        INSERT INTO {timers} SELECT * FROM unnest(
            t_ids, t_addresses, t_partitions, t_due, t_messages)
        ON CONFLICT (timer_id) DO UPDATE SET address = excluded.address,
            partition = excluded.partition, due_at = excluded.due_at,
            message = excluded.message;
    END IF;
    IF cardinality(e_ids) > 0 THEN
        PERFORM set_config('lock_timeout', {lock_timeout}, true);
        LOCK TABLE {events_table} IN EXCLUSIVE MODE;
        NOTIFY {channel};
        RETURN QUERY INSERT INTO {events_table} AS t (
            originator_id, originator_version, topic, state)
            SELECT * FROM unnest(e_ids, e_versions, e_topics, e_states)
            RETURNING notification_id;
    END IF;
END;
"""


def create_function_sql(
    *,
    schema: str,
    name: str,
    events_table: Composed,
    tracking_table: Composed,
    commands_table: Composed,
    executions_table: Composed,
    timers_table: Composed,
    channel: str,
    lock_timeout: int,
) -> Composed:
    body = SQL(_BODY).format(
        tracking=tracking_table,
        commands=commands_table,
        executions=executions_table,
        timers=timers_table,
        events_table=events_table,
        channel=Identifier(channel),
        stale=Literal(_STALE),
        lock_timeout=Literal(f"{lock_timeout}s"),
    )
    head = SQL(
        "CREATE OR REPLACE FUNCTION {schema}.{name}("
        "e_ids text[], e_versions bigint[], e_topics text[], e_states bytea[], "
        "new_names text[], new_values bigint[], "
        "names text[], expected bigint[], moved_to bigint[], "
        "c_ids text[], c_addresses text[], c_commands text[], c_statuses text[], "
        "c_results text[], c_versions bigint[], c_errors text[], c_times timestamptz[], "
        "c_codes text[], "
        "x_addresses text[], x_types text[], x_ids text[], x_statuses text[], "
        "x_started timestamptz[], x_updated timestamptz[], x_summaries text[], "
        "t_cleared text[], t_ids text[], t_addresses text[], t_partitions integer[], "
        "t_due timestamptz[], t_messages text[]) "
        "RETURNS SETOF bigint LANGUAGE plpgsql AS $entityflow$"
    ).format(schema=Identifier(schema), name=Identifier(name))
    return Composed([head, body, SQL("$entityflow$")])


def call_sql(*, schema: str, name: str) -> Composed:
    return SQL(
        "SELECT notification_id FROM {schema}.{name}("
        "%s::text[], %s::bigint[], %s::text[], %s::bytea[], %s::text[], %s::bigint[], "
        "%s::text[], %s::bigint[], %s::bigint[], "
        "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], "
        "%s::text[], %s::timestamptz[], %s::text[], "
        "%s::text[], %s::text[], %s::text[], %s::text[], %s::timestamptz[], "
        "%s::timestamptz[], %s::text[], "
        "%s::text[], %s::text[], %s::text[], %s::integer[], %s::timestamptz[], %s::text[]) "
        "AS notification_id"
    ).format(schema=Identifier(schema), name=Identifier(name))


def call_params(
    events: Sequence[StoredEvent],
    positions: Sequence[FencedTracking],
    outcomes: Sequence[Outcome[Any]],
    executions: Sequence[ExecutionRow],
    timers: Sequence[TimerRow] = (),
    timers_cleared: Sequence[str] = (),
) -> list[Any]:
    fresh = [t for t in positions if t.expected is None]
    known = [t for t in positions if t.expected is not None]
    # One row per execution: a workflow that took several turns in one batch is upserted
    # once, with its newest row (an upsert may not touch the same row twice).
    rows = list({e.address: e for e in executions}.values())
    set_timers = list({t.timer_id: t for t in timers}.values())
    return [
        # Plain arrays, not an array of a composite type: psycopg dumps these in C.
        [str(e.originator_id) for e in events],
        [e.originator_version for e in events],
        [e.topic for e in events],
        [e.state for e in events],
        [t.application_name for t in fresh],
        [t.notification_id for t in fresh],
        [t.application_name for t in known],
        [t.expected for t in known],
        [t.notification_id for t in known],
        [o.command_id for o in outcomes],
        [o.address for o in outcomes],
        [o.command for o in outcomes],
        [o.status for o in outcomes],
        [json.dumps(o.result, separators=(",", ":"), default=str) for o in outcomes],
        [o.version for o in outcomes],
        [o.error for o in outcomes],
        [o.recorded_at for o in outcomes],
        [o.code for o in outcomes],
        [e.address for e in rows],
        [e.workflow_type for e in rows],
        [e.workflow_id for e in rows],
        [e.status for e in rows],
        [e.started_at or e.updated_at for e in rows],
        [e.updated_at for e in rows],
        [json.dumps(e.summary, separators=(",", ":"), default=str) for e in rows],
        list(dict.fromkeys(timers_cleared)),
        [t.timer_id for t in set_timers],
        [t.address for t in set_timers],
        [t.partition for t in set_timers],
        [t.due_at for t in set_timers],
        [t.message for t in set_timers],
    ]
