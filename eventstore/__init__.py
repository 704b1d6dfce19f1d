"""entityflow's event store: typed events, streams, snapshots, outcomes and positions.

Read ``events.py`` first (what an event is), then ``store.py`` (the one interface the
rest of entityflow uses); ``recorders.py`` holds all the SQL.
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
)
from eventstore.events import DomainEvent, EventRegistry, JSONDict, Upcaster, upcaster
from eventstore.records import (
    CommandOutcome,
    Commit,
    ExecutionRow,
    FencedTracking,
    OutcomeStatus,
    RecordedEvent,
    Snapshot,
    utcnow,
)
from eventstore.sql.codec import EventCodec
from eventstore.sql.store import LoadedStream, Store

__all__ = [
    "CommandOutcome",
    "Commit",
    "ConcurrencyConflictError",
    "DomainEvent",
    "EventCodec",
    "EventDecodeError",
    "EventRegistry",
    "EventStoreError",
    "ExecutionRow",
    "FencedTracking",
    "JSONDict",
    "LoadedStream",
    "OutcomeStatus",
    "RecordedEvent",
    "RegistryError",
    "Snapshot",
    "Store",
    "StoreConfigError",
    "StoreUnavailableError",
    "StreamNotFoundError",
    "UnknownEventTypeError",
    "Upcaster",
    "upcaster",
    "utcnow",
]
