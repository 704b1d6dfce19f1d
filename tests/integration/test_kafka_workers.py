"""Workers as OS processes against the real broker and PostgreSQL (issue 3's proofs).

Each test owns a fresh topic namespace and PostgreSQL schema. Balances are the check:
every deposit has a distinct amount pattern, so a lost or doubled command shows up as a
wrong sum, and the count of Deposited events must equal the number of distinct commands.
"""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal

import pytest

from actors import Client, EntityCatalog, Envelope
from actors.mailbox.kafka import KafkaMailbox
from eventstore import EventRegistry, Store
from eventstore.kafka import ApacheKafka
from eventstore.kafka.io import KafkaSettings
from eventstore.kafka.tail_consumer import TailConsumer
from examples.shop import ENTITIES, Account
from tests.integration.processes import WorkerProcess, count_rows, outputs, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]
PARTITIONS = 8


def _client(pg_url: str, bootstrap: str, namespace: str) -> tuple[Client, KafkaMailbox, Store]:
    mailbox = KafkaMailbox(KafkaSettings(bootstrap), namespace=namespace, partitions=PARTITIONS)
    catalog = EntityCatalog(ENTITIES)
    registry = EventRegistry()
    for spec in catalog:
        registry.merge(spec.registry)
    store = Store(pg_url, registry)
    return Client(mailbox, store, catalog, default_timeout=60), mailbox, store


def _deposit(client: Client, account: str, amount: int, command_id: str) -> Envelope:
    return client.prepare(Account.deposit.options(command_id=command_id), account, amount=amount)


def _open_accounts(client: Client, n: int) -> None:
    async def go() -> None:
        await asyncio.gather(
            *(client.update(Account.open, f"acct-{i}", owner=f"o{i}") for i in range(n))
        )

    asyncio.run(go())


def _balances(client: Client, n: int) -> dict[str, Decimal]:
    return {
        f"acct-{i}": Decimal(client.query(Account.balance, f"acct-{i}").result) for i in range(n)
    }


