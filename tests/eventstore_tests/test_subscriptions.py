"""Subscriptions on the real broker: typed events, duplicates dropped, offsets after handling."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventstore import Commit, EventRegistry, RecordedEvent, Store
from eventstore.kafka.admin import Admin
from eventstore.kafka.io import KafkaSettings
from eventstore.kafka.producer import Producer
from eventstore.stream.relay import Relay, RelayOptions, StreamTopics
from eventstore.stream.subscriptions import StreamMessage, Subscription, subscribe
from examples.shop.accounts import AccountOpened, Deposited
from examples.shop.inventory import Restocked, StockReserved
from tests.eventstore_tests.stream_support import INVENTORY_EVENTS, read_topic

pytestmark = pytest.mark.kafka


@pytest.fixture
def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap)


@pytest.fixture
def published(tmp_path: Path, kafka: KafkaSettings, namespace: str) -> Iterator[Store]:
    """A SQLite store whose events a running relay publishes to the namespace's stream."""
    registry = EventRegistry([*INVENTORY_EVENTS, AccountOpened, Deposited])
    with Store(f"sqlite:///{tmp_path / 'stream.db'}", registry) as store:
        relay = Relay(store, kafka, RelayOptions(namespace=namespace, partitions=3)).start()
        try:
            yield store
        finally:
            relay.close()


def group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


