"""Reading entityflow's own rows back: command outcomes, execution rows, stored events.

Both recorders (SQLite and PostgreSQL) return the same values from rows of the same
shape, so the conversions live once, here, beside neither backend.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from eventsourcing.persistence import StoredEvent

from eventstore.records import ExecutionRow, Outcome


def outcome_from_row(row: Any) -> Outcome[Any]:
    recorded_at = row["recorded_at"]
    if isinstance(recorded_at, str):
        recorded_at = datetime.fromisoformat(recorded_at)
    return Outcome(
        command_id=row["command_id"],
        address=row["address"],
        command=row["command"],
        status=row["status"],
        result=json.loads(row["result"]) if row["result"] is not None else None,
        version=row["version"],
        error=row["error"],
        code=row["code"],
        recorded_at=recorded_at,
    )


def execution_from_row(row: Any) -> ExecutionRow:
    def ts(v: Any) -> datetime:
        return datetime.fromisoformat(v) if isinstance(v, str) else v

    return ExecutionRow(
        address=row["address"],
        workflow_type=row["workflow_type"],
        workflow_id=row["workflow_id"],
        status=row["status"],
        started_at=ts(row["started_at"]),
        updated_at=ts(row["updated_at"]),
        summary=json.loads(row["summary"]),
    )


def stored_from_row(row: Any) -> StoredEvent:
    return StoredEvent(
        originator_id=row["originator_id"],
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=bytes(row["state"]),
    )