def test_kill_nine_mid_stream_loses_nothing_and_doubles_nothing(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    client, mailbox, store = _client(pg_url, kafka_bootstrap, namespace)
    workers += [
        WorkerProcess(pg_url, kafka_bootstrap, namespace, partitions=PARTITIONS) for _ in range(2)
    ]
    for w in workers:
        w.wait_assigned()
    accounts, commands = 100, 10_000
    _open_accounts(client, accounts)

    expected = {f"acct-{i}": Decimal(0) for i in range(accounts)}
    envelopes = []
    for k in range(commands):
        account, amount = f"acct-{k % accounts}", 1 + (k * 7) % 13
        expected[account] += amount
        envelopes.append(_deposit(client, account, amount, f"dep-{k}"))
    # A client retry: 300 of them are sent a second time with the same command id.
    envelopes += envelopes[:300]
    futures = [mailbox.send(e) for e in envelopes]
    for f in futures:
        f.result(timeout=60)

    wait_until(
        lambda: count_rows(pg_url, "entityflow_commands") >= accounts + commands * 0.3,
        120,
        "30% of the deposits",
    )
    victim = workers[0]
    victim.kill9()
    replacement = WorkerProcess(pg_url, kafka_bootstrap, namespace, partitions=PARTITIONS)
    workers.append(replacement)
    wait_until(
        lambda: count_rows(pg_url, "entityflow_commands") >= accounts + commands,
        180,
        "every deposit to be applied",
    )

    assert _balances(client, accounts) == expected
    deposited = count_rows(pg_url, "entityflow_events", "WHERE topic = 'Deposited'")
    assert deposited == commands, "a command was applied twice (or lost)"
    assert count_rows(pg_url, "entityflow_commands", "WHERE status <> 'applied'") == 0
    mailbox.close()
    store.close()


def test_rebalancing_while_commands_flow(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    client, mailbox, store = _client(pg_url, kafka_bootstrap, namespace)
    first = WorkerProcess(pg_url, kafka_bootstrap, namespace, partitions=PARTITIONS)
    workers.append(first)
    first.wait_assigned()
    accounts = 40
    _open_accounts(client, accounts)
    expected = {f"acct-{i}": Decimal(0) for i in range(accounts)}
    stop = threading.Event()
    sent: list[int] = []

    def produce() -> None:
        k = 0
        while not stop.is_set():
            account = f"acct-{k % accounts}"
            expected[account] += 1
            mailbox.send(_deposit(client, account, 1, f"r-{k}")).result(timeout=60)
            k += 1
            sent.append(k)
            time.sleep(0.002)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(2)
        joiner = WorkerProcess(pg_url, kafka_bootstrap, namespace, partitions=PARTITIONS)
        workers.append(joiner)
        joiner.wait_assigned()
        time.sleep(2)
        assert first.terminate() == 0, first.output  # leaves the group gracefully
        time.sleep(2)
        third = WorkerProcess(pg_url, kafka_bootstrap, namespace, partitions=PARTITIONS)
        workers.append(third)
        third.wait_assigned()
        time.sleep(2)
    finally:
        stop.set()
        producer.join()
    total = len(sent)
    wait_until(
        lambda: count_rows(pg_url, "entityflow_commands") >= accounts + total,
        120,
        "all commands sent during rebalancing",
    )
    assert _balances(client, accounts) == expected
    assert count_rows(pg_url, "entityflow_events", "WHERE topic = 'Deposited'") == total
    assert "entityflow worker stopped:" in first.output
    mailbox.close()
    store.close()


def test_per_entity_order_is_kept(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    client, mailbox, store = _client(pg_url, kafka_bootstrap, namespace)
    workers.append(WorkerProcess(pg_url, kafka_bootstrap, namespace, partitions=PARTITIONS))
    workers[0].wait_assigned()
    n = 200
    futures = []
    for i in range(n):
        acct = f"ord-{i}"
        steps = [
            client.prepare(Account.open, acct, owner="x"),
            client.prepare(Account.deposit, acct, amount=Decimal(5)),
            client.prepare(Account.withdraw, acct, amount=Decimal(5)),
            client.prepare(Account.close, acct),
        ]
        futures += [mailbox.send(envelope) for envelope in steps]
    for f in futures:
        f.result(timeout=60)
    wait_until(lambda: count_rows(pg_url, "entityflow_commands") >= 4 * n, 120, "all commands")
    assert count_rows(pg_url, "entityflow_commands", "WHERE status <> 'applied'") == 0
    for i in range(n):
        history = client.history(Account, f"ord-{i}")
        assert [e.event_type for e in history] == [
            "AccountOpened",
            "Deposited",
            "Withdrawn",
            "AccountClosed",
        ]
    mailbox.close()
    store.close()


def test_poison_goes_to_the_dead_letter_topic_and_the_partition_flows(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    from tests.integration.crashy_domain import ENTITIES as CRASHY
    from tests.integration.crashy_domain import Fragile

    mailbox = KafkaMailbox(
        KafkaSettings(kafka_bootstrap), namespace=namespace, partitions=PARTITIONS
    )
    catalog = EntityCatalog(CRASHY)
    registry = EventRegistry()
    for spec in catalog:
        registry.merge(spec.registry)
    store = Store(pg_url, registry)
    client = Client(mailbox, store, catalog, default_timeout=60)
    worker = WorkerProcess(
        pg_url,
        kafka_bootstrap,
        namespace,
        domain="tests.integration.crashy_domain",
        partitions=PARTITIONS,
    )
    workers.append(worker)
    worker.wait_assigned()
    dlq = TailConsumer(
        KafkaSettings(kafka_bootstrap), mailbox.topics.deadletters, from_beginning=True
    )

    address = "Fragile/f1"
    # Garbage under the entity's key lands in the entity's partition, ahead of good commands.
    mailbox._producer.send(mailbox.topics.commands, b"{not json", key=address.encode()).result(30)
    crash = client.prepare(Fragile.explode, "f1")
    mailbox.send(crash).result(30)
    good = [client.prepare(Fragile.touch, "f1") for _ in range(5)]
    for e in good:
        mailbox.send(e).result(30)

    wait_until(lambda: all(client.outcome(e.command_id) for e in good), 60, "the good commands")
    assert client.state(Fragile, "f1").state.count == 5  # the crashed command left nothing
    outcome = client.outcome(crash.command_id)
    assert outcome is not None and outcome.status == "dead_lettered"
    assert "handler blew up on purpose" in (outcome.error or "")

    parked = []
    wait_until(
        lambda: bool(parked.extend(dlq.poll(0.5))) or len(parked) >= 2, 30, "two dead letters"
    )
    errors = sorted(r.headers["ef-error"].decode() for r in parked)
    assert any("undecodable" in e for e in errors), errors
    assert any("handler blew up on purpose" in e for e in errors), errors
    assert {r.value for r in parked} == {b"{not json", crash.encode()}
    dlq.close()
    mailbox.close()
    store.close()


def test_broker_down_at_start_and_mid_run(
    pg_url: str, namespace: str, workers: list[WorkerProcess], running_broker: ApacheKafka
) -> None:
    broker = running_broker
    bootstrap = broker.bootstrap_servers
    broker.stop()
    worker = WorkerProcess(pg_url, bootstrap, namespace, partitions=PARTITIONS)
    workers.append(worker)
    # It says what is wrong while it retries, and keeps running.
    wait_until(lambda: "Kafka unreachable" in worker.output, 30, "the retry message")
    assert worker.process.poll() is None, worker.output
    assert "ECONNREFUSED" not in worker.output  # one plain sentence, not the client's noise
    broker.start()
    try:
        worker.wait_assigned(90)
        client, mailbox, store = _client(pg_url, bootstrap, namespace)
        _open_accounts(client, 10)
        for k in range(500):
            mailbox.send(_deposit(client, f"acct-{k % 10}", 1, f"a-{k}")).result(30)
        wait_until(lambda: count_rows(pg_url, "entityflow_commands") >= 510, 60, "first wave")

        broker.restart()  # with its data: what it acknowledged is still there
        sent = 0
        deadline = time.monotonic() + 90
        while sent < 500 and time.monotonic() < deadline:
            try:
                mailbox.send(_deposit(client, f"acct-{sent % 10}", 1, f"b-{sent}")).result(15)
                sent += 1
            except Exception:
                # The caller retries an unacknowledged send, as the API's clients do.
                time.sleep(0.5)
        assert sent == 500
        wait_until(
            lambda: count_rows(pg_url, "entityflow_commands") >= 1010,
            120,
            "second wave",
            context=outputs(worker),
        )
        assert _balances(client, 10) == {f"acct-{i}": Decimal(100) for i in range(10)}
        assert count_rows(pg_url, "entityflow_events", "WHERE topic = 'Deposited'") == 1000
        mailbox.close()
        store.close()
    finally:
        worker.stop()


def test_a_frozen_worker_that_lost_its_partitions_cannot_commit(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    """SIGSTOP a worker mid-stream; Kafka gives its partitions away; SIGCONT it: a zombie.

    It still holds a batch and believes it owns the partitions. Its commit must fail on
    the fenced position, and nothing may be applied twice.
    """
    import signal as signals

    client, mailbox, store = _client(pg_url, kafka_bootstrap, namespace)
    zombie = WorkerProcess(pg_url, kafka_bootstrap, namespace, partitions=PARTITIONS)
    workers.append(zombie)
    zombie.wait_assigned()
    accounts = 20
    _open_accounts(client, accounts)
    total = 4_000
    futures = [
        mailbox.send(_deposit(client, f"acct-{k % accounts}", 1, f"z-{k}")) for k in range(total)
    ]
    for f in futures:
        f.result(timeout=60)
    wait_until(
        lambda: count_rows(pg_url, "entityflow_commands") >= accounts + 200, 60, "a first part"
    )
    zombie.process.send_signal(signals.SIGSTOP)
    try:
        heir = WorkerProcess(pg_url, kafka_bootstrap, namespace, partitions=PARTITIONS)
        workers.append(heir)
        heir.wait_assigned(90)  # the frozen one missed its heartbeats: its partitions moved
        wait_until(
            lambda: count_rows(pg_url, "entityflow_commands") >= accounts + total,
            120,
            "the heir to apply everything",
            context=outputs(heir),
        )
    finally:
        zombie.process.send_signal(signals.SIGCONT)
    wait_until(
        lambda: "lost a race" in zombie.output or "revoked partitions" in zombie.output,
        60,
        "the zombie to notice",
        context=outputs(zombie),
    )
    time.sleep(2)  # give a zombie commit every chance to land, if it could
    expected = {f"acct-{i}": Decimal(total // accounts) for i in range(accounts)}
    assert _balances(client, accounts) == expected
    assert count_rows(pg_url, "entityflow_events", "WHERE topic = 'Deposited'") == total
    mailbox.close()
    store.close()
