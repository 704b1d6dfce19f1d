"""A poll answered at once from records fetched earlier asks the broker once more.

kafka-python answers from its buffer and only then sends the next fetch, so under load
a worker saw what arrived during its last batch one batch cycle late.
"""

from __future__ import annotations

import threading
import time

import pytest

from eventstore.kafka import group_consumer
from eventstore.kafka.admin import Admin
from eventstore.kafka.group_consumer import GroupConsumer
from eventstore.kafka.io import KafkaSettings
from eventstore.kafka.producer import Producer

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize(("wait", "expected"), [(1.0, [b"a", b"b"]), (0.0, [b"a"])])
def test_a_poll_answered_at_once_also_returns_what_arrives_within_the_freshen_wait(
    kafka_bootstrap: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    wait: float,
    expected: list[bytes],
) -> None:
    """ "b" reaches the broker 0.3 s after the poll that returns "a": within a freshen
    wait of a second it comes with "a"; with none (the control) it is left for later."""
    monkeypatch.setattr(group_consumer, "FRESHEN_WAIT", wait)
    settings = KafkaSettings(kafka_bootstrap)
    topic = f"{namespace}.fresh"
    admin = Admin(settings)
    admin.ensure_topics({topic: 1})
    producer = Producer(settings)
    consumer = GroupConsumer(settings, topic, f"{namespace}-fresh", freshen=True)
    try:
        deadline = time.monotonic() + 30
        while not consumer.assignment():
            assert time.monotonic() < deadline, "no partition assigned"
            consumer.poll(0.1, 10)
        producer.send(topic, b"a").result(10)
        time.sleep(0.3)  # the fetch in flight has brought "a"
        later = threading.Timer(0.3, lambda: producer.send(topic, b"b").result(10))
        later.start()
        try:
            assert [r.value for r in consumer.poll(5.0, 10)] == expected
        finally:
            later.join()
    finally:
        consumer.close()
        producer.close()
        admin.close()
