"""Projections: read models fed by the event stream, with an exactly-once effect.

A projection is an object with a ``name``, the ``event_types`` it reads, ``create(db)``
(its tables) and ``apply(db, message)`` (one event's change). :class:`ProjectionRunner`
subscribes it to the stream and, per batch, opens ONE database transaction in which it
reads the last applied version of each entity in the batch, applies only the newer
events, and records the new versions. Kafka offsets are committed after that
transaction, so a crash anywhere re-delivers events the version table already holds:
nothing is applied twice, nothing is skipped.

Read models live in a store's database (SQLite or PostgreSQL), in tables of their own.
Statements name parameters ``%(name)s`` on both databases, and on PostgreSQL each
transaction's ``search_path`` is the store's schema, so plain table names work on both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from eventstore.errors import StoreUnavailableError
from eventstore.events import DomainEvent, EventRegistry
from eventstore.kafka.io import KafkaSettings
from eventstore.sql.read_models import ReadModelDB, ReadModelTxn
from eventstore.sql.store import Store
from eventstore.stream.subscriptions import StreamMessage, Subscription

log = logging.getLogger("entityflow.projections")
VERSIONS_TABLE = "ef_projection_versions"


class Projection(Protocol):
    """A read model: its tables and how each event changes them."""

    name: str
    event_types: tuple[type[DomainEvent], ...]

    def create(self, db: ReadModelTxn) -> None: ...

    def apply(self, db: ReadModelTxn, message: StreamMessage[Any]) -> None: ...


def _create_versions(db: ReadModelTxn) -> None:
    big = "bigint" if db.kind == "postgresql" else "INTEGER"
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE} (projection text NOT NULL, "
        f"entity text NOT NULL, version {big} NOT NULL, PRIMARY KEY (projection, entity))"
    )


def applied_versions(db: ReadModelTxn, projection: str, entities: Sequence[str]) -> dict[str, int]:
    """The last applied version of each entity (entities never seen are absent)."""
    found: dict[str, int] = {}
    unique = list(dict.fromkeys(entities))
    for i in range(0, len(unique), 400):
        chunk = unique[i : i + 400]
        names = {f"e{n}": e for n, e in enumerate(chunk)}
        marks = ", ".join(f"%({k})s" for k in names)
        db.execute(
            f"SELECT entity, version FROM {VERSIONS_TABLE} WHERE projection = %(p)s "
            f"AND entity IN ({marks})",
            {"p": projection, **names},
        )
        found.update({row["entity"]: int(row["version"]) for row in db.fetchall()})
    return found


def _record_versions(db: ReadModelTxn, projection: str, versions: Mapping[str, int]) -> None:
    for entity, version in versions.items():
        db.execute(
            f"INSERT INTO {VERSIONS_TABLE} (projection, entity, version) "
            "VALUES (%(p)s, %(e)s, %(v)s) ON CONFLICT (projection, entity) "
            "DO UPDATE SET version = excluded.version",
            {"p": projection, "e": entity, "v": version},
        )


class ProjectionRunner:
    """Feeds one projection from the event stream; :meth:`run` blocks, :meth:`start` threads."""

    def __init__(
        self,
        store: Store,
        projection: Projection,
        kafka: KafkaSettings,
        *,
        namespace: str = "entityflow",
        group_id: str | None = None,
        from_beginning: bool = False,
        registry: EventRegistry | None = None,
        retry_backoff: float = 1.0,
        partitions: int = 16,
    ) -> None:
        self.db = ReadModelDB(store)
        self.projection = projection
        self.kafka = kafka
        self.namespace = namespace
        self.group_id = group_id or f"{namespace}.projection.{projection.name}"
        self.from_beginning = from_beginning
        self.registry = registry
        self.retry_backoff = retry_backoff
        self.partitions = partitions
        self.applied = 0
        self.duplicates = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        with self.db.transaction() as db:
            _create_versions(db)
            projection.create(db)
        self.subscription = self._subscribe()

    def _subscribe(self) -> Subscription[DomainEvent]:
        return Subscription(
            self.kafka,
            self.registry if self.registry is not None else EventRegistry(),
            self.projection.event_types,
            group_id=self.group_id,
            namespace=self.namespace,
            from_beginning=self.from_beginning,
            partitions=self.partitions,
        )

    def step(self, timeout: float = 0.5) -> int:
        """Poll one batch and apply it in one transaction; return how many were applied."""
        batch = self.subscription.poll(timeout)
        if batch:
            self._apply(batch)
            for message in batch:
                self.subscription.delivered(message)
        self.subscription.commit()
        return len(batch)

    def _apply(self, batch: list[StreamMessage[DomainEvent]]) -> None:
        name = self.projection.name
        with self.db.transaction() as db:
            versions = applied_versions(db, name, [m.entity for m in batch])
            changed: dict[str, int] = {}
            applied = duplicates = 0
            for message in batch:
                if message.version <= versions.get(message.entity, 0):
                    duplicates += 1
                    continue
                self.projection.apply(db, message)
                versions[message.entity] = changed[message.entity] = message.version
                applied += 1
            _record_versions(db, name, changed)
        self.applied += applied
        self.duplicates += duplicates

    def run(self) -> None:
        """Apply batches until :meth:`stop`; a database outage restarts from Kafka's offsets."""
        while not self._stop.is_set():
            try:
                self.step()
            except StoreUnavailableError as exc:
                log.warning("projection %s: %s; retrying", self.projection.name, exc)
                self.subscription.close()
                self._stop.wait(self.retry_backoff)
                self.subscription = self._subscribe()

    def start(self) -> ProjectionRunner:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.run, name=f"projection-{self.projection.name}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.subscription.close()

    def __enter__(self) -> ProjectionRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The read-model handles are the store's (eventstore.sql), offered here as part of what a
# projection is written against.
__all__ = [
    "VERSIONS_TABLE",
    "Projection",
    "ProjectionRunner",
    "ReadModelDB",
    "ReadModelTxn",
    "applied_versions",
]
