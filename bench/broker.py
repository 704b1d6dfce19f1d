"""The embedded broker's own costs, so the other tables can be read against them.

Two things every hop through the embedded broker (tansu, in-memory) pays, measured with
entityflow's own producer and tail consumer on one partition:

- ``hop``: a record sent (idempotent, ``acks=all``) at a random moment until a consumer
  that is already waiting receives it. The broker answers a waiting fetch only when its
  wait is over, not when a record arrives, so a hop costs about half the fetch wait on
  top of the send;
- ``fetch after N records``: the same hop once the partition holds N records. The
  in-memory log answers a fetch in time that grows with the partition, which is why the
  Kafka bench starts a fresh broker for every run.

Figures are medians of ``--runs`` runs of 200 hops each.
"""

from __future__ import annotations

import random
import statistics
import threading
import time

from bench.options import Options
from bench.table import Table
from eventstore.embedded_broker import EmbeddedBroker
from eventstore.kafka_io import Admin, KafkaSettings, Producer, TailConsumer

HOPS = 200
BACKLOGS = (0, 50_000, 100_000, 200_000)
TOPIC = "bench.hops"


def _hop_ms(producer: Producer, consumer: TailConsumer) -> float:
    """Median milliseconds from send to receipt, the consumer polling on its own thread."""
    received: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            if consumer.poll(0.1):
                received.append(time.perf_counter())

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    hops: list[float] = []
    try:
        for _ in range(HOPS):
            time.sleep(random.uniform(0.002, 0.012))
            seen = len(received)
            sent = time.perf_counter()
            producer.send(TOPIC, b"x" * 200).result(timeout=10)
            deadline = sent + 10
            while len(received) == seen:
                if time.perf_counter() > deadline:
                    raise TimeoutError("a record sent to the embedded broker never arrived")
                time.sleep(0.0002)
            hops.append((received[-1] - sent) * 1000)
    finally:
        stop.set()
        reader.join()
    return statistics.median(hops)


def _fill(producer: Producer, upto: int, have: int) -> int:
    futures = [producer.send(TOPIC, b"y" * 200) for _ in range(upto - have)]
    for f in futures:
        f.result(timeout=60)
    return upto


def _one_run() -> dict[int, float]:
    with EmbeddedBroker() as broker:
        settings = KafkaSettings(broker.bootstrap_servers)
        admin = Admin(settings)
        admin.ensure_topics({TOPIC: 1})
        admin.close()
        producer = Producer(settings)
        consumer = TailConsumer(settings, TOPIC)
        try:
            have = 0
            out: dict[int, float] = {}
            for backlog in BACKLOGS:
                have = _fill(producer, backlog, have)
                consumer.assign()  # from the end: only new records count
                out[backlog] = _hop_ms(producer, consumer)
                have += HOPS
            return out
        finally:
            consumer.close()
            producer.close()


def run(options: Options) -> Table:
    runs = [_one_run() for _ in range(options.runs)]
    wait = KafkaSettings.fetch_max_wait_ms  # the default every entityflow client uses
    table = Table(
        f"Embedded broker: one hop (send -> waiting consumer), fetch wait {wait} ms, "
        f"median of {options.runs} runs of {HOPS} hops",
        ["records already in the partition", "hop ms"],
    )
    for backlog in BACKLOGS:
        table.add(backlog, statistics.median(r[backlog] for r in runs))
    return table
