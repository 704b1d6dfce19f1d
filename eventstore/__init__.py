"""entityflow's event store: typed events, streams, snapshots, outcomes and positions.

Read ``events.py`` first (what an event is), then ``records.py`` (what the store keeps)
and ``sql/store.py`` (the one interface the rest of entityflow uses). ``kafka/`` is
Kafka's home, ``stream/`` the event stream published from the store.
"""

from eventstore.errors import (
    ConcurrencyConflictError,
    EventDecodeError,
    EventStoreError,
    RegistryError,
    StoreConfigError,
    StoreUnavailableError,
    StreamNotFoundError,
    UnknownEventTypeError,
    details,
    explain,
)
from eventstore.events import DomainEvent, EventRegistry, JSONDict, Upcaster, upcaster
from eventstore.records import (
    Commit,
    EventRecord,
    ExecutionRow,
    FencedTracking,
    LoadedStream,
    LogEntry,
    Outcome,
    OutcomeStatus,
    RecordedEvent,
    Snapshot,
    TimerRow,
    utcnow,
)
from eventstore.sql.store import Store

__all__ = [
    "Commit",
    "ConcurrencyConflictError",
    "DomainEvent",
    "EventDecodeError",
    "EventRecord",
    "EventRegistry",
    "EventStoreError",
    "ExecutionRow",
    "FencedTracking",
    "JSONDict",
    "LoadedStream",
    "LogEntry",
    "Outcome",
    "OutcomeStatus",
    "RecordedEvent",
    "RegistryError",
    "Snapshot",
    "Store",
    "StoreConfigError",
    "StoreUnavailableError",
    "StreamNotFoundError",
    "TimerRow",
    "UnknownEventTypeError",
    "Upcaster",
    "details",
    "explain",
    "upcaster",
    "utcnow",
]
