"""Subscribing to the event stream: typed events, each delivered once per subscriber.

``subscribe(Restocked, StockReserved, kafka=..., group_id="reports")`` joins a consumer
group on ``{namespace}.events`` and yields :class:`StreamMessage` values whose ``event`` is
the pydantic event (upcast to the code's schema version by the registry). The stream is
at least once (a relay that crashed re-sends its last batch), so the subscription drops
every event whose entity version it has already delivered: per entity, versions arrive
in order, and anything at or below the last one delivered is a repeat. Kafka offsets are
committed only after the handler returned (with :meth:`Subscription.run`) or after the
iterating code asked for the next batch.

The in-memory :class:`LatestVersions` dedupes within one process; projections keep their
versions in the database with their read model (``projections.py``), which makes their
effect exactly once across restarts and rebalances too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from eventstore.errors import EventDecodeError
from eventstore.events import DomainEvent, EventRegistry
from eventstore.kafka.admin import Admin
from eventstore.kafka.group_consumer import GroupConsumer
from eventstore.kafka.io import BrokerUnavailableError, KafkaRecord, KafkaSettings
from eventstore.stream.format import StreamEvent, StreamRecordError, decode_stream_record
from eventstore.stream.relay import StreamTopics

log = logging.getLogger("entityflow.subscriptions")
E = TypeVar("E", bound=DomainEvent)


@dataclass(frozen=True, slots=True)
class StreamMessage(Generic[E]):
    """One event from the stream, typed, with where it came from."""

    event: E
    entity: str
    entity_type: str
    entity_id: str
    version: int
    position: int
    timestamp: datetime
    command_id: str | None
    partition: int
    offset: int

    @property
    def event_type(self) -> str:
        return self.event.event_type


class Deduplicator(Protocol):
    """Remembers the last delivered version of each entity."""

    def last(self, entity: str) -> int: ...

    def remember(self, entity: str, version: int) -> None: ...


class LatestVersions:
    """In-memory deduplication: the highest version delivered per entity."""

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}

    def last(self, entity: str) -> int:
        return self._versions.get(entity, 0)

    def remember(self, entity: str, version: int) -> None:
        if version > self._versions.get(entity, 0):
            self._versions[entity] = version

    def __len__(self) -> int:
        return len(self._versions)


@dataclass
class SubscriptionStats:
    received: int = 0
    delivered: int = 0
    duplicates: int = 0
    skipped: int = 0
    """Records of event types this subscription did not ask for."""
    malformed: int = 0
    """Records that are not stream events at all (logged and passed over)."""
    commit_failures: int = 0
    gaps: int = 0
    """Times an entity's version jumped ahead of the last one seen (records missing)."""
    partitions: list[int] = field(default_factory=list)


