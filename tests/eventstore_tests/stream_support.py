"""Helpers for the event stream tests: write events straight to a store, read a topic back."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from eventstore import Commit, EventRegistry, RecordedEvent, Store
from eventstore.kafka.io import KafkaRecord, KafkaSettings
from eventstore.kafka.tail_consumer import TailConsumer
from eventstore.stream.format import StreamEvent, decode_stream_record
from examples.shop.inventory import (
    ReservationCommitted,
    ReservationReleased,
    Restocked,
    StockReserved,
)

INVENTORY_EVENTS = (Restocked, StockReserved, ReservationReleased, ReservationCommitted)


def inventory_registry() -> EventRegistry:
    return EventRegistry(INVENTORY_EVENTS)


def write_restocks(
    store: Store, skus: Iterable[str], per_sku: int, *, batch: int = 200, start: int = 1
) -> int:
    """Record ``per_sku`` Restocked events (quantity = version) per SKU, interleaved.

    Returns how many events were written. Versions continue from ``start``.
    """
    names = list(skus)
    events = [
        RecordedEvent(f"InventoryItem/{sku}", version, Restocked(quantity=version))
        for version in range(start, start + per_sku)
        for sku in names
    ]
    for i in range(0, len(events), batch):
        store.commit(Commit(events=events[i : i + batch]))
    return len(events)


def read_topic(
    kafka: KafkaSettings, topic: str, count: int, *, timeout: float = 60.0, settle: float = 0.0
) -> list[KafkaRecord]:
    """Read a topic from the beginning until ``count`` records arrived (then ``settle`` more s)."""
    consumer = TailConsumer(kafka, topic, from_beginning=True)
    records: list[KafkaRecord] = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            if not consumer.partitions:
                consumer.assign()
            records += consumer.poll(0.2, 5_000)
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            records += consumer.poll(0.2, 5_000)
    finally:
        consumer.close()
    return records


def by_entity(records: Iterable[KafkaRecord]) -> dict[str, list[int]]:
    """Entity versions in topic order (each entity lives in one partition)."""
    found: dict[str, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        event = decode_stream_record(record)
        found[event.entity].append(event.version)
    return dict(found)


def decoded(records: Iterable[KafkaRecord]) -> list[StreamEvent]:
    return [decode_stream_record(r) for r in sorted(records, key=lambda r: (r.partition, r.offset))]


def assert_resends_only(versions: dict[str, list[int]], expected: dict[str, int]) -> int:
    """Every version 1..n present; a step back only re-sends a range already sent (in order).

    Returns how many records were repeats.
    """
    repeats = 0
    assert set(versions) == set(expected), sorted(set(expected) ^ set(versions))[:10]
    for entity, seq in versions.items():
        highest = 0
        previous = 0
        for v in seq:
            if v > highest:
                assert v == highest + 1, f"{entity}: gap before v{v} in {seq}"
                highest = v
            else:
                repeats += 1
                assert v == previous + 1 or v <= highest, f"{entity}: {seq}"
                if v != previous + 1:
                    # A re-send restarts at an earlier (or the same) version, then runs in order.
                    assert v <= previous, f"{entity}: out of order at v{v} in {seq}"
            previous = v
        assert highest == expected[entity], f"{entity}: reached v{highest} of {expected[entity]}"
    return repeats
