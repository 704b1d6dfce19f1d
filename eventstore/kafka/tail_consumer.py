"""Reading a whole topic without a group: reply topics and the event stream's ``tail``.

A reader that must see every partition (every reply, every event) cannot share them
with a group, so it assigns itself all of them, again after the broker came back empty.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from eventstore.kafka.io import KafkaRecord, KafkaSettings, connect, records_from
from eventstore.kafka.stuck_calls import WATCHDOG, abandon

log = logging.getLogger("entityflow.kafka")


class TailConsumer:
    """Reads every partition of a topic without a group (reply topics, ``tail``)."""

    def __init__(
        self, settings: KafkaSettings, topic: str, *, from_beginning: bool = False
    ) -> None:
        self.topic = topic
        self._settings = settings
        self._from_beginning = from_beginning
        self._consumer: KafkaConsumer = self._connect()
        self._partitions: list[int] = []
        self._read_up_to: dict[int, int] = {}
        self.assign()

    def _connect(self) -> KafkaConsumer:
        settings = self._settings
        consumer: KafkaConsumer = connect(
            "tail consumer",
            settings,
            lambda: KafkaConsumer(
                **settings.common(),
                group_id=None,
                enable_auto_commit=False,
                metrics_enabled=False,
                auto_offset_reset="earliest" if self._from_beginning else "latest",
                fetch_max_wait_ms=settings.fetch_max_wait_ms,
            ),
        )
        return consumer

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
        with WATCHDOG.guard(self._consumer._net, f"the poll on {self.topic}") as call:
            try:
                batches = self._consumer.poll(
                    timeout_ms=int(timeout * 1000), max_records=max_records
                )
            except KafkaError as exc:
                log.warning("poll on %s failed: %s", self.topic, exc)
                batches = {}
        if call.tripped:
            # A fresh client goes on from where this one had read.
            abandon(self._consumer, f"tail consumer of {self.topic}")
            self._consumer = self._connect()
            self.assign()
            for partition, offset in self._read_up_to.items():
                if partition in self._partitions:
                    self._consumer.seek(TopicPartition(self.topic, partition), offset)
            return []
        for tp, batch in batches.items():
            if batch:
                self._read_up_to[tp.partition] = batch[-1].offset + 1
        return records_from(batches)

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        except KafkaError as exc:
            log.warning("closing the tail consumer of %s: %s", self.topic, exc)
