"""Which partition an address belongs to is known without asking the broker each time.

Every message a worker sends or hands over in its own batch is placed by it. After a
broker restarted empty, asking the producer while the topic is missing blocked each
call for the producer's whole metadata timeout: a worker stood still for a minute.
"""

from __future__ import annotations

import time

import pytest

from actors.mailbox.kafka import KafkaMailbox
from eventstore.kafka.admin import Admin
from eventstore.kafka.io import KafkaSettings, partition_for

pytestmark = pytest.mark.kafka


def test_placing_addresses_does_not_wait_for_a_topic_the_broker_lost(
    kafka_bootstrap: str, namespace: str
) -> None:
    settings = KafkaSettings(kafka_bootstrap, metadata_max_age_ms=300)
    mailbox = KafkaMailbox(settings, namespace=namespace, partitions=6)
    admin = Admin(settings)
    try:
        addresses = [f"account:{i}" for i in range(4)]
        admin.delete_topics([mailbox.topics.commands])  # as a broker that lost its data
        time.sleep(1.5)  # the clients' metadata has caught up: the topic is gone
        started = time.monotonic()
        placed = [mailbox.partition_of(a) for a in addresses]  # the first placements
        assert time.monotonic() - started < 1.0, "placing an address asked the broker"
        assert placed == [partition_for(a.encode(), 6) for a in addresses]
    finally:
        admin.close()
        mailbox.close()


def test_a_commands_topic_that_exists_already_is_placed_by_its_own_count(
    kafka_bootstrap: str, namespace: str
) -> None:
    settings = KafkaSettings(kafka_bootstrap)
    admin = Admin(settings)
    admin.ensure_topics({f"{namespace}.commands": 3})  # created before, by someone else
    mailbox = KafkaMailbox(settings, namespace=namespace, partitions=6)
    try:
        assert mailbox.partitions == 3
        assert mailbox.partition_of("account:7") == partition_for(b"account:7", 3)
    finally:
        admin.close()
        mailbox.close()
