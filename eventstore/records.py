"""The records the store keeps, as plain frozen values.

These are the shapes that cross the store's boundary in both directions. They are
dataclasses rather than pydantic models because they sit on the hot path of every
command; pydantic reads and writes them where they travel (replies, HTTP bodies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from eventstore.events import DomainEvent, JSONDict

R = TypeVar("R")


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
    traceparent: str | None = None
    """The W3C trace context of the work that recorded it (published with the event)."""

    @property
    def stream_id(self) -> str:
        return self.originator_id

    @property
    def version(self) -> int:
        return self.originator_version

    @property
    def event_type(self) -> str:
        return self.event.event_type

    def view(self) -> EventRecord:
        """The event as readers outside the process see it (HTTP, clients, the console)."""
        return EventRecord(
            stream_id=self.originator_id,
            version=self.originator_version,
            type=self.event.event_type,
            schema_version=self.event.schema_version,
            timestamp=self.timestamp,
            command_id=self.command_id,
            position=self.position,
            data=self.event.model_dump(mode="json"),
        )


class EventRecord(BaseModel):
    """One recorded event as data: what the history routes return and clients read back."""

    model_config = ConfigDict(frozen=True)

    stream_id: str = Field(description="the entity's or execution's address")
    version: int = Field(ge=1, description="the stream's version after this event (1, 2, ...)")
    type: str = Field(description="the event's stable type name")
    schema_version: int = Field(ge=1, description="the version of the event's schema in data")
    timestamp: datetime = Field(description="when the event was recorded")
    command_id: str | None = Field(default=None, description="the command that caused it")
    position: int | None = Field(default=None, description="its id in the store's log")
    data: JSONDict = Field(description="the event's fields")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One row of the store's notification log (every event of every stream, in commit
    order), as stored: what the event stream relay publishes without decoding."""

    position: int
    stream_id: str
    version: int
    topic: str
    state: bytes


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


@dataclass(frozen=True, slots=True)
class LoadedStream:
    """What loading a stream returns: the newest usable snapshot and the events after it."""

    stream_id: str
    snapshot: Snapshot | None
    events: list[RecordedEvent]

    @property
    def version(self) -> int:
        if self.events:
            return self.events[-1].version
        return self.snapshot.originator_version if self.snapshot else 0

    def __bool__(self) -> bool:
        return self.snapshot is not None or bool(self.events)


OutcomeStatus = Literal["pending", "applied", "rejected", "invalid", "dead_lettered"]
"""``pending``: accepted, no verdict yet; the others are final (and stored)."""


@dataclass(frozen=True, slots=True)
class Outcome(Generic[R]):
    """What became of one command: the one type every layer uses for it.

    The runtime stores it (so a duplicate gets the original answer), sends it as the
    reply, the clients return it with ``result`` decoded to the handler's declared type,
    and ``GET /commands/{id}`` shows it. ``code`` names why a command was refused, as a
    value callers branch on (e.g. ``not_started``, ``finished``, ``parked`` for a
    workflow); ``error`` says it in words.
    """

    command_id: str
    address: str
    command: str
    status: OutcomeStatus
    result: R = None  # type: ignore[assignment]  # None unless applied (and for -> None)
    version: int | None = None
    error: str | None = None
    code: str | None = None
    recorded_at: datetime = field(default_factory=utcnow)

    @property
    def final(self) -> bool:
        return self.status != "pending"

    def with_result(self, result: Any) -> Outcome[Any]:
        """The same outcome with ``result`` replaced (decoded to its declared type)."""
        return Outcome(
            self.command_id,
            self.address,
            self.command,
            self.status,
            result,
            self.version,
            self.error,
            self.code,
            self.recorded_at,
        )


@dataclass(frozen=True, slots=True)
class FencedTracking:
    """A tracked position that only moves from the value its writer last saw.

    ``notification_id`` is the next position to read (for a Kafka partition, the next
    offset). ``expected`` is the position the writer read when it took ownership or
    last committed; a writer whose view is stale (a zombie) fails to commit.
    """

    application_name: str
    notification_id: int
    expected: int | None = None


@dataclass(frozen=True, slots=True)
class Commit:
    """Everything one batch changes, written in one database transaction."""

    events: list[RecordedEvent] = field(default_factory=list)
    outcomes: list[Outcome[Any]] = field(default_factory=list)
    positions: list[FencedTracking] = field(default_factory=list)
    executions: list[ExecutionRow] = field(default_factory=list)
    timers: list[TimerRow] = field(default_factory=list)
    """Timers set by this batch (a timer of the same id is replaced)."""
    timers_cleared: list[str] = field(default_factory=list)
    """Ids of timers this batch fired or cancelled (deleted; an unknown id is ignored)."""

    def __bool__(self) -> bool:
        return bool(
            self.events
            or self.outcomes
            or self.positions
            or self.executions
            or self.timers
            or self.timers_cleared
        )


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


@dataclass(frozen=True, slots=True)
class TimerRow:
    """A message due to be delivered to an actor at a given time: a durable timer.

    It is written in the same commit as the events of the turn that set it, and deleted
    in the commit of the turn that handled it (or cancelled it), so a timer fires once in
    effect whatever crashes in between. ``partition`` is the mailbox partition of
    ``address``: the worker owning that partition delivers it. ``message`` is the encoded
    envelope (the store does not read it).
    """

    timer_id: str
    address: str
    partition: int
    due_at: datetime
    message: str
