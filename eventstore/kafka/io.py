"""The one module that talks to Kafka (through kafka-python).

Everything else sees small typed wrappers: a producer whose sends resolve standard
futures once the broker acknowledged them (``acks=all``, idempotent), a group consumer
that reports partition assignment and seeks where it is told, a tail consumer for reply
topics and the event stream, and topic administration. Connection failures become
:class:`BrokerUnavailableError` with a message that says what to check.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.errors import (
    FencedInstanceIdError,
    KafkaError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata

from eventstore.errors import EventStoreError

log = logging.getLogger("entityflow.kafka")


class BrokerUnavailableError(EventStoreError, ConnectionError):
    """The Kafka cluster could not be reached, or did not acknowledge in time."""


class DuplicateMemberError(EventStoreError, RuntimeError):
    """Another group member joined with this member's static identity and fenced it out."""


@dataclass(frozen=True)
class KafkaSettings:
    """How to reach the cluster and how eagerly to talk to it."""

    bootstrap_servers: str
    client_id: str = "entityflow"
    request_timeout_ms: int = 15_000
    delivery_timeout_ms: int = 30_000
    session_timeout_ms: int = 6_000
    heartbeat_interval_ms: int = 1_000
    # Also the rebalance timeout: how long the broker may hold a JoinGroup open while it
    # waits for members that will never come back (seen after a broker restarted empty).
    # A worker polls every few milliseconds, so 30 s between polls means it is stuck.
    max_poll_interval_ms: int = 30_000
    # Apache Kafka answers a waiting fetch as soon as a record is appended, so a long wait
    # costs no latency and saves the idle fetch requests a short one repeats. Re-decided
    # with the bench (W1 updates over HTTP, alternating runs on one broker): 100 ms gave
    # 249/s and 1.51 CPU-ms per update (API + worker + broker), 500 ms 243/s and 1.58:
    # no difference worth a setting, so Kafka's own default stays.
    fetch_max_wait_ms: int = 500
    # Wait 2 ms for more records before a produce request. kafka-python wakes its sender
    # and opens a batch per record when it sends at once, so under load each command
    # became a request of its own. Measured on Apache Kafka (W1 updates over HTTP, one
    # API + one worker process, PostgreSQL, alternating on one broker, three pairs per
    # sitting): at load average ~10, 723/s and p99 88 ms with 2 ms, 515/s and 187 ms with
    # 0; at ~6, 562/s and 509/s, p99 134 ms both. API CPU per update fell in every pair
    # (0.52 vs 0.60 ms, then 0.60 vs 0.75); an idle hop pays at most the 2 ms.
    linger_ms: int = 2
    connect_timeout: float = 30.0
    bootstrap_timeout_ms: int = 5_000
    # A group leader only notices a topic that appeared (or grew) after it assigned
    # partitions when it next refreshes metadata; the client's default is five minutes,
    # which after a broker that came back empty leaves a worker idle that long.
    metadata_max_age_ms: int = 5_000
    # kafka-python backs off up to 30 s between reconnects (the Java client: 1 s); after
    # a broker restart that took a while, every client then sat out half a minute with
    # no node to talk to ("No node_id provided") while the broker was already back.
    reconnect_backoff_max_ms: int = 1_000
    extra: Mapping[str, Any] = field(default_factory=dict)

    def common(self) -> dict[str, Any]:
        return {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
            "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
            "metadata_max_age_ms": self.metadata_max_age_ms,
            "reconnect_backoff_max_ms": self.reconnect_backoff_max_ms,
            **self.extra,
        }


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    timestamp_ms: int


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), so our choice matches any other client's."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def _connect(what: str, settings: KafkaSettings, make: Callable[[], Any]) -> Any:
    """Create a client, retrying with backoff while the cluster is unreachable."""
    deadline = time.monotonic() + settings.connect_timeout
    delay = 0.25
    while True:
        try:
            return make()
        except (KafkaError, OSError) as exc:
            if time.monotonic() + delay > deadline:
                raise BrokerUnavailableError(
                    f"cannot reach Kafka at {settings.bootstrap_servers} for the {what} "
                    f"({exc}); check ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS and that the broker runs"
                ) from exc
            log.warning("Kafka unreachable for the %s (%s); retrying in %.2fs", what, exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class Producer:
    """An idempotent, ``acks=all`` producer whose sends resolve ``concurrent.futures``.

    An idempotent producer whose broker lost its producer state (a restarted embedded
    broker, an expired producer id) enters a fatal state and fails every later send;
    this wrapper notices and replaces it, so a process outlives its broker.
    """

    def __init__(self, settings: KafkaSettings, *, linger_ms: int | None = None) -> None:
        self.settings = settings
        self._linger_ms = settings.linger_ms if linger_ms is None else linger_ms
        self._lock = threading.Lock()
        self._failures = 0
        self._rebuilt_at = 0.0
        self._producer: KafkaProducer = self._make()

    def _make(self) -> KafkaProducer:
        settings = self.settings
        return _connect(
            "producer",
            settings,
            lambda: KafkaProducer(
                **settings.common(),
                acks="all",
                enable_idempotence=True,
                # entityflow exports its own Prometheus metrics; kafka-python's per-record
                # sensors cost CPU on every send for numbers nobody reads.
                metrics_enabled=False,
                linger_ms=self._linger_ms,
                delivery_timeout_ms=settings.delivery_timeout_ms,
                max_block_ms=settings.request_timeout_ms,
                retry_backoff_ms=100,
            ),
        )

    def _fatal(self) -> bool:
        manager = getattr(self._producer, "_transaction_manager", None)
        check = getattr(manager, "has_fatal_error", None)
        return bool(check()) if callable(check) else self._failures >= 3

    def _heal(self) -> None:
        """Replace a producer stuck in a fatal state (at most every few seconds)."""
        if not self._failures or not self._fatal():
            return
        with self._lock:
            if time.monotonic() - self._rebuilt_at < 2.0 or not self._fatal():
                return
            self._rebuilt_at = time.monotonic()
            old = self._producer
            log.warning("the Kafka producer is in a fatal state; replacing it")
            self._producer = self._make()
            self._failures = 0
        with contextlib.suppress(Exception):
            old.close(timeout=1)

    def partitions(self, topic: str) -> int:
        """How many partitions the topic has now (asks the cluster if not known yet)."""
        try:
            found = self._producer.partitions_for(topic)
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot read metadata of {topic}: {exc}") from exc
        if not found:
            raise BrokerUnavailableError(f"topic {topic} has no partitions (does it exist?)")
        return len(found)

    def send(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Mapping[str, bytes] | None = None,
        partition: int | None = None,
    ) -> Future[KafkaRecord]:
        done: Future[KafkaRecord] = Future()
        hdrs = list((headers or {}).items())
        self._heal()
        try:
            pending = self._producer.send(
                topic, value=value, key=key, headers=hdrs, partition=partition
            )
        except (KafkaError, AssertionError) as exc:
            self._failures += 1
            done.set_exception(BrokerUnavailableError(f"Kafka refused a send to {topic}: {exc}"))
            return done

        def ok(md: Any) -> None:
            self._failures = 0
            if not done.done():
                record = KafkaRecord(
                    topic, md.partition, md.offset, key, value, dict(hdrs), md.timestamp
                )
                done.set_result(record)

        def failed(exc: BaseException) -> None:
            self._failures += 1
            if not done.done():
                done.set_exception(
                    BrokerUnavailableError(f"Kafka did not acknowledge a send to {topic}: {exc}")
                )

        pending.add_callback(ok)
        pending.add_errback(failed)
        return done

    def send_all(
        self,
        topic: str,
        records: Sequence[tuple[bytes | None, bytes, Mapping[str, bytes], int | None]],
    ) -> Future[int]:
        """Send ``(key, value, headers, partition)`` records; one future for all of them.

        It resolves to their count once the broker acknowledged every one, or fails with
        the first error. Cheaper than :meth:`send` per record (the event stream relay sends
        thousands per second); ``partition=None`` uses the default partitioner.
        """
        done: Future[int] = Future()
        remaining = [len(records)]
        lock = threading.Lock()
        if not records:
            done.set_result(0)
            return done

        def ok(_: Any) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._failures = 0
                if not done.done():
                    done.set_result(len(records))

        def failed(exc: BaseException) -> None:
            self._failures += 1
            with lock:
                if done.done():
                    return
                done.set_exception(
                    BrokerUnavailableError(f"Kafka did not acknowledge a send to {topic}: {exc}")
                )

        self._heal()
        for key, value, headers, partition in records:
            try:
                pending = self._producer.send(
                    topic, value=value, key=key, headers=list(headers.items()), partition=partition
                )
            except (KafkaError, AssertionError) as exc:
                failed(exc)
                break
            pending.add_callback(ok)
            pending.add_errback(failed)
        return done

    def flush(self, timeout: float | None = None) -> None:
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            raise BrokerUnavailableError(f"Kafka flush failed: {exc}") from exc

    def close(self, timeout: float = 5.0) -> None:
        self._producer.close(timeout=timeout)


class Admin:
    """Topic administration: create what is missing, describe, delete."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._admin: KafkaAdminClient = _connect(
            "admin client", settings, lambda: KafkaAdminClient(**settings.common())
        )

    def ensure_topics(
        self,
        topics: Mapping[str, int],
        *,
        replication_factor: int = 1,
        configs: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Create the topics that do not exist yet; existing ones are left as they are."""
        try:
            existing = set(self._admin.list_topics())
            missing = [
                NewTopic(
                    name,
                    num_partitions=n,
                    replication_factor=replication_factor,
                    topic_configs=dict((configs or {}).get(name, {})),
                )
                for name, n in topics.items()
                if name not in existing
            ]
            if missing:
                with contextlib.suppress(TopicAlreadyExistsError):
                    self._admin.create_topics(missing)
                self._wait_usable(t.name for t in missing)
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot create topics {list(topics)}: {exc}") from exc

    def _wait_usable(self, topics: Iterable[str], timeout: float = 30.0) -> None:
        """Wait until every partition of new topics has a leader.

        Creation is asynchronous: a group leader that assigns partitions before the
        metadata shows them assigns none, and may not notice later that they appeared.
        (A topic someone else created at the same moment counts with its own partitions.)
        """
        deadline = time.monotonic() + timeout
        waiting = set(topics)
        while waiting:
            for desc in self._admin.describe_topics(sorted(waiting)):
                parts = desc.get("partitions") or []
                led = all(not p.get("error_code") and p.get("leader_id", -1) >= 0 for p in parts)
                if not desc.get("error_code") and parts and led:
                    waiting.discard(desc.get("name"))
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(
                    f"topics {sorted(waiting)} were created but have no leaders after "
                    f"{timeout:.0f}s; is the broker healthy?"
                )
            time.sleep(0.05)

    def topic_id(self, topic: str) -> str | None:
        """The cluster's id of the topic's current incarnation (None if the broker has none)."""
        try:
            (desc,) = self._admin.describe_topics([topic])
        except (KafkaError, ValueError) as exc:
            raise BrokerUnavailableError(f"cannot describe topic {topic}: {exc}") from exc
        if desc.get("error_code"):
            return None
        tid = desc.get("topic_id")
        if not tid or set(str(tid)) <= {"0", "-"}:
            return None
        return str(tid)

    def partitions(self, topic: str) -> int:
        try:
            (desc,) = self._admin.describe_topics([topic])
        except (KafkaError, ValueError) as exc:
            raise BrokerUnavailableError(f"cannot describe topic {topic}: {exc}") from exc
        return len(desc.get("partitions") or [])

    def delete_topics(self, topics: Iterable[str]) -> None:
        try:
            with contextlib.suppress(UnknownTopicOrPartitionError):  # gone already: fine
                self._admin.delete_topics(list(topics))
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot delete topics: {exc}") from exc

    def close(self) -> None:
        self._admin.close()


def _record(r: Any) -> KafkaRecord:
    return KafkaRecord(
        r.topic,
        r.partition,
        r.offset,
        r.key,
        r.value,
        dict(r.headers or []),
        r.timestamp,
    )


@dataclass(frozen=True, slots=True)
class Rebalance:
    """A change of ownership that happened during a poll: act on it before the records."""

    revoked: list[int]
    assigned: list[int]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Runs on kafka-python's IO thread, where calling back into the client can deadlock.

    It only takes note; the owner acts on the change right after the poll returns, and
    seeks before the next fetch (records fetched from any other position are dropped).
    """

    def __init__(self, owner: GroupConsumer) -> None:
        self._owner = owner

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._owner._note(revoked=sorted(tp.partition for tp in revoked))

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._owner._note(assigned=sorted(tp.partition for tp in assigned))


class GroupConsumer:
    """A member of a consumer group on one topic; Kafka decides which partitions it owns.

    Changes of ownership are reported by :meth:`take_rebalances` after each poll, on the
    caller's thread, where the owner seeks its new partitions to where it wants to read.

    Rebalancing is cooperative (KIP-429): a member keeps working on the partitions it
    keeps while the group moves the others, instead of every member stopping for every
    join. With ``instance_id`` the member is static (KIP-345): a process that restarts
    under the same identity gets its partitions back at once, without a rebalance; one
    that goes away for good holds them until its session times out.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        topic: str,
        group_id: str,
        *,
        instance_id: str | None = None,
        auto_offset_reset: str = "earliest",
        max_poll_records: int = 500,
    ) -> None:
        self.topic = topic
        self.instance_id = instance_id
        self._pending: list[Rebalance] = []
        self._pending_lock = threading.Lock()
        self._joining_since: float | None = time.monotonic()
        self._settings = settings

        def make() -> KafkaConsumer:
            return KafkaConsumer(
                **settings.common(),
                group_id=group_id,
                enable_auto_commit=False,
                metrics_enabled=False,
                auto_offset_reset=auto_offset_reset,
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=settings.heartbeat_interval_ms,
                max_poll_interval_ms=settings.max_poll_interval_ms,
                fetch_max_wait_ms=settings.fetch_max_wait_ms,
                max_poll_records=max_poll_records,
                partition_assignment_strategy=[CooperativeStickyAssignor],
                group_instance_id=instance_id,
            )

        self._make = make
        self._consumer: KafkaConsumer = _connect("group consumer", settings, make)
        self._subscribe()

    def _subscribe(self) -> None:
        """Join once this client's metadata shows the topic's partitions.

        A leader that assigns before it sees them gives every member nothing (the range
        assignor logs "No partition metadata"), and the group can then sit idle.
        """
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            try:
                if self._consumer.partitions_for_topic(self.topic):
                    break
            except KafkaError as exc:
                log.warning("metadata of %s: %s", self.topic, exc)
            time.sleep(0.1)
        self._consumer.subscribe([self.topic], listener=_Listener(self))

    def _note(self, *, revoked: list[int] | None = None, assigned: list[int] | None = None) -> None:
        with self._pending_lock:
            self._pending.append(Rebalance(revoked or [], assigned or []))
            if assigned is not None:
                self._joining_since = None  # even an empty assignment ends the join
            elif self._joining_since is None:
                self._joining_since = time.monotonic()

    def joining_for(self) -> float:
        """Seconds since this member gave up its partitions without an assignment since.

        0 once the group has answered the join (with partitions or with none). Only a
        completed join reports an assignment, so a long wait here is a join that hangs,
        whatever state the client believes it is in.
        """
        since = self._joining_since
        return 0.0 if since is None else time.monotonic() - since

    def take_rebalances(self) -> list[Rebalance]:
        with self._pending_lock:
            pending, self._pending = self._pending, []
        return pending

    def poll(self, timeout: float, max_records: int) -> list[KafkaRecord]:
        try:
            batches = self._consumer.poll(
                timeout_ms=int(timeout * 1000), max_records=max_records, update_offsets=True
            )
        except FencedInstanceIdError as exc:
            raise DuplicateMemberError(
                f"another member of the group joined as {self.instance_id!r} and took over "
                "this one's partitions; give each worker its own ENTITYFLOW_WORKER_ID"
            ) from exc
        except KafkaError as exc:
            log.warning("poll on %s failed: %s", self.topic, exc)
            return []
        out: list[KafkaRecord] = []
        for records in batches.values():
            out.extend(_record(r) for r in records)
        return out

    def seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(self.topic, partition), offset)

    def highwater(self, partition: int) -> int | None:
        """The partition's end as the last fetch response said (no round trip)."""
        try:
            end = self._consumer.highwater(TopicPartition(self.topic, partition))
        except (AssertionError, KafkaError):  # not assigned (any more)
            return None
        return None if end is None else int(end)

    def offsets(self, partition: int) -> tuple[int, int]:
        tp = TopicPartition(self.topic, partition)
        try:
            first = self._consumer.beginning_offsets([tp])[tp]
            end = self._consumer.end_offsets([tp])[tp]
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot read offsets of {tp}: {exc}") from exc
        return int(first), int(end)

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Store consumed positions in Kafka (subscriptions; workers track in the store)."""
        try:
            self._consumer.commit(
                {
                    TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                    for p, o in offsets.items()
                }
            )
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot commit offsets on {self.topic}: {exc}") from exc

    def assignment(self) -> list[int]:
        return sorted(tp.partition for tp in self._consumer.assignment())

    def pause_all(self) -> None:
        """Stop fetching every assigned partition; polls keep the membership alive."""
        self._consumer.pause(*self._consumer.assignment())

    def resume_all(self) -> None:
        self._consumer.resume(*self._consumer.paused())

    def group_state(self) -> str:
        """This member's view of its group (``STABLE``, ``REBALANCING``, ``UNJOINED``)."""
        state = str(self._consumer.group_metadata().state)  # kafka-python: "<stable>"
        return state.strip("<>").upper()

    def rejoin(self) -> None:
        """Leave and join the group again with a new client: the way out of a stuck join.

        The partitions this member held count as revoked; the next poll reports it.
        """
        held = self.assignment()
        self.close()
        self._consumer = _connect("group consumer", self._settings, self._make)
        self._subscribe()
        with self._pending_lock:
            self._joining_since = time.monotonic()
        if held:
            self._note(revoked=held)

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        except KafkaError as exc:
            log.warning("closing the consumer of %s: %s", self.topic, exc)


