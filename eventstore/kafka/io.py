"""What every Kafka client of entityflow shares: how to reach the cluster, what comes back.

The producer, the admin client and the two consumers (a module each, beside this one)
are built from :class:`KafkaSettings` through :func:`connect`, hand out
:class:`KafkaRecord` values, and turn connection failures into
:class:`BrokerUnavailableError` with a message that says what to check.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

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


def connect(what: str, settings: KafkaSettings, make: Callable[[], Any]) -> Any:
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


def record_from(r: Any) -> KafkaRecord:
    return KafkaRecord(
        r.topic,
        r.partition,
        r.offset,
        r.key,
        r.value,
        dict(r.headers or []),
        r.timestamp,
    )


def records_from(batches: Mapping[Any, Iterable[Any]]) -> list[KafkaRecord]:
    """What one ``KafkaConsumer.poll`` returned (records per partition), as one list."""
    return [record_from(r) for records in batches.values() for r in records]
