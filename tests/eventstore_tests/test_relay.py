"""The relay against the real broker, on SQLite and PostgreSQL: format, order, resume, leases."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from eventstore import (
    Commit,
    DomainEvent,
    EventRegistry,
    FencedTracking,
    JSONDict,
    RecordedEvent,
    Store,
    upcaster,
)
from eventstore.kafka import ApacheKafka
from eventstore.kafka.admin import Admin
from eventstore.kafka.io import KafkaSettings
from eventstore.stream.format import decode_stream_record
from eventstore.stream.relay import Relay, RelayOptions, StreamTopics
from examples.shop.accounts import AccountOpened, Deposited
from tests.eventstore_tests.stream_support import (
    INVENTORY_EVENTS,
    assert_resends_only,
    by_entity,
    read_topic,
    write_restocks,
)

pytestmark = pytest.mark.kafka


class StepRecorded(DomainEvent):
    """A stand-in for a workflow history event (internal: not on the stream by default)."""

    event_type = "wf.test-step"
    step: str


def registry() -> EventRegistry:
    return EventRegistry([*INVENTORY_EVENTS, AccountOpened, Deposited, StepRecorded])


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store(store_url, registry()) as s:
        yield s


@pytest.fixture
def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def relay_for(store: Store, kafka: KafkaSettings, namespace: str, **options: Any) -> Relay:
    return Relay(store, kafka, RelayOptions(namespace=namespace, partitions=4, **options))


def test_every_event_is_published_with_key_headers_and_json(
    store: Store, kafka: KafkaSettings, namespace: str
) -> None:
    ids = store.commit(
        Commit(
            events=[
                RecordedEvent("Account/a-1", 1, AccountOpened(owner="Ada"), command_id="c-1"),
                RecordedEvent("workflow:Order/o-1", 1, StepRecorded(step="reserve")),
                RecordedEvent("Account/a-1", 2, Deposited(amount="12.50"), command_id="c-2"),
            ]
        )
    )
    relay = relay_for(store, kafka, namespace).start()
    try:
        wait_for(lambda: relay.stats.position == ids[-1], "the relay to reach the last event")
        records = read_topic(kafka, StreamTopics(namespace).events, 2, settle=0.5)
    finally:
        relay.close()
    assert len(records) == 2, "the workflow event is internal and stays off the stream"
    first, second = sorted(records, key=lambda r: r.offset)
    assert first.partition == second.partition
    assert first.key == b"Account/a-1"
    assert first.headers == {
        "ef-event-type": b"AccountOpened",
        "ef-schema-version": b"1",
        "ef-entity-version": b"1",
        "ef-notification-id": str(ids[0]).encode(),
        "ef-timestamp": first.headers["ef-timestamp"],
    }
    value = json.loads(second.value)
    assert value["event_type"] == "Deposited"
    assert value["entity"] == "Account/a-1"
    assert (value["entity_type"], value["entity_id"]) == ("Account", "a-1")
    assert (value["version"], value["position"]) == (2, ids[2])
    assert value["command_id"] == "c-2"
    assert value["data"] == {"amount": "12.50"}
    assert store.position(relay.position_name) == ids[-1]


def test_workflow_events_and_per_type_topics_when_asked(
    store: Store, kafka: KafkaSettings, namespace: str
) -> None:
    store.commit(
        Commit(
            events=[
                RecordedEvent("Account/a-1", 1, AccountOpened(owner="Ada")),
                RecordedEvent("workflow:Order/o-1", 1, StepRecorded(step="reserve")),
                RecordedEvent("InventoryItem/sku-1", 1, INVENTORY_EVENTS[0](quantity=3)),
            ]
        )
    )
    topics = StreamTopics(namespace)
    relay = relay_for(store, kafka, namespace, per_type_topics=True, workflow_events=True)
    relay.start()
    try:
        everything = read_topic(kafka, topics.events, 3, settle=0.3)
        accounts = read_topic(kafka, topics.for_type("Account"), 1, settle=0.3)
        workflows = read_topic(kafka, topics.for_type("workflow:Order"), 1)
    finally:
        relay.close()
    assert sorted(decode_stream_record(r).event_type for r in everything) == [
        "AccountOpened",
        "Restocked",
        "wf.test-step",
    ]
    assert [decode_stream_record(r).event_type for r in accounts] == ["AccountOpened"]
    assert topics.for_type("workflow:Order") == f"{namespace}.events.workflow_Order"
    assert [decode_stream_record(r).entity for r in workflows] == ["workflow:Order/o-1"]


def test_a_new_relay_resumes_from_the_tracked_position(
    store: Store, kafka: KafkaSettings, namespace: str
) -> None:
    skus = [f"sku-{n}" for n in range(10)]
    write_restocks(store, skus, 5)
    first = relay_for(store, kafka, namespace).start()
    wait_for(lambda: first.stats.position == store.max_position(), "the first relay")
    first.close()
    write_restocks(store, skus, 5, start=6)
    second = relay_for(store, kafka, namespace).start()
    try:
        wait_for(lambda: second.stats.position == store.max_position(), "the second relay")
        records = read_topic(kafka, StreamTopics(namespace).events, 100, settle=0.5)
    finally:
        second.close()
    assert second.stats.published == 50, "only what the first relay had not published"
    versions = by_entity(records)
    assert versions == {f"InventoryItem/{sku}": list(range(1, 11)) for sku in skus}


def test_one_relay_is_active_and_a_standby_takes_over(
    store: Store, kafka: KafkaSettings, namespace: str
) -> None:
    skus = [f"sku-{n}" for n in range(20)]
    options = RelayOptions(namespace=namespace, partitions=4, standby_retry=0.1)
    relays = [Relay(store, kafka, options).start(), Relay(store, kafka, options).start()]
    try:
        write_restocks(store, skus, 10)
        wait_for(lambda: any(r.stats.position == store.max_position() for r in relays), "publish")
        active = [r for r in relays if r.stats.active]
        assert len(active) == 1, [r.stats for r in relays]
        standby = next(r for r in relays if r is not active[0])
        assert standby.stats.published == 0
        active[0].close()
        write_restocks(store, skus, 10, start=11)
        wait_for(lambda: standby.stats.position == store.max_position(), "the standby")
        records = read_topic(kafka, StreamTopics(namespace).events, 400, settle=0.5)
    finally:
        for r in relays:
            r.close()
    assert standby.stats.takeovers == 1
    assert standby.stats.published == 200
    assert by_entity(records) == {f"InventoryItem/{sku}": list(range(1, 21)) for sku in skus}


def test_a_relay_whose_position_moved_on_cannot_commit_and_steps_down(
    store: Store, kafka: KafkaSettings, namespace: str
) -> None:
    write_restocks(store, ["sku-1"], 3)
    relay = relay_for(store, kafka, namespace).start()
    try:
        wait_for(lambda: relay.stats.position == store.max_position(), "the relay")
        # Another relay (e.g. after a network partition) published up to here and moved on.
        current = store.position(relay.position_name)
        store.commit(
            Commit(
                positions=[
                    FencedTracking(
                        application_name=relay.position_name,
                        notification_id=current + 1 if current else 1,
                        expected=current,
                    )
                ]
            )
        )
        write_restocks(store, ["sku-1"], 2, start=4)
        wait_for(lambda: any("stepped down" in e for e in relay.stats.errors), "the fence")
        # Back in charge with the lease, it resumes from the position the other one wrote.
        wait_for(lambda: relay.stats.position == store.max_position(), "the resumed relay")
    finally:
        relay.close()
    assert relay.stats.takeovers >= 2


def test_an_event_type_unknown_to_the_relay_is_published_as_stored(
    store_url: str, kafka: KafkaSettings, namespace: str
) -> None:
    with Store(store_url, registry()) as writer:
        writer.commit(Commit(events=[RecordedEvent("Account/a-9", 1, AccountOpened(owner="Bo"))]))
    with Store(store_url, EventRegistry(INVENTORY_EVENTS)) as relay_store:
        relay = relay_for(relay_store, kafka, namespace).start()
        try:
            records = read_topic(kafka, StreamTopics(namespace).events, 1)
        finally:
            relay.close()
    (event,) = [decode_stream_record(r) for r in records]
    assert (event.event_type, event.schema_version, event.data) == (
        "AccountOpened",
        1,
        {"owner": "Bo"},
    )


def test_a_recreated_topic_is_filled_again_from_the_start(
    store: Store, kafka: KafkaSettings, namespace: str
) -> None:
    write_restocks(store, ["sku-1", "sku-2"], 3)
    topic = StreamTopics(namespace).events
    relay = relay_for(store, kafka, namespace, identity_check_every=0.2).start()
    admin = Admin(kafka)
    try:
        wait_for(lambda: relay.stats.position == store.max_position(), "the relay")
        old_name = relay.position_name
        admin.delete_topics([topic])
        wait_for(lambda: relay.position_name != old_name, "a new position name", timeout=60)
        records = read_topic(kafka, topic, 6, settle=0.3)
    finally:
        admin.close()
        relay.close()
    assert by_entity(records) == {
        "InventoryItem/sku-1": [1, 2, 3],
        "InventoryItem/sku-2": [1, 2, 3],
    }


def test_batches_interleaved_with_writers_keep_per_entity_order(
    store: Store, kafka: KafkaSettings, namespace: str
) -> None:
    skus = [f"sku-{n}" for n in range(50)]
    relay = relay_for(store, kafka, namespace, batch_size=37).start()
    try:
        for start in range(1, 21, 4):
            write_restocks(store, skus, 4, start=start, batch=23)
        records = read_topic(kafka, StreamTopics(namespace).events, 1000, settle=0.3)
    finally:
        relay.close()
    versions = by_entity(records)
    assert assert_resends_only(versions, {f"InventoryItem/{s}": 20 for s in skus}) == 0
    assert relay.stats.batches > 1000 // 37


class CountedV1(DomainEvent):
    event_type = "test.counted"
    n: int


class CountedV2(DomainEvent):
    event_type = "test.counted"
    schema_version = 2
    count: int
    unit: str


@upcaster("test.counted", 1)
def counted_v1_to_v2(data: JSONDict) -> JSONDict:
    return {"count": data["n"], "unit": "pcs"}


def test_events_stored_at_an_older_schema_are_published_upcast(
    store_url: str, kafka: KafkaSettings, namespace: str
) -> None:
    with Store(store_url, EventRegistry([CountedV1])) as old_release:
        old_release.commit(Commit(events=[RecordedEvent("Shelf/s-1", 1, CountedV1(n=3))]))
    with Store(store_url, EventRegistry([CountedV2], [counted_v1_to_v2])) as store:
        store.commit(Commit(events=[RecordedEvent("Shelf/s-1", 2, CountedV2(count=4, unit="kg"))]))
        relay = relay_for(store, kafka, namespace).start()
        try:
            records = read_topic(kafka, StreamTopics(namespace).events, 2)
        finally:
            relay.close()
    first, second = sorted(records, key=lambda r: r.offset)
    assert first.headers["ef-schema-version"] == b"2"
    assert decode_stream_record(first).data == {"count": 3, "unit": "pcs"}
    assert decode_stream_record(first).schema_version == 2
    assert decode_stream_record(second).data == {"count": 4, "unit": "kg"}


def test_a_relay_waits_for_an_unreachable_broker_and_then_publishes(
    store: Store, namespace: str, running_broker: ApacheKafka
) -> None:
    running_broker.stop()
    kafka = KafkaSettings(
        running_broker.bootstrap_servers, connect_timeout=1.0, request_timeout_ms=3_000
    )
    write_restocks(store, ["sku-1", "sku-2"], 3)
    relay = Relay(
        store, kafka, RelayOptions(namespace=namespace, partitions=2, retry_backoff=0.2)
    ).start()
    try:
        wait_for(lambda: any("cannot reach Kafka" in e for e in relay.stats.errors), "a retry")
        assert store.position(relay.position_name) is None
        running_broker.start()
        wait_for(lambda: relay.stats.position == store.max_position(), "publish", 90)
        records = read_topic(kafka, StreamTopics(namespace).events, 6, settle=0.3)
        relay.close()
    finally:
        relay.close()
    assert by_entity(records) == {f"InventoryItem/sku-{n}": [1, 2, 3] for n in (1, 2)}