def collect(sub: Subscription[Any], count: int, timeout: float = 30.0) -> list[StreamMessage[Any]]:
    """Poll (handling = collecting) until ``count`` messages arrived, committing as we go."""
    got: list[StreamMessage[Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        for message in sub.poll(0.2):
            got.append(message)
            sub.delivered(message)
        sub.commit()
    return got


def drain(sub: Subscription[Any], seconds: float) -> list[StreamMessage[Any]]:
    got: list[StreamMessage[Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in sub.poll(0.2):
            got.append(message)
            sub.delivered(message)
        sub.commit()
    return got


def inventory(store: Store, sku: str, *events: Any) -> None:
    start = store.last_version(f"InventoryItem/{sku}") + 1
    store.commit(
        Commit(
            events=[
                RecordedEvent(f"InventoryItem/{sku}", start + n, e) for n, e in enumerate(events)
            ]
        )
    )


def test_typed_events_of_the_asked_types_each_once(
    published: Store, kafka: KafkaSettings, namespace: str
) -> None:
    inventory(
        published, "sku-1", Restocked(quantity=5), StockReserved(reservation_id="r", quantity=2)
    )
    published.commit(Commit(events=[RecordedEvent("Account/a-1", 1, AccountOpened(owner="Ada"))]))
    inventory(published, "sku-2", Restocked(quantity=7))
    topic = StreamTopics(namespace).events
    records = read_topic(kafka, topic, 4)
    # The relay's at-least-once re-send, imitated: the same records once more, in order.
    producer = Producer(kafka)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        producer.send(topic, r.value, key=r.key, headers=r.headers).result(10)
    producer.close()

    with subscribe(
        Restocked, StockReserved, kafka=kafka, group_id=group(), namespace=namespace
    ) as sub:
        got = collect(sub, 3)
        got += drain(sub, 1.0)
    assert sorted((m.entity, m.version, m.event_type) for m in got) == [
        ("InventoryItem/sku-1", 1, "Restocked"),
        ("InventoryItem/sku-1", 2, "StockReserved"),
        ("InventoryItem/sku-2", 1, "Restocked"),
    ]
    first = next(m for m in got if m.version == 2)
    assert isinstance(first.event, StockReserved)
    assert first.event == StockReserved(reservation_id="r", quantity=2)
    assert (first.entity_type, first.entity_id) == ("InventoryItem", "sku-1")
    assert sub.stats.duplicates == 4
    assert sub.stats.skipped == 1  # AccountOpened: not asked for


def test_offsets_are_committed_after_handling_and_the_group_resumes(
    published: Store, kafka: KafkaSettings, namespace: str
) -> None:
    name = group()
    inventory(published, "sku-1", Restocked(quantity=1), Restocked(quantity=2))
    handled: list[int] = []
    sub = subscribe(
        Restocked,
        kafka=kafka,
        group_id=name,
        namespace=namespace,
        handler=lambda m: handled.append(m.version),
        until=lambda: len(handled) >= 2,
    )
    assert handled == [1, 2]
    assert sub.stats.delivered == 2
    inventory(published, "sku-1", Restocked(quantity=3))
    with subscribe(Restocked, kafka=kafka, group_id=name, namespace=namespace) as again:
        got = collect(again, 1)
        got += drain(again, 0.5)
    assert [m.version for m in got] == [3], "the group resumes after what it committed"
    with subscribe(
        Restocked, kafka=kafka, group_id=name, namespace=namespace, from_beginning=True
    ) as replay:
        assert [m.version for m in collect(replay, 3)] == [1, 2, 3]


def test_a_failing_handler_commits_what_it_handled_and_gets_the_rest_again(
    published: Store, kafka: KafkaSettings, namespace: str
) -> None:
    name = group()
    inventory(published, "sku-1", *(Restocked(quantity=q) for q in range(1, 6)))
    read_topic(kafka, StreamTopics(namespace).events, 5)
    seen: list[int] = []

    def handler(message: StreamMessage[Restocked]) -> None:
        if message.version == 3:
            raise RuntimeError("the read model is down")
        seen.append(message.version)

    with (
        pytest.raises(RuntimeError, match="read model is down"),
        Subscription(
            kafka, EventRegistry(), (Restocked,), group_id=name, namespace=namespace
        ) as sub,
    ):
        sub.run(handler)
    assert seen == [1, 2]
    with subscribe(Restocked, kafka=kafka, group_id=name, namespace=namespace) as again:
        assert [m.version for m in collect(again, 3)] == [3, 4, 5]


def test_records_that_are_not_stream_events_are_passed_over(
    published: Store, kafka: KafkaSettings, namespace: str
) -> None:
    topic = StreamTopics(namespace).events
    inventory(published, "sku-1", Restocked(quantity=1))
    read_topic(kafka, topic, 1)
    producer = Producer(kafka)
    for value, key in (
        (b"not json", b"InventoryItem/sku-1"),
        (b'{"event_type": "Restocked"}', b"InventoryItem/sku-1"),
        (read_topic(kafka, topic, 1)[0].value, b"InventoryItem/other"),
    ):
        producer.send(topic, value, key=key).result(10)
    producer.close()
    inventory(published, "sku-1", Restocked(quantity=2))
    with subscribe(
        Restocked, kafka=kafka, group_id=group(), namespace=namespace, from_beginning=True
    ) as sub:
        got = collect(sub, 2)
    assert [m.version for m in got] == [1, 2]
    assert sub.stats.malformed == 3


def test_subscribe_needs_event_types(kafka: KafkaSettings) -> None:
    with pytest.raises(ValueError, match="at least one event type"):
        subscribe(kafka=kafka, group_id="g")


def test_a_subscriber_that_starts_first_creates_the_topic_as_configured(
    kafka: KafkaSettings, namespace: str
) -> None:
    with subscribe(
        Restocked, kafka=kafka, group_id=group(), namespace=namespace, partitions=3
    ) as sub:
        assert drain(sub, 0.5) == []
    admin = Admin(kafka)
    try:
        assert admin.partitions(StreamTopics(namespace).events) == 3
    finally:
        admin.close()


def test_a_version_that_jumps_ahead_is_delivered_and_counted_as_a_gap(
    published: Store, kafka: KafkaSettings, namespace: str
) -> None:
    topic = StreamTopics(namespace).events
    inventory(published, "sku-1", Restocked(quantity=1))
    (first,) = read_topic(kafka, topic, 1)
    jumped = json.loads(first.value) | {"version": 3, "data": {"quantity": 3}}
    producer = Producer(kafka)
    producer.send(topic, json.dumps(jumped).encode(), key=first.key).result(10)
    producer.close()
    with subscribe(Restocked, kafka=kafka, group_id=group(), namespace=namespace) as sub:
        got = collect(sub, 2)
    assert [(m.version, m.event.quantity) for m in got] == [(1, 1), (3, 3)]
    assert sub.stats.gaps == 1
