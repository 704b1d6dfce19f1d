"""A group member that joins afresh reports its old partitions revoked and gets them back."""

from __future__ import annotations

import time

import pytest

from eventstore.kafka.admin import Admin
from eventstore.kafka.group_consumer import GroupConsumer
from eventstore.kafka.io import KafkaSettings

pytestmark = pytest.mark.kafka


def _wait_assigned(consumer: GroupConsumer, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.poll(0.2, 10)
        if consumer.assignment():
            return consumer.assignment()
    raise AssertionError(f"no partitions within {timeout}s; group is {consumer.group_state()}")


def test_rejoin_revokes_then_reassigns(kafka_bootstrap: str, namespace: str) -> None:
    settings = KafkaSettings(kafka_bootstrap)
    topic = f"{namespace}.rejoin"
    admin = Admin(settings)
    admin.ensure_topics({topic: 3})
    consumer = GroupConsumer(settings, topic, f"{namespace}-group")
    try:
        assert _wait_assigned(consumer) == [0, 1, 2]
        assert consumer.group_state() == "STABLE"
        consumer.take_rebalances()
        consumer.rejoin()
        assert consumer.take_rebalances()[0].revoked == [0, 1, 2]
        assert _wait_assigned(consumer) == [0, 1, 2]
        assert any(change.assigned == [0, 1, 2] for change in consumer.take_rebalances())
    finally:
        consumer.close()
        admin.close()
