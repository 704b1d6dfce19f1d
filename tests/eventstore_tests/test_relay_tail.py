"""``entityflow tail``: readable lines, filters, bad records; and the stream record decoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from eventstore import Commit, EventRegistry, RecordedEvent, Store
from eventstore.kafka.admin import Admin
from eventstore.kafka.io import KafkaRecord, KafkaSettings
from eventstore.kafka.producer import Producer
from eventstore.kafka.tail_consumer import TailConsumer
from eventstore.stream.format import (
    StreamEvent,
    StreamRecordError,
    decode_stream_record,
    format_line,
)
from eventstore.stream.relay import Relay, RelayOptions, StreamTopics
from eventstore.stream.tail import StreamFilter
from examples.shop.inventory import Restocked, StockReserved
from tests.eventstore_tests.stream_support import INVENTORY_EVENTS, read_topic

ROOT = Path(__file__).resolve().parents[2]


def event(**changes: object) -> StreamEvent:
    base: dict[str, object] = {
        "event_type": "StockReserved",
        "schema_version": 1,
        "entity": "InventoryItem/sku-1",
        "entity_type": "InventoryItem",
        "entity_id": "sku-1",
        "version": 3,
        "position": 42,
        "timestamp": datetime(2026, 5, 1, 12, 3, 4, 123456, tzinfo=UTC),
        "command_id": "c-1",
        "data": {"reservation_id": "r1", "quantity": 2},
    }
    return StreamEvent.model_validate({**base, **changes})


def record(value: bytes, key: bytes | None = b"InventoryItem/sku-1") -> KafkaRecord:
    return KafkaRecord("ns.events", 2, 17, key, value, {}, 0)


def test_a_line_shows_time_entity_version_type_fields_and_position() -> None:
    assert (
        format_line(event())
        == "12:03:04.123  InventoryItem/sku-1 v3  StockReserved  reservation_id=r1 quantity=2  #42"
    )
    spaced = event(data={"note": "two words", "empty": "", "tags": ["a", "b"], "n": None})
    assert format_line(spaced).endswith('note="two words" empty="" tags=["a","b"] n=null  #42')
    assert "StockReserved@v2" in format_line(event(schema_version=2))
    assert format_line(event(data={})).endswith("StockReserved  #42")


def test_long_lines_are_cut_but_keep_the_position() -> None:
    line = format_line(event(data={"note": "x" * 500, "more": "y" * 500}), width=100)
    assert len(line) == 100
    assert line.endswith("…  #42")


def test_filters_by_type_address_entity_type_and_glob() -> None:
    reserved, restocked = event(), event(event_type="Restocked")
    cart = event(entity="Cart/c-1", entity_type="Cart", entity_id="c-1")
    assert StreamFilter.of().matches(reserved)
    assert StreamFilter.of(["Restocked"]).matches(restocked)
    assert not StreamFilter.of(["Restocked", " "]).matches(reserved)
    assert StreamFilter.of(entity="InventoryItem").matches(reserved)
    assert not StreamFilter.of(entity="InventoryItem").matches(cart)
    assert StreamFilter.of(entity="InventoryItem/sku-1").matches(reserved)
    assert not StreamFilter.of(entity="InventoryItem/sku-10").matches(reserved)
    assert StreamFilter.of(entity="InventoryItem/sku-*").matches(reserved)
    assert StreamFilter.of(entity="*/c-1").matches(cart)
    assert StreamFilter.of(["StockReserved"], "InventoryItem/*").matches(reserved)
    assert StreamFilter.of(entity="  ") == StreamFilter.of()


@pytest.mark.parametrize(
    ("value", "key", "problem"),
    [
        (b"not json", b"InventoryItem/sku-1", "not a stream event"),
        (b'["a list"]', b"InventoryItem/sku-1", "not a stream event"),
        (b'{"event_type": "StockReserved"}', b"InventoryItem/sku-1", "Field required"),
        (
            json.dumps({**event().model_dump(mode="json"), "version": 0}).encode(),
            None,
            "greater than or equal to 1",
        ),
        (event().model_dump_json().encode(), b"Cart/c-1", "is not the event's entity"),
        (b"\xff\xfe", None, "not a stream event"),
    ],
)
def test_records_that_are_not_stream_events_are_refused_clearly(
    value: bytes, key: bytes | None, problem: str
) -> None:
    with pytest.raises(StreamRecordError, match=problem) as caught:
        decode_stream_record(record(value, key))
    assert "ns.events#2@17" in str(caught.value)


def test_a_good_record_round_trips() -> None:
    original = event()
    assert decode_stream_record(record(original.model_dump_json().encode())) == original
    assert decode_stream_record(record(original.model_dump_json().encode(), None)) == original


@pytest.mark.kafka
def test_entityflow_tail_prints_the_matching_events(
    tmp_path: Path, kafka_bootstrap: str, namespace: str
) -> None:
    kafka = KafkaSettings(kafka_bootstrap)
    with Store(f"sqlite:///{tmp_path / 's.db'}", EventRegistry(INVENTORY_EVENTS)) as store:
        store.commit(
            Commit(
                events=[
                    RecordedEvent("InventoryItem/sku-1", 1, Restocked(quantity=4)),
                    RecordedEvent("InventoryItem/sku-2", 1, Restocked(quantity=9)),
                    RecordedEvent(
                        "InventoryItem/sku-1", 2, StockReserved(reservation_id="r 1", quantity=1)
                    ),
                ]
            )
        )
        relay = Relay(store, kafka, RelayOptions(namespace=namespace, partitions=2)).start()
        try:
            read_topic(kafka, StreamTopics(namespace).events, 3)
        finally:
            relay.close()
    producer = Producer(kafka)
    producer.send(StreamTopics(namespace).events, b"garbage", key=b"x").result(10)
    producer.close()
    env = {**os.environ, "ENTITYFLOW_NAMESPACE": namespace}
    command = [sys.executable, "-m", "api.cli", "tail", "--bootstrap-servers", kafka_bootstrap]
    sku1 = subprocess.run(
        [*command, "--from-beginning", "--entity", "InventoryItem/sku-1", "--seconds", "4"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = sku1.stdout.splitlines()
    assert len(lines) == 2, sku1.stdout
    assert "InventoryItem/sku-1 v1  Restocked  quantity=4  #" in lines[0]
    assert 'InventoryItem/sku-1 v2  StockReserved  reservation_id="r 1" quantity=1  #' in lines[1]
    assert "! record" in sku1.stderr and "not a stream event" in sku1.stderr
    as_json = subprocess.run(
        [*command, "--from-beginning", "--json", "--type", "Restocked", "--count", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    printed = sorted(json.loads(line)["entity"] for line in as_json.stdout.splitlines())
    assert printed == ["InventoryItem/sku-1", "InventoryItem/sku-2"]
    bad = subprocess.run(
        [*command, "--count", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "--count must be at least 1" in bad.stderr


def test_relay_and_tail_without_a_cluster_say_what_to_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from api.cli import main

    monkeypatch.delenv("ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("ENTITYFLOW_STORE", f"sqlite:///{tmp_path / 's.db'}")
    assert main(["relay", "--domain", "examples.shop"]) == 2
    assert "set ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err
    assert main(["relay"]) == 2
    assert "name the module that exports the domain: --domain" in capsys.readouterr().err
    assert main(["relay", "--domain", "no.such.domain"]) == 2
    assert "cannot import the domain module" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["schemas", "--format", "yaml"])
    assert exited.value.code == 2
    assert "invalid choice: 'yaml'" in capsys.readouterr().err


@pytest.mark.kafka
@pytest.mark.parametrize("from_beginning", [True, False])
def test_tailing_a_topic_that_does_not_exist_yet_waits_for_it(
    kafka_bootstrap: str, namespace: str, from_beginning: bool
) -> None:
    """The topic is unknown when the tail starts: no partitions, no error, and later records."""
    settings = KafkaSettings(kafka_bootstrap)
    topic = f"{namespace}.later"
    tail = TailConsumer(settings, topic, from_beginning=from_beginning)
    producer = Producer(settings)
    try:
        assert tail.partitions == ()
        Admin(settings).ensure_topics({topic: 1})
        got: list[KafkaRecord] = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            if not tail.partitions:
                tail.assign()
            else:
                producer.send(topic, b"hello").result(10)
            got += tail.poll(0.2)
        assert got and got[0].value == b"hello"
    finally:
        producer.close()
        tail.close()
