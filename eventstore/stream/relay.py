"""The relay: every committed event, published to the Kafka event stream, in order.

It follows the store's notification log (see ``sql/log.py``) from its tracked
position and publishes each entity event to ``{namespace}.events`` (optionally also to
``{namespace}.events.{EntityType}``), keyed by the entity's address, in the format of
``stream_format.py``. Per batch: check the lease, send, wait until Kafka acknowledged
every record (``acks=all``), and only then move the tracked position, with a fenced
compare-and-set. So:

- **at least once**: a crash between the acknowledgement and the position commit re-sends
  that batch (whole) on restart; consumers drop the repeats by (entity, version);
- **in order per entity**: one producer, one key per entity, and batches in log order;
- **one active relay per namespace**: the lease (an advisory lock on PostgreSQL, a lock
  file with SQLite) lets one relay publish while the others stand by and take over when
  it dies; a relay that lost the lease unnoticed still cannot move the position.

The position is named after the events topic's id, so a topic that was recreated (the
embedded broker keeps nothing across a restart) is refilled from the start of the log.
Workflow history events (``wf.*``) are internal and are left out unless asked for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field

from eventstore.errors import ConcurrencyConflictError, EventStoreError, StoreUnavailableError
from eventstore.kafka.admin import Admin
from eventstore.kafka.io import BrokerUnavailableError, KafkaSettings, partition_for
from eventstore.kafka.producer import Producer
from eventstore.records import Commit, FencedTracking, LogEntry
from eventstore.sql.lease import Lease, lease_for
from eventstore.sql.log import LogFollower
from eventstore.sql.store import Store
from eventstore.stream.format import (
    OutgoingRecord,
    encode_entry,
    is_snapshot,
    is_workflow_event,
)

log = logging.getLogger("entityflow.relay")


class LeaseLostError(EventStoreError, RuntimeError):
    """This relay no longer holds the namespace's lease; it must stop publishing."""


