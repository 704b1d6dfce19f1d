"""The broker every bench section runs on, and its own hop latency.

``section_broker`` starts one Apache Kafka (a KRaft node from the official jars, the one
the tests use) for a whole section: every run of the section shares it, so a figure that
only a fresh broker could give would show up as runs that get slower. ``--bootstrap``
points every section at a cluster that is already running instead.

The ``broker`` section measures what a hop through that broker costs, with entityflow's
own producer and tail consumer on one partition:

- ``ack``: an idempotent ``acks=all`` send until the broker acknowledged it;
- ``hop``: a record sent at a random moment until a consumer already waiting receives
  it (Apache Kafka answers a waiting fetch as soon as a record is appended, so this is
  the send plus one fetch response, not a fetch wait);
- both again once the partition holds N records: flat, so runs may share one broker.

Figures are medians of ``--runs`` runs of 200 hops each.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.options import Options
from bench.table import Table
from eventstore.kafka import ApacheKafka, kafka_version
from eventstore.kafka.admin import Admin
from eventstore.kafka.io import KafkaSettings
from eventstore.kafka.producer import Producer
from eventstore.kafka.tail_consumer import TailConsumer

HOPS = 200
BACKLOGS = (0, 100_000, 400_000)
TOPIC_PREFIX = "bench.hops"


@contextmanager
def section_broker(options: Options) -> Iterator[str]:
    """Bootstrap servers of the broker a section runs on: started once, stopped after."""
    if options.bootstrap:
        yield options.bootstrap
        return
    with ApacheKafka(say=print) as broker:
        yield broker.bootstrap_servers


def broker_name(options: Options) -> str:
    return options.bootstrap or f"Apache Kafka {kafka_version()} (one KRaft node)"


def _hops(producer: Producer, consumer: TailConsumer, topic: str) -> tuple[float, float]:
    """Median ms of (acknowledged send, send -> waiting consumer), the consumer on its thread."""
    received: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            if consumer.poll(0.5):
                received.append(time.perf_counter())

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    acks: list[float] = []
    hops: list[float] = []
    try:
        for _ in range(HOPS):
            time.sleep(random.uniform(0.002, 0.012))
            seen = len(received)
            sent = time.perf_counter()
            producer.send(topic, b"x" * 200).result(timeout=10)
            acks.append((time.perf_counter() - sent) * 1000)
            deadline = sent + 10
            while len(received) == seen:
                if time.perf_counter() > deadline:
                    raise TimeoutError("a record sent to the broker never arrived")
                time.sleep(0.0002)
            hops.append((received[-1] - sent) * 1000)
    finally:
        stop.set()
        reader.join()
    return statistics.median(acks), statistics.median(hops)


def _one_run(bootstrap: str, run: int) -> dict[int, tuple[float, float]]:
    settings = KafkaSettings(bootstrap)
    admin = Admin(settings)
    topic = f"{TOPIC_PREFIX}.{run}.{random.randrange(1 << 30)}"
    admin.ensure_topics({topic: 1})
    producer = Producer(settings)
    consumer = TailConsumer(settings, topic)
    try:
        have = 0
        out: dict[int, tuple[float, float]] = {}
        for backlog in BACKLOGS:
            have = _fill_topic(producer, topic, backlog, have)
            consumer.assign()  # from the end: only new records count
            out[backlog] = _hops(producer, consumer, topic)
            have += HOPS
        return out
    finally:
        consumer.close()
        producer.close()
        admin.delete_topics([topic])
        admin.close()


def _fill_topic(producer: Producer, topic: str, upto: int, have: int) -> int:
    futures = [producer.send(topic, b"y" * 200) for _ in range(upto - have)]
    for f in futures:
        f.result(timeout=120)
    return upto


def run(options: Options) -> Table:
    with section_broker(options) as bootstrap:
        runs = [_one_run(bootstrap, i) for i in range(options.runs)]
    wait = KafkaSettings.fetch_max_wait_ms  # the default every entityflow client uses
    table = Table(
        f"{broker_name(options)}: one hop (send -> waiting consumer), fetch wait {wait} ms, "
        f"median of {options.runs} runs of {HOPS} hops, all runs on one broker",
        ["records already in the partition", "ack ms", "hop ms"],
    )
    for backlog in BACKLOGS:
        table.add(
            backlog,
            statistics.median(r[backlog][0] for r in runs),
            statistics.median(r[backlog][1] for r in runs),
        )
    return table
