"""The relay inside `entityflow worker` processes: one active per namespace, failover on kill -9.

Two workers each run a relay beside their worker loop; only the one holding the lease
publishes. Deposits flow through the mailbox, and every committed event reaches the
stream in per-entity order; when the worker whose relay is active is killed, the other
worker's relay takes over and the stream stays complete.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from actors import Client, EntityCatalog
from actors.mailbox.kafka import KafkaMailbox
from eventstore import EventRegistry, Store
from eventstore.kafka.io import KafkaSettings
from eventstore.stream.relay import StreamTopics
from examples.shop import ENTITIES, Account
from tests.eventstore_tests.stream_support import assert_resends_only, by_entity, read_topic
from tests.integration.processes import WorkerProcess, count_rows, outputs, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]
PARTITIONS = 8
ACCOUNTS = 20


def relay_active(worker: WorkerProcess) -> bool:
    return any(line.rstrip().endswith("is active") for line in worker.lines)


def test_one_worker_relay_publishes_and_another_takes_over_after_kill_9(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    kafka = KafkaSettings(kafka_bootstrap)
    mailbox = KafkaMailbox(kafka, namespace=namespace, partitions=PARTITIONS)
    catalog = EntityCatalog(ENTITIES)
    registry = EventRegistry()
    for spec in catalog:
        registry.merge(spec.registry)
    store = Store(pg_url, registry)
    client = Client(mailbox, store, catalog, default_timeout=60)
    try:
        workers += [
            WorkerProcess(pg_url, kafka_bootstrap, namespace, partitions=PARTITIONS)
            for _ in range(2)
        ]
        for w in workers:
            w.wait_assigned()

        async def open_all() -> None:
            await asyncio.gather(
                *(client.update(Account.open, f"acct-{i}", owner="o") for i in range(ACCOUNTS))
            )

        asyncio.run(open_all())

        def deposit(first: int, count: int) -> None:
            for n in range(first, first + count):
                mailbox.send(
                    client.prepare(Account.deposit, f"acct-{n % ACCOUNTS}", amount=Decimal(1))
                ).result(30)

        deposit(0, 400)
        topic = StreamTopics(namespace).events
        first_wave = ACCOUNTS + 400
        records = read_topic(kafka, topic, first_wave, timeout=90, settle=0.5)
        assert len(records) == first_wave, outputs(*workers)()
        assert (
            assert_resends_only(
                by_entity(records), {f"Account/acct-{i}": 21 for i in range(ACCOUNTS)}
            )
            == 0
        )
        active = [w for w in workers if relay_active(w)]
        assert len(active) == 1, outputs(*workers)()
        survivor = next(w for w in workers if w is not active[0])
        active[0].kill9()
        deposit(400, 400)
        wait_until(
            lambda: count_rows(pg_url, "entityflow_events", "WHERE topic = 'Deposited'") >= 800,
            120,
            "the survivor to process the second wave",
            context=outputs(survivor),
        )
        wait_until(lambda: relay_active(survivor), 60, "the survivor's relay to take over")
        records = read_topic(kafka, topic, ACCOUNTS + 800, timeout=90, settle=1)
        expected = {f"Account/acct-{i}": 41 for i in range(ACCOUNTS)}
        assert_resends_only(by_entity(records), expected)
    finally:
        client.close()
        mailbox.close()
        store.close()