class TailConsumer:
    """Reads every partition of a topic without a group (reply topics, ``tail``)."""

    def __init__(
        self, settings: KafkaSettings, topic: str, *, from_beginning: bool = False
    ) -> None:
        self.topic = topic
        self._settings = settings
        self._from_beginning = from_beginning
        self._lock = threading.Lock()
        self._consumer: KafkaConsumer = _connect(
            "tail consumer",
            settings,
            lambda: KafkaConsumer(
                **settings.common(),
                group_id=None,
                enable_auto_commit=False,
                metrics_enabled=False,
                auto_offset_reset="earliest" if from_beginning else "latest",
                fetch_max_wait_ms=settings.fetch_max_wait_ms,
            ),
        )
        self._partitions: list[int] = []
        self.assign()

    def assign(self) -> None:
        """(Re)assign all partitions of the topic, e.g. after the broker came back empty."""
        parts = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        # A topic the client does not know yet has no partitions: nothing to seek (a seek
        # without partitions raises); the caller assigns again once ``partitions`` is empty.
        if tps and self._from_beginning:
            self._consumer.seek_to_beginning(*tps)
        elif tps:
            self._consumer.seek_to_end(*tps)
        self._partitions = sorted(parts)

    @property
    def partitions(self) -> Sequence[int]:
        return tuple(self._partitions)

    def poll(self, timeout: float, max_records: int = 500) -> list[KafkaRecord]:
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout * 1000), max_records=max_records)
        except KafkaError as exc:
            log.warning("poll on %s failed: %s", self.topic, exc)
            return []
        out: list[KafkaRecord] = []
        for records in batches.values():
            out.extend(_record(r) for r in records)
        return out

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        except KafkaError as exc:
            log.warning("closing the tail consumer of %s: %s", self.topic, exc)
