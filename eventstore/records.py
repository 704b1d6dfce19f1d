"""The records the store keeps, as plain frozen values.

These are the shapes that cross the store's boundary in both directions. They are
dataclasses rather than pydantic models because they sit on the hot path of every
command; the HTTP layer turns them into pydantic response models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from eventsourcing.persistence import Tracking

from eventstore.events import DomainEvent, JSONDict


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One event in one stream, at one version.

    The ``originator_*`` names are the ones `eventsourcing` expects of a domain event;
    ``stream_id`` and ``version`` are the names the rest of entityflow reads.
    """

    originator_id: str
    originator_version: int
    event: DomainEvent
    timestamp: datetime = field(default_factory=utcnow)
    command_id: str | None = None
    position: int | None = None

    @property
    def stream_id(self) -> str:
        return self.originator_id

    @property
    def version(self) -> int:
        return self.originator_version

    @property
    def event_type(self) -> str:
        return self.event.event_type


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of a stream at one version, so loading need not replay everything.

    ``state_type`` names the state's shape and version (e.g. ``Account@1``); a snapshot
    whose shape is no longer current is ignored and the stream is replayed instead.
    """

    originator_id: str
    originator_version: int
    state_type: str
    state: JSONDict
    timestamp: datetime = field(default_factory=utcnow)


OutcomeStatus = Literal["applied", "rejected", "invalid", "dead_lettered"]


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """What became of one command: kept so a duplicate gets the original reply."""

    command_id: str
    address: str
    command: str
    status: OutcomeStatus
    result: Any = None
    version: int | None = None
    error: str | None = None
    recorded_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class FencedTracking(Tracking):
    """A tracking record that only moves from the position its writer last saw.

    ``notification_id`` is the next position to read (for a Kafka partition, the next
    offset). ``expected`` is the position the writer read when it took ownership or
    last committed; a writer whose view is stale (a zombie) fails to commit.
    """

    expected: int | None = None


@dataclass(frozen=True, slots=True)
class Commit:
    """Everything one batch changes, written in one database transaction."""

    events: list[RecordedEvent] = field(default_factory=list)
    outcomes: list[CommandOutcome] = field(default_factory=list)
    positions: list[FencedTracking] = field(default_factory=list)
    executions: list[ExecutionRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.outcomes or self.positions or self.executions)


@dataclass(frozen=True, slots=True)
class ExecutionRow:
    """The visibility row of one workflow execution, upserted with its history."""

    address: str
    workflow_type: str
    workflow_id: str
    status: str
    updated_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    summary: JSONDict = field(default_factory=dict)
