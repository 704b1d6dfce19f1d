"""Watching the event stream as a person: ``entityflow tail``.

:class:`StreamFilter` selects events by type and by entity (an exact address, an entity
type, or a glob such as ``InventoryItem/sku-*``); :func:`tail` reads every partition of
the stream without joining a group (so it never disturbs subscribers) and writes one
line per event, or the raw JSON record with ``as_json``.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from eventstore.kafka.admin import Admin
from eventstore.kafka.io import KafkaSettings
from eventstore.kafka.tail_consumer import TailConsumer
from eventstore.stream.format import (
    StreamEvent,
    StreamRecordError,
    decode_stream_record,
    format_line,
)


@dataclass(frozen=True)
class StreamFilter:
    """Which events to show: any of ``types`` (empty: all) of entities matching ``entity``."""

    types: frozenset[str] = frozenset()
    entity: str | None = None

    @classmethod
    def of(cls, types: Iterable[str] = (), entity: str | None = None) -> StreamFilter:
        names = frozenset(t.strip() for t in types if t.strip())
        return cls(names, entity.strip() if entity and entity.strip() else None)

    def matches(self, event: StreamEvent) -> bool:
        if self.types and event.event_type not in self.types:
            return False
        pattern = self.entity
        if pattern is None:
            return True
        if "/" not in pattern and not any(c in pattern for c in "*?["):
            return event.entity_type == pattern
        return fnmatch.fnmatchcase(event.entity, pattern)


@dataclass
class TailOptions:
    from_beginning: bool = False
    as_json: bool = False
    count: int | None = None
    """Stop after printing this many events."""
    duration: float | None = None
    """Stop after this many seconds."""
    partitions: int = 16
    """Used only to create the topic when it does not exist yet."""


def tail(
    kafka: KafkaSettings,
    topic: str,
    selection: StreamFilter,
    options: TailOptions,
    *,
    out: Callable[[str], None],
    err: Callable[[str], None],
    stop: threading.Event | None = None,
) -> int:
    """Print matching events until stopped (or count/duration reached); return how many."""
    admin = Admin(kafka)
    try:
        admin.ensure_topics({topic: options.partitions})
    finally:
        admin.close()
    consumer = TailConsumer(kafka, topic, from_beginning=options.from_beginning)
    stop = stop or threading.Event()
    deadline = None if options.duration is None else time.monotonic() + options.duration
    shown = 0
    try:
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            records = consumer.poll(0.2)
            records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
            for record in records:
                try:
                    event = decode_stream_record(record)
                except StreamRecordError as exc:
                    err(f"! {exc}")
                    continue
                if not selection.matches(event):
                    continue
                out(record.value.decode() if options.as_json else format_line(event))
                shown += 1
                if options.count is not None and shown >= options.count:
                    return shown
    finally:
        consumer.close()
    return shown
