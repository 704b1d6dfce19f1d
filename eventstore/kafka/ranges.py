"""Reading a stretch of a partition by offset, without a group: how logs are browsed.

The dead-letter log is read by operators (``GET /deadletters``), a page at a time and
from wherever the last page ended; nothing is consumed, nothing is committed. One
group-less consumer per reader, assigned to one partition per read, under a lock.
"""

from __future__ import annotations

import contextlib
import threading
import time

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from eventstore.kafka.io import (
    BrokerUnavailableError,
    KafkaRecord,
    KafkaSettings,
    connect,
    record_from,
)

__all__ = ["RangeReader"]


class RangeReader:
    """Reads records ``[start, start + limit)`` of one partition of one topic on demand."""

    def __init__(self, settings: KafkaSettings, topic: str) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self._consumer: KafkaConsumer = connect(
            "range reader",
            settings,
            lambda: KafkaConsumer(
                **settings.common(),
                group_id=None,
                enable_auto_commit=False,
                metrics_enabled=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=100,
            ),
        )

    def partitions(self) -> list[int]:
        """The topic's partitions (none if the topic does not exist)."""
        try:
            with self._lock:
                return sorted(self._consumer.partitions_for_topic(self.topic) or ())
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot read metadata of {self.topic}: {exc}") from exc

    def offsets(self, partition: int) -> tuple[int, int]:
        """(first offset still in the log, next offset to be written)."""
        tp = TopicPartition(self.topic, partition)
        try:
            with self._lock:
                first = self._consumer.beginning_offsets([tp])[tp]
                end = self._consumer.end_offsets([tp])[tp]
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot read offsets of {tp}: {exc}") from exc
        return int(first), int(end)

    def read(
        self, partition: int, start: int, limit: int, *, timeout: float = 10.0
    ) -> list[KafkaRecord]:
        """Up to ``limit`` records from ``start`` (or the log's first, if later) to the end
        the log had when asked; fewer if the broker does not hand them over in time."""
        first, end = self.offsets(partition)
        start = max(start, first)
        if limit <= 0 or start >= end:
            return []
        tp = TopicPartition(self.topic, partition)
        out: list[KafkaRecord] = []
        deadline = time.monotonic() + timeout
        try:
            with self._lock:
                self._consumer.assign([tp])
                self._consumer.seek(tp, start)
                while len(out) < limit and time.monotonic() < deadline:
                    batches = self._consumer.poll(timeout_ms=200, max_records=limit - len(out))
                    out += [record_from(r) for r in batches.get(tp, ()) if r.offset < end]
                    if self._consumer.position(tp) >= end:
                        break
        except KafkaError as exc:
            raise BrokerUnavailableError(f"cannot read {tp} from {start}: {exc}") from exc
        return out[:limit]

    def close(self) -> None:
        with contextlib.suppress(KafkaError):  # nothing was consumed or committed
            self._consumer.close(autocommit=False)
