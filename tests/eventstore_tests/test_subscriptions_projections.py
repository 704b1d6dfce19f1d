"""Projections on SQLite and PostgreSQL: the shop's low-stock report, exactly once in effect."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from eventstore import Commit, EventRegistry, RecordedEvent, Store
from eventstore.kafka.io import KafkaSettings
from eventstore.kafka.producer import Producer
from eventstore.stream.projections import ProjectionRunner, ReadModelDB, applied_versions
from eventstore.stream.relay import Relay, RelayOptions, StreamTopics
from examples.shop import LowStockReport, StockLevel
from examples.shop.inventory import (
    ReservationCommitted,
    ReservationReleased,
    Restocked,
    StockReserved,
)
from tests.eventstore_tests.stream_support import INVENTORY_EVENTS, read_topic

pytestmark = pytest.mark.kafka


@pytest.fixture
def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap)


@pytest.fixture
def store(store_url: str, kafka: KafkaSettings, namespace: str) -> Iterator[Store]:
    with Store(store_url, EventRegistry(INVENTORY_EVENTS)) as s:
        relay = Relay(s, kafka, RelayOptions(namespace=namespace, partitions=3)).start()
        try:
            yield s
        finally:
            relay.close()


def record(store: Store, sku: str, *events: object) -> None:
    address = f"InventoryItem/{sku}"
    start = store.last_version(address) + 1
    store.commit(
        Commit(events=[RecordedEvent(address, start + n, e) for n, e in enumerate(events)])  # type: ignore[arg-type]
    )


def run_until(runner: ProjectionRunner, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the projection did not catch up"
        runner.step(0.2)


def shop_history(store: Store) -> None:
    record(store, "bolt", Restocked(quantity=10), StockReserved(reservation_id="o1", quantity=8))
    record(store, "nut", Restocked(quantity=3))
    record(
        store,
        "gear",
        Restocked(quantity=20),
        StockReserved(reservation_id="o2", quantity=5),
        ReservationCommitted(reservation_id="o2", quantity=5),
        StockReserved(reservation_id="o3", quantity=4),
        ReservationReleased(reservation_id="o3", quantity=4),
    )


EXPECTED = [
    StockLevel(sku="bolt", on_hand=10, reserved=8, available=2),
    StockLevel(sku="gear", on_hand=15, reserved=0, available=15),
    StockLevel(sku="nut", on_hand=3, reserved=0, available=3),
]


def test_the_low_stock_report_follows_the_stream(
    store: Store, kafka: KafkaSettings, namespace: str
) -> None:
    report = LowStockReport(threshold=5)
    db = ReadModelDB(store)
    shop_history(store)
    with ProjectionRunner(store, report, kafka, namespace=namespace) as runner:
        run_until(runner, lambda: runner.applied == 8)
        assert report.levels(db) == EXPECTED
        assert [s.sku for s in report.low_stock(db)] == ["bolt", "nut"]
        record(store, "nut", StockReserved(reservation_id="o4", quantity=3))
        run_until(runner, lambda: runner.applied == 9)
    assert [(s.sku, s.available) for s in report.low_stock(db)] == [("nut", 0), ("bolt", 2)]
    assert report.low_stock(db, threshold=1) == [
        StockLevel(sku="nut", on_hand=3, reserved=3, available=0)
    ]


def test_redelivered_and_repeated_events_change_nothing(
    store: Store, kafka: KafkaSettings, namespace: str
) -> None:
    report = LowStockReport()
    db = ReadModelDB(store)
    shop_history(store)
    topic = StreamTopics(namespace).events
    with ProjectionRunner(store, report, kafka, namespace=namespace) as runner:
        run_until(runner, lambda: runner.applied == 8)
    # The relay re-sent a batch after a crash ...
    records = read_topic(kafka, topic, 8)
    producer = Producer(kafka)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        producer.send(topic, r.value, key=r.key, headers=r.headers).result(10)
    producer.close()
    # ... and a projection process lost its offsets (new group, from the beginning): every
    # event arrives twice more; the subscription drops the stream's repeats, the version
    # table turns away the redelivered originals.
    with ProjectionRunner(
        store,
        report,
        kafka,
        namespace=namespace,
        group_id=f"fresh-{uuid.uuid4().hex[:6]}",
        from_beginning=True,
    ) as again:
        run_until(again, lambda: again.duplicates == 8)
        again.step(0.5)
        assert again.applied == 0
        assert again.subscription.stats.duplicates == 8
    assert report.levels(db) == EXPECTED
    with db.transaction(commit=False) as txn:
        versions = applied_versions(txn, report.name, ["InventoryItem/gear", "InventoryItem/x"])
    assert versions == {"InventoryItem/gear": 5}