class Subscription(Generic[E]):
    """A consumer-group member on the event stream that hands out typed, deduped events."""

    def __init__(
        self,
        kafka: KafkaSettings,
        registry: EventRegistry,
        event_types: tuple[type[E], ...],
        *,
        group_id: str,
        namespace: str = "entityflow",
        topic: str | None = None,
        from_beginning: bool = False,
        dedupe: Deduplicator | None = None,
        max_poll_records: int = 500,
        partitions: int = 16,
    ) -> None:
        if not event_types:
            raise ValueError("subscribe() needs at least one event type")
        for cls in event_types:
            registry.add_event(cls)
        self.registry = registry
        self.wanted = {cls.event_type: cls for cls in event_types}
        self.topic = topic or StreamTopics(namespace).events
        self.dedupe: Deduplicator = dedupe if dedupe is not None else LatestVersions()
        self.stats = SubscriptionStats()
        self._from_beginning = from_beginning
        self._rewound: set[int] = set()
        self._max_poll_records = max_poll_records
        self._stop = threading.Event()
        self._end: dict[int, int] = {}
        self._open: dict[int, set[int]] = {}
        # Create the topic as the relay would, before a consumer's metadata request lets
        # the broker auto-create it with its own default partition count.
        admin = Admin(kafka)
        try:
            admin.ensure_topics({self.topic: partitions})
        finally:
            admin.close()
        self._consumer = GroupConsumer(
            kafka, self.topic, group_id, max_poll_records=max_poll_records
        )

    # -- reading ---------------------------------------------------------------------

    def poll(self, timeout: float = 0.5) -> list[StreamMessage[E]]:
        """The next batch of new events (duplicates and other types dropped).

        Their offsets are committed by :meth:`commit` (or by the next :meth:`poll` through
        :meth:`__iter__`/:meth:`run`); call it once the batch is handled.
        """
        records = self._consumer.poll(timeout, self._max_poll_records)
        rewinding = self._rebalanced()
        out: list[StreamMessage[E]] = []
        handed: dict[str, int] = {}  # versions handed out in this batch, not delivered yet
        for record in records:
            if record.partition in rewinding:
                continue
            message = self._accept(record, handed)
            self._end[record.partition] = record.offset + 1
            if message is not None:
                self._open.setdefault(record.partition, set()).add(record.offset)
                out.append(message)
        return out

    def _rebalanced(self) -> set[int]:
        rewinding: set[int] = set()
        for change in self._consumer.take_rebalances():
            for p in change.revoked:
                self._end.pop(p, None)
                self._open.pop(p, None)
            if self._from_beginning:
                for p in change.assigned:
                    if p not in self._rewound:
                        first, _ = self._consumer.offsets(p)
                        self._consumer.seek(p, first)
                        self._rewound.add(p)
                        rewinding.add(p)
            self.stats.partitions = self._consumer.assignment()
        return rewinding

    def _accept(self, record: KafkaRecord, handed: dict[str, int]) -> StreamMessage[E] | None:
        self.stats.received += 1
        try:
            meta = decode_stream_record(record)
        except StreamRecordError as exc:
            self.stats.malformed += 1
            log.warning("passing over a malformed record: %s", exc)
            return None
        last = max(self.dedupe.last(meta.entity), handed.get(meta.entity, 0))
        if meta.version <= last:
            self.stats.duplicates += 1
            return None
        if last and meta.version > last + 1:
            # The relay publishes every version in order: a jump means records went
            # missing (e.g. a topic truncated by retention); say so rather than guess.
            self.stats.gaps += 1
            log.warning(
                "%s jumped from version %d to %d on %s", meta.entity, last, meta.version, self.topic
            )
        handed[meta.entity] = meta.version
        cls = self.wanted.get(meta.event_type)
        if cls is None:
            self.stats.skipped += 1
            self.dedupe.remember(meta.entity, meta.version)
            return None
        return self._typed(cls, meta, record)

    def _typed(self, cls: type[E], meta: StreamEvent, record: KafkaRecord) -> StreamMessage[E]:
        event = self.registry.decode(meta.event_type, meta.schema_version, meta.data)
        if not isinstance(event, cls):
            raise EventDecodeError(f"{meta.event_type!r} decoded to {type(event).__qualname__}")
        return StreamMessage(
            event=event,
            entity=meta.entity,
            entity_type=meta.entity_type,
            entity_id=meta.entity_id,
            version=meta.version,
            position=meta.position,
            timestamp=meta.timestamp,
            command_id=meta.command_id,
            partition=record.partition,
            offset=record.offset,
        )

    def delivered(self, message: StreamMessage[Any]) -> None:
        """Mark a message handled: later copies of it (and older versions) are dropped."""
        self.dedupe.remember(message.entity, message.version)
        self.stats.delivered += 1
        self._open.get(message.partition, set()).discard(message.offset)

    def commit(self) -> None:
        """Commit, per partition, up to the first polled event not yet delivered."""
        offsets: dict[int, int] = {}
        for partition, end in list(self._end.items()):
            waiting = self._open.get(partition)
            if waiting:
                offsets[partition] = min(waiting)
            else:
                offsets[partition] = end
                del self._end[partition]
        if not offsets:
            return
        try:
            self._consumer.commit(offsets)
        except BrokerUnavailableError as exc:
            # A rebalance took the partitions: the next owner reads them again and dedupes.
            self.stats.commit_failures += 1
            log.warning("could not commit offsets %s: %s", offsets, exc)

    # -- driving ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[StreamMessage[E]]:
        """Yield events until :meth:`stop`; a batch's offsets are committed when it is done."""
        while not self._stop.is_set():
            for message in self.poll():
                yield message
                self.delivered(message)
            self.commit()

    def run(
        self,
        handler: Callable[[StreamMessage[E]], object],
        *,
        until: Callable[[], bool] | None = None,
        poll_timeout: float = 0.5,
    ) -> None:
        """Call ``handler`` for each new event, commit after each batch, until stopped.

        An exception from the handler stops the subscription; what was handled before it
        is committed, the failing event is delivered again next time.
        """
        while not self._stop.is_set() and not (until is not None and until()):
            batch = self.poll(poll_timeout)
            try:
                for message in batch:
                    handler(message)
                    self.delivered(message)
            finally:
                self.commit()

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.stop()
        self._consumer.close()

    def __enter__(self) -> Subscription[E]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def subscribe(
    *event_types: type[E],
    kafka: KafkaSettings,
    group_id: str,
    registry: EventRegistry | None = None,
    namespace: str = "entityflow",
    from_beginning: bool = False,
    handler: Callable[[StreamMessage[E]], object] | None = None,
    until: Callable[[], bool] | None = None,
    dedupe: Deduplicator | None = None,
    topic: str | None = None,
    partitions: int = 16,
) -> Subscription[E]:
    """Subscribe to events of the given types on the namespace's event stream.

    Without ``handler``, iterate the returned subscription (and close it); with one, this
    call runs it until ``until()`` is true (checked between batches) or the handler
    raises, closes it and returns it (its ``stats`` tell what happened).
    """
    subscription = Subscription(
        kafka,
        registry if registry is not None else EventRegistry(),
        event_types,
        group_id=group_id,
        namespace=namespace,
        topic=topic,
        from_beginning=from_beginning,
        dedupe=dedupe,
        partitions=partitions,
    )
    if handler is not None:
        with subscription:
            subscription.run(handler, until=until)
    return subscription
