"""The event store: one small interface over an `eventsourcing` application.

Everything above this module (actors, sagas, the API) reads and writes through
:class:`Store`: load a stream (latest snapshot plus tail), commit a batch (events,
command outcomes, fenced tracking, workflow visibility rows, all in one transaction),
read outcomes and positions. SQLite and PostgreSQL differ only in the URL.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, cast

import psycopg
import psycopg_pool
from eventsourcing.application import Application
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.utils import Environment, EnvType

from eventstore.errors import (
    ConcurrencyConflictError,
    StoreUnavailableError,
)
from eventstore.events import EventRegistry
from eventstore.records import (
    Commit,
    ExecutionRow,
    LoadedStream,
    LogEntry,
    Outcome,
    RecordedEvent,
    Snapshot,
    TimerRow,
)
from eventstore.sql.codec import SNAPSHOT_PREFIX, EventCodec
from eventstore.sql.pg_recorder import EntityflowPostgresFactory, EntityflowPostgresRecorder
from eventstore.sql.sqlite_recorder import EntityflowSQLiteFactory, EntityflowSQLiteRecorder
from eventstore.sql.urls import StoreLocation, parse_store_url


class _StoreApplication(Application[str]):
    """The `eventsourcing` application behind :class:`Store`.

    Its environment comes only from the store URL (never from ``os.environ``), so two
    stores in one process cannot leak configuration into each other.
    """

    name = "entityflow"

    def __init__(
        self,
        env: EnvType,
        registry: EventRegistry,
        factory_class: type[InfrastructureFactory[Any]],
    ) -> None:
        self._registry = registry
        self._factory_class = factory_class
        super().__init__(env)

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        return Environment(name, dict(env or {}))

    def construct_factory(self, env: Environment) -> InfrastructureFactory[Any]:
        return self._factory_class(env)

    def construct_mapper(self) -> EventCodec:
        return EventCodec(self._registry)

    def construct_recorder(self) -> Any:
        return self.factory.process_recorder()


@contextmanager
def _translated_errors(
    action: str, on_unavailable: Callable[[], None] | None = None
) -> Iterator[None]:
    """Give callers two errors to reason about: a lost race, or a store that is down."""
    try:
        yield
    except IntegrityError as exc:
        raise ConcurrencyConflictError(f"{action}: {exc}") from exc
    except (
        OperationalError,
        InterfaceError,
        psycopg.OperationalError,
        psycopg_pool.PoolTimeout,
        sqlite3.OperationalError,
    ) as exc:
        if on_unavailable is not None:
            on_unavailable()
        raise StoreUnavailableError(f"{action}: the store is unavailable ({exc})") from exc
    except PersistenceError as exc:
        if on_unavailable is not None:
            on_unavailable()
        raise StoreUnavailableError(f"{action}: {exc}") from exc


class Store:
    """Durable storage of event streams, snapshots, command outcomes and positions."""

    def __init__(self, url: str, registry: EventRegistry, *, pool_size: int = 5) -> None:
        self.location: StoreLocation = parse_store_url(url, pool_size=pool_size)
        self.location.prepare()
        self.registry = registry
        factory = (
            EntityflowPostgresFactory
            if self.location.kind == "postgresql"
            else EntityflowSQLiteFactory
        )
        self._app = self._open(registry, factory)
        recorder = self._app.recorder
        assert isinstance(recorder, EntityflowSQLiteRecorder | EntityflowPostgresRecorder)
        self._recorder = recorder
        self.codec: EventCodec = self._app.mapper  # type: ignore[assignment]

    def _open(
        self, registry: EventRegistry, factory: type[InfrastructureFactory[Any]]
    ) -> _StoreApplication:
        """Open the application, creating its tables if needed, one process at a time.

        Processes that open a fresh PostgreSQL schema at the same moment would race to
        create the same tables, types and functions; an advisory lock on the schema name
        makes them take turns.
        """
        with self.location.creation_lock(), _translated_errors("opening the store"):
            app = _StoreApplication(self.location.env, registry, factory)
            recorder: Any = app.recorder
            recorder.migrate()
            return app

    def _guarded(self, action: str) -> AbstractContextManager[None]:
        return _translated_errors(action, self._drop_dead_connections)

    def _drop_dead_connections(self) -> None:
        """After a connection failed, test the idle ones so the next call gets a live one.

        Connections are not pinged before each use (a round trip per transaction); when
        the server restarted or cut them, this one sweep replaces all the dead at once.
        """
        pool = getattr(self._recorder.datastore, "pool", None)
        check = getattr(pool, "check", None)
        if self.location.kind == "postgresql" and callable(check):
            with contextlib.suppress(Exception):
                check()

    @property
    def kind(self) -> str:
        return self.location.kind

    @property
    def url(self) -> str:
        return self.location.display_url

    @property
    def datastore(self) -> Any:
        """The recorder's datastore, for eventstore modules that keep tables of their own."""
        return self._recorder.datastore

    # -- streams -------------------------------------------------------------------

    def load(
        self, stream_id: str, *, version: int | None = None, snapshot_type: str | None = None
    ) -> LoadedStream:
        """Load a stream up to ``version`` (default: all), starting from a snapshot.

        A snapshot is used only when its state type equals ``snapshot_type``; a snapshot
        of an older state shape is passed over and the events are replayed instead.
        """
        with self._guarded(f"loading {stream_id!r}"):
            snapshot: Snapshot | None = None
            if snapshot_type is not None and self._app.snapshots is not None:
                found: list[Any] = list(
                    self._app.snapshots.get(stream_id, desc=True, limit=1, lte=version)
                )
                if found and found[0].state_type == snapshot_type:
                    snapshot = found[0]
            after = snapshot.originator_version if snapshot else None
            events = cast(
                list[RecordedEvent], list(self._app.events.get(stream_id, gt=after, lte=version))
            )
        return LoadedStream(stream_id, snapshot, events)

    def read(
        self,
        stream_id: str,
        *,
        after: int | None = None,
        upto: int | None = None,
        limit: int | None = None,
        desc: bool = False,
    ) -> list[RecordedEvent]:
        """Read a page of one stream's events, oldest first unless ``desc``."""
        with self._guarded(f"reading {stream_id!r}"):
            found = self._app.events.get(stream_id, gt=after, lte=upto, limit=limit, desc=desc)
            return cast(list[RecordedEvent], list(found))

    def read_tails(self, after: Mapping[str, int]) -> dict[str, list[RecordedEvent]]:
        """The events after a given version of many streams at once (one round trip).

        For readers that keep many streams in memory and bring them up to date together.
        """
        if not after:
            return {}
        with self._guarded("reading stream tails"):
            rows = self._recorder.select_tails(list(after.items()))
        tails: dict[str, list[RecordedEvent]] = {stream_id: [] for stream_id in after}
        for row in rows:
            tails[str(row.originator_id)].append(self.codec.decode_event(row))
        return tails

    def load_many(self, wanted: Mapping[str, str | None]) -> dict[str, LoadedStream]:
        """Load many streams at once: newest fitting snapshot plus the events after it.

        ``wanted`` maps each stream to the state type its snapshot must have (None: no
        snapshot). Two queries in all, however many streams: what a worker needs when a
        batch touches many actors it does not hold in memory.
        """
        if not wanted:
            return {}
        typed = [(sid, SNAPSHOT_PREFIX + t) for sid, t in wanted.items() if t is not None]
        with self._guarded("loading streams"):
            rows = self._recorder.select_latest_snapshots(typed) if typed else []
        snapshots = {str(r.originator_id): self.codec.decode_snapshot(r) for r in rows}
        tails = self.read_tails(
            {sid: snapshots[sid].originator_version if sid in snapshots else 0 for sid in wanted}
        )
        return {sid: LoadedStream(sid, snapshots.get(sid), tails[sid]) for sid in wanted}

    def page(
        self, stream_id: str, *, after: int = 0, limit: int = 100
    ) -> list[RecordedEvent] | None:
        """One page of a stream's history, oldest first; None when the stream has no events
        at all (an empty page past its end is an empty list)."""
        events = self.read(stream_id, after=after, limit=limit)
        if not events and (after == 0 or self.last_version(stream_id) == 0):
            return None
        return events

    def last_version(self, stream_id: str) -> int:
        """The stream's current version, 0 when it has no events."""
        newest = self.read(stream_id, desc=True, limit=1)
        return newest[0].version if newest else 0

    # -- writing --------------------------------------------------------------------

    def commit(self, commit: Commit) -> list[int]:
        """Write one batch atomically; return the notification ids of its events.

        Raises :class:`ConcurrencyConflictError` when a stream version, a command id or
        a fenced position was taken by someone else; nothing of the batch is written.
        """
        with self._guarded("committing a batch"):
            recordings = self._app.events.put(
                commit.events,
                positions=commit.positions,
                outcomes=commit.outcomes,
                executions=commit.executions,
                timers=commit.timers,
                timers_cleared=commit.timers_cleared,
            )
        return [r.notification.id for r in recordings]

    def save_snapshots(self, snapshots: Sequence[Snapshot]) -> None:
        """Store snapshots; one that already exists (another writer took it) is skipped."""
        store = self._app.snapshots
        if store is None or not snapshots:
            return
        for snapshot in snapshots:
            try:
                with self._guarded("saving a snapshot"):
                    store.put([snapshot])
            except ConcurrencyConflictError:
                continue

    # -- outcomes, positions, executions -------------------------------------------

    def outcomes(self, command_ids: Sequence[str]) -> dict[str, Outcome[Any]]:
        if not command_ids:
            return {}
        with self._guarded("reading command outcomes"):
            return self._recorder.select_outcomes(command_ids)

    def outcome(self, command_id: str) -> Outcome[Any] | None:
        return self.outcomes([command_id]).get(command_id)

    def forget_outcomes_before(self, cutoff: datetime) -> int:
        with self._guarded("pruning command outcomes"):
            return self._recorder.delete_outcomes_before(cutoff)

    def position(self, name: str) -> int | None:
        """The tracked next position of a mailbox partition (None: never processed)."""
        with self._guarded(f"reading the position of {name!r}"):
            return self._recorder.max_tracking_id(name)

    def execution(self, address: str) -> ExecutionRow | None:
        with self._guarded(f"reading execution {address!r}"):
            return self._recorder.select_execution(address)

    def executions(
        self,
        *,
        workflow_type: str | None = None,
        status: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[ExecutionRow]:
        with self._guarded("listing executions"):
            return self._recorder.select_executions(workflow_type, status, limit, after)

    def count_executions(self) -> dict[tuple[str, str], int]:
        """How many executions there are, by (workflow type, status): one grouped query."""
        with self._guarded("counting executions"):
            return self._recorder.count_executions()

    # -- timers --------------------------------------------------------------------

    def due_timers(
        self,
        partitions: Sequence[int],
        *,
        until: datetime,
        after: datetime | tuple[datetime, str] | None = None,
        limit: int = 10_000,
    ) -> list[TimerRow]:
        """Timers of these partitions due by ``until``, in (due time, id) order, after the
        cursor ``after``: a due time (those due then are excluded) or the (due time, id)
        of the last row of the previous page."""
        cursor: tuple[datetime, str | None] | None = (
            (after, None) if isinstance(after, datetime) else after
        )
        with self._guarded("reading due timers"):
            return self._recorder.select_due_timers(partitions, cursor, until, limit)

    def timers(self, address: str) -> list[TimerRow]:
        """The pending timers of one actor, soonest first."""
        with self._guarded(f"reading the timers of {address!r}"):
            return self._recorder.select_timers(address)

    def count_timers(self) -> int:
        """How many timers are pending, all actors together."""
        with self._guarded("counting timers"):
            return self._recorder.count_timers()

    # -- the notification log ---------------------------------------------------------

    def notifications(self, after: int, limit: int) -> list[RecordedEvent]:
        """Events of all streams in commit order, after notification id ``after``."""
        return [self.decode(entry) for entry in self.log(after, limit)]

    def log(self, after: int, limit: int) -> list[LogEntry]:
        """Rows of the notification log after ``after``, as stored (not decoded)."""
        with self._guarded("reading the notification log"):
            rows = self._recorder.select_notifications(
                start=after, limit=limit, inclusive_of_start=False
            )
            return [log_entry(row) for row in rows]

    def decode(self, entry: LogEntry) -> RecordedEvent:
        """Decode a log entry through the registry (upcasting an older schema)."""
        stored = StoredEvent(
            originator_id=entry.stream_id,
            originator_version=entry.version,
            topic=entry.topic,
            state=entry.state,
        )
        return self.codec.decode_event(stored, position=entry.position)

    def max_position(self) -> int:
        with self._guarded("reading the notification log"):
            return self._recorder.max_notification_id() or 0

    # -- life cycle ------------------------------------------------------------------

    def ping(self) -> None:
        """Raise :class:`StoreUnavailableError` unless the database answers."""
        with self._guarded("checking the store"):
            self._recorder.ping()

    def close(self) -> None:
        self._app.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def log_entry(n: Notification) -> LogEntry:
    """A row of the notification log as entityflow's own record."""
    return LogEntry(
        position=n.id,
        stream_id=str(n.originator_id),
        version=n.originator_version,
        topic=n.topic,
        state=bytes(n.state),
    )
