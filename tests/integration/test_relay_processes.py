"""The relay as OS processes (`entityflow relay`) on PostgreSQL and the real broker.

10,000 events from 200 entities are written while the relay runs; the stream must end up
with every one of them in per-entity version order. Killing the relay with SIGKILL in the
middle may only cause whole-batch re-sends, which the subscription helper drops: its
handler sees every event exactly once. Two relays started together never interleave.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from eventstore import Store
from eventstore.kafka.io import KafkaSettings
from eventstore.stream.relay import StreamTopics
from eventstore.stream.subscriptions import StreamMessage, Subscription
from examples.shop.inventory import Restocked
from tests.eventstore_tests.stream_support import (
    assert_resends_only,
    by_entity,
    inventory_registry,
    read_topic,
    write_restocks,
)
from tests.integration.processes import ROOT, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]
SKUS = [f"sku-{n:03d}" for n in range(200)]
PER_SKU = 50
TOTAL = len(SKUS) * PER_SKU


class RelayProcess:
    """One `entityflow relay` OS process, its output captured."""

    def __init__(self, store_url: str, bootstrap: str, namespace: str) -> None:
        env = {
            **os.environ,
            "ENTITYFLOW_STORE": store_url,
            "ENTITYFLOW_NAMESPACE": namespace,
            "ENTITYFLOW_PARTITIONS": "8",
            "ENTITYFLOW_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "api.cli",
                "relay",
                "--domain",
                "examples.shop",
                "--bootstrap-servers",
                bootstrap,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.active = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if line.rstrip().endswith("is active"):
                self.active.set()

    @property
    def output(self) -> str:
        return "\n".join(line for line in self.lines if " kafka." not in line)[-4000:]

    def kill9(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)


@pytest.fixture
def relays(pg_url: str, kafka_bootstrap: str, namespace: str) -> Iterator[list[RelayProcess]]:
    started: list[RelayProcess] = []
    yield started
    for relay in started:
        relay.stop()


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    with Store(pg_url, inventory_registry()) as s:
        yield s


def writer(
    store: Store, *, start: int = 1, per_sku: int = PER_SKU, pause: float = 0.02
) -> threading.Thread:
    """Write ``per_sku`` versions of every SKU in small transactions, in the background."""

    def write() -> None:
        for version in range(start, start + per_sku):
            write_restocks(store, SKUS, 1, start=version, batch=100)
            time.sleep(pause)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def expected(last: int) -> dict[str, int]:
    return {f"InventoryItem/{sku}": last for sku in SKUS}


def test_ten_thousand_events_reach_the_topic_in_order(
    store: Store, relays: list[RelayProcess], pg_url: str, kafka_bootstrap: str, namespace: str
) -> None:
    relays.append(RelayProcess(pg_url, kafka_bootstrap, namespace))
    assert relays[0].active.wait(60), relays[0].output
    writing = writer(store)
    writing.join(120)
    records = read_topic(
        KafkaSettings(kafka_bootstrap), StreamTopics(namespace).events, TOTAL, timeout=120, settle=1
    )
    versions = by_entity(records)
    assert assert_resends_only(versions, expected(PER_SKU)) == 0, "no crash, no repeats"
    assert len(records) == TOTAL
    assert relays[0].terminate() == 0
    assert f"stopped after {TOTAL} events" in relays[0].output


def test_kill_9_mid_stream_loses_nothing_and_the_handler_sees_each_event_once(
    store: Store, relays: list[RelayProcess], pg_url: str, kafka_bootstrap: str, namespace: str
) -> None:
    kafka = KafkaSettings(kafka_bootstrap)
    handled: Counter[tuple[str, int]] = Counter()
    subscription = Subscription(
        kafka, inventory_registry(), (Restocked,), group_id=f"{namespace}-sub", namespace=namespace
    )

    def handle(message: StreamMessage[Restocked]) -> None:
        assert message.event.quantity == message.version
        handled[(message.entity, message.version)] += 1

    consuming = threading.Thread(target=lambda: subscription.run(handle), daemon=True)
    relays.append(RelayProcess(pg_url, kafka_bootstrap, namespace))
    assert relays[0].active.wait(60), relays[0].output
    consuming.start()
    writing = writer(store, pause=0.05)
    wait_until(lambda: sum(handled.values()) >= TOTAL // 4, 120, "a quarter of the events")
    relays[0].kill9()
    published_before = sum(handled.values())
    assert published_before < TOTAL, "the relay was killed mid-stream"
    relays.append(RelayProcess(pg_url, kafka_bootstrap, namespace))
    assert relays[1].active.wait(60), relays[1].output
    writing.join(120)
    try:
        wait_until(
            lambda: len(handled) >= TOTAL,
            120,
            "every event handled",
            context=lambda: f"{len(handled)} of {TOTAL}\n{relays[1].output}",
        )
        time.sleep(1.0)  # anything re-sent late would show up as a second delivery
    finally:
        subscription.stop()
        consuming.join(30)
        subscription.close()
    assert set(handled) == {(f"InventoryItem/{s}", v) for s in SKUS for v in range(1, PER_SKU + 1)}
    assert set(handled.values()) == {1}, "each event reached the handler exactly once"
    records = read_topic(kafka, StreamTopics(namespace).events, TOTAL, timeout=60, settle=1)
    repeats = assert_resends_only(by_entity(records), expected(PER_SKU))
    assert repeats == subscription.stats.duplicates
    assert relays[1].terminate() == 0


def test_two_relays_started_together_never_interleave(
    store: Store, relays: list[RelayProcess], pg_url: str, kafka_bootstrap: str, namespace: str
) -> None:
    kafka = KafkaSettings(kafka_bootstrap)
    relays += [RelayProcess(pg_url, kafka_bootstrap, namespace) for _ in range(2)]
    wait_until(lambda: any(r.active.is_set() for r in relays), 60, "an active relay")
    writer(store, per_sku=PER_SKU // 2).join(120)
    topic = StreamTopics(namespace).events
    half = TOTAL // 2
    records = read_topic(kafka, topic, half, timeout=120, settle=1)
    assert assert_resends_only(by_entity(records), expected(PER_SKU // 2)) == 0
    active = [r for r in relays if r.active.is_set()]
    assert len(active) == 1, "\n\n".join(r.output for r in relays)
    standby = next(r for r in relays if r is not active[0])
    assert "standby" in standby.output
    # The active one dies in the middle of the second half; the standby takes over.
    writing = writer(store, start=PER_SKU // 2 + 1, per_sku=PER_SKU // 2, pause=0.05)
    time.sleep(1.0)
    active[0].kill9()
    assert standby.active.wait(60), standby.output
    writing.join(120)
    records = read_topic(kafka, topic, TOTAL, timeout=120, settle=1)
    assert_resends_only(by_entity(records), expected(PER_SKU))
    assert standby.terminate() == 0