class StreamTopics:
    """The event stream's topic names in one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.events = f"{namespace}.events"

    def for_type(self, entity_type: str) -> str:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in entity_type)
        return f"{self.events}.{safe or '_'}"


@dataclass(frozen=True)
class RelayOptions:
    """How one relay publishes; the defaults suit a worker process."""

    namespace: str = "entityflow"
    partitions: int = 16
    replication_factor: int = 1
    per_type_topics: bool = False
    """Also publish each event to ``{namespace}.events.{EntityType}``."""
    workflow_events: bool = False
    """Also publish workflow history events (``wf.*``), which are internal by default."""
    batch_size: int = 2_000
    idle_wait: float = 0.2
    """How long to wait for new events before checking the lease and the topic again."""
    standby_retry: float = 1.0
    """How often a standby relay tries to take the lease."""
    identity_check_every: float = 5.0
    ack_timeout: float = 60.0
    max_in_flight: int = 4
    """Batches sent before the oldest must be acknowledged (pipelining, in log order)."""
    linger_ms: int = 5
    """How long the producer gathers records per partition (fewer, fuller requests)."""
    commit_every: float = 0.05
    """Seconds between position commits while busy (idle, the relay commits at once)."""
    retry_backoff: float = 0.5
    log_poll_interval: float = 0.01
    """SQLite only: how often the log is checked for new rows."""


@dataclass
class RelayStats:
    """What a relay did so far (read by tests, benchmarks and operators)."""

    published: int = 0
    """Events Kafka acknowledged (on the namespace topic and, if on, their type's topic)."""
    batches: int = 0
    position: int = 0
    """The last notification id whose position is committed."""
    active: bool = False
    takeovers: int = 0
    errors: list[str] = field(default_factory=list)


class Relay:
    """Publishes the store's events to Kafka; :meth:`run` blocks, :meth:`start` threads."""

    def __init__(
        self,
        store: Store,
        kafka: KafkaSettings,
        options: RelayOptions | None = None,
        *,
        lease: Lease | None = None,
        on_batch: Callable[[list[OutgoingRecord]], None] | None = None,
    ) -> None:
        self.store = store
        # Reconnect attempts are the run loop's job: a short connect timeout keeps a
        # relay that waits for the broker quick to stop.
        self.kafka = dataclasses.replace(kafka, connect_timeout=min(kafka.connect_timeout, 5.0))
        self.options = options or RelayOptions()
        self.topics = StreamTopics(self.options.namespace)
        self.lease = lease or lease_for(store, f"relay:{self.topics.events}")
        self.stats = RelayStats()
        self._on_batch = on_batch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None
        self._admin: Admin | None = None
        self._known_topics: set[str] = set()
        self._partition_count = self.options.partitions
        self._partition_cache: dict[bytes, int] = {}
        self._warned_types: set[str] = set()
        self.position_name = f"relay:{self.topics.events}"

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> Relay:
        """Run in a daemon thread (inside a worker); :meth:`close` stops it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self.run, name="entityflow-relay", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=15)
            if self._thread.is_alive():
                log.warning("the relay thread did not stop within 15 s")
            self._thread = None
        if self._producer is not None:
            with contextlib.suppress(EventStoreError):
                self._producer.flush(5)
            self._producer.close()
            self._producer = None
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self.lease.release()

    def run(self) -> None:
        """Stand by until the lease is ours, then publish until stopped or the lease is lost."""
        announced_standby = False
        while not self._stop.is_set():
            if not self.lease.try_acquire():
                if not announced_standby:
                    log.info(
                        "relay of %s on standby: another relay holds the lease", self.topics.events
                    )
                    announced_standby = True
                self._stop.wait(self.options.standby_retry)
                continue
            announced_standby = False
            self.stats.active = True
            self.stats.takeovers += 1
            log.info("relay of %s is active", self.topics.events)
            try:
                self._lead()
            except (LeaseLostError, ConcurrencyConflictError) as exc:
                self._note(f"relay stepped down: {exc}")
                self.lease.release()
            except (BrokerUnavailableError, StoreUnavailableError, EventStoreError) as exc:
                self._note(f"relay will retry in {self.options.retry_backoff}s: {exc}")
                self._stop.wait(self.options.retry_backoff)
            except Exception as exc:  # never let the relay thread die silently in a worker
                log.exception("relay failed; retrying")
                self._note(f"relay failed: {exc!r}")
                self._stop.wait(self.options.retry_backoff)
            finally:
                self.stats.active = False
        self.lease.release()

    def _note(self, message: str) -> None:
        log.warning("%s", message)
        self.stats.errors = [*self.stats.errors[-9:], message]

    # -- publishing ------------------------------------------------------------------

    def _clients(self) -> tuple[Producer, Admin]:
        if self._admin is None:
            self._admin = Admin(self.kafka)
        if self._producer is None:
            self._producer = Producer(self.kafka, linger_ms=self.options.linger_ms)
        return self._producer, self._admin

    def _identity(self, admin: Admin) -> str:
        admin.ensure_topics(
            {self.topics.events: self.options.partitions},
            replication_factor=self.options.replication_factor,
        )
        topic_id = admin.topic_id(self.topics.events)
        suffix = f"@{topic_id}" if topic_id else ""
        return f"relay:{self.topics.events}{suffix}"

    def _lead(self) -> None:
        producer, admin = self._clients()
        name = self._identity(admin)
        if name != self.position_name:
            log.info("relay position is %s", name)
        self.position_name = name
        self._known_topics.clear()
        self._partition_count = producer.partitions(self.topics.events)
        self._partition_cache.clear()
        tracked = self.store.position(name)
        position = _Position(name, tracked, tracked)
        self.stats.position = tracked or 0
        checked_at = time.monotonic()
        in_flight: deque[_Sent] = deque()
        with LogFollower(
            self.store, tracked or 0, interval=self.options.log_poll_interval
        ) as follower:
            while not self._stop.is_set():
                # With batches in flight, only glance for more; idle, wait a while.
                wait = 0.002 if in_flight else self.options.idle_wait
                batch = follower.take(self.options.batch_size, wait)
                if time.monotonic() - checked_at > self.options.identity_check_every:
                    checked_at = time.monotonic()
                    if self._identity(admin) != name:
                        log.warning("topic %s was recreated: publishing again", self.topics.events)
                        return
                # Before each publish (and now and then when idle): still ours?
                if (batch or not in_flight) and not self.lease.held():
                    raise LeaseLostError(f"the lease {self.lease.name!r} was lost")
                if batch:
                    in_flight.append(self._send(producer, admin, batch))
                full = len(in_flight) >= self.options.max_in_flight
                self._settle(in_flight, position, block=full or (bool(in_flight) and not batch))
                self._commit(position, force=not in_flight)
            # Stopping: record what Kafka acknowledged, so a clean restart re-sends nothing.
            self._settle(in_flight, position, block=False)
            self._commit(position, force=True)

    def _settle(self, in_flight: deque[_Sent], position: _Position, *, block: bool) -> None:
        """Move the position past the oldest batches Kafka fully acknowledged, in order.

        With ``block``, wait for the oldest batch first. A failed send raises: the relay
        starts again from the tracked position and sends everything after it again.
        """
        done: list[_Sent] = []
        while in_flight:
            head = in_flight[0]
            if block and not done:
                self._await(head)
            elif not all(f.done() for f in head.futures):
                break
            for future in head.futures:
                future.result()  # raises BrokerUnavailableError when it was not acknowledged
            done.append(in_flight.popleft())
        if not done:
            return
        position.acknowledged = done[-1].last_id
        self.stats.batches += len(done)
        for sent in done:
            self.stats.published += len(sent.records)
            if self._on_batch is not None:
                self._on_batch(sent.records)

    def _commit(self, position: _Position, *, force: bool) -> None:
        """Record the acknowledged position (fenced), at most every ``commit_every`` seconds.

        Coalescing commits costs nothing in safety: after a crash the relay re-sends what
        it published since the last one, which the stream's consumers drop anyway.
        """
        last = position.acknowledged
        if last is None or last == position.expected:
            return
        now = time.monotonic()
        if not force and now - position.committed_at < self.options.commit_every:
            return
        self.store.commit(
            Commit(
                positions=[
                    FencedTracking(
                        application_name=position.name,
                        notification_id=last,
                        expected=position.expected,
                    )
                ]
            )
        )
        position.expected = last
        position.committed_at = now
        self.stats.position = last

    def _await(self, sent: _Sent) -> None:
        deadline = sent.at + self.options.ack_timeout
        for future in sent.futures:
            while not future.done():
                if self._stop.is_set():
                    raise BrokerUnavailableError("stopped before Kafka acknowledged")
                if time.monotonic() > deadline:
                    raise BrokerUnavailableError(
                        f"Kafka did not acknowledge {len(sent.futures)} records within "
                        f"{self.options.ack_timeout}s"
                    )
                with contextlib.suppress(TimeoutError, BrokerUnavailableError):
                    future.result(timeout=0.5)

    def _included(self, record: OutgoingRecord) -> bool:
        return self.options.workflow_events or not is_workflow_event(record.event_type)

    def _send(self, producer: Producer, admin: Admin, batch: list[LogEntry]) -> _Sent:
        records = [
            r
            for r in (encode_entry(self.store, n) for n in batch if not is_snapshot(n))
            if self._included(r)
        ]
        main: list[tuple[bytes | None, bytes, Mapping[str, bytes], int | None]] = []
        by_type: dict[str, list[tuple[bytes | None, bytes, Mapping[str, bytes], int | None]]] = {}
        for record in records:
            if record.as_stored and record.event_type not in self._warned_types:
                self._warned_types.add(record.event_type)
                log.warning(
                    "event type %r is not registered with this relay: published as stored",
                    record.event_type,
                )
            main.append((record.key, record.value, record.headers, self._partition(record.key)))
            if self.options.per_type_topics:
                topic = self.topics.for_type(record.entity_type)
                by_type.setdefault(topic, []).append(
                    (record.key, record.value, record.headers, None)
                )
        futures = [producer.send_all(self.topics.events, main)]
        for topic, items in by_type.items():
            if topic not in self._known_topics:
                admin.ensure_topics(
                    {topic: self.options.partitions},
                    replication_factor=self.options.replication_factor,
                )
                self._known_topics.add(topic)
            futures.append(producer.send_all(topic, items))
        return _Sent(batch[-1].position, records, futures, time.monotonic())

    def _partition(self, key: bytes) -> int:
        """Kafka's default partition of a key, remembered (entities publish again and again)."""
        found = self._partition_cache.get(key)
        if found is None:
            if len(self._partition_cache) >= 200_000:
                self._partition_cache.clear()
            found = self._partition_cache[key] = partition_for(key, self._partition_count)
        return found


@dataclass
class _Position:
    """The relay's tracked position and the value its next compare-and-set expects."""

    name: str
    expected: int | None
    """The tracked position as last read or written: the compare-and-set's expectation."""
    acknowledged: int | None
    """The last notification id of the newest batch Kafka fully acknowledged."""
    committed_at: float = 0.0


@dataclass(frozen=True, slots=True)
class _Sent:
    """One batch handed to the producer, not yet known to be acknowledged."""

    last_id: int
    records: list[OutgoingRecord]
    futures: list[Future[int]]
    at: float
