"""The Apache Kafka entityflow starts: its version, its data across restarts and crashes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eventstore.kafka import (
    ApacheKafka,
    BrokerLaunchError,
    apache,
    kafka_classpath,
    kafka_version,
    local_broker,
)
from eventstore.kafka.admin import Admin
from eventstore.kafka.apache import POM, new_cluster_id
from eventstore.kafka.io import KafkaSettings
from eventstore.kafka.local import alive
from eventstore.kafka.producer import Producer
from eventstore.kafka.tail_consumer import TailConsumer

pytestmark = pytest.mark.kafka


def test_the_version_comes_from_the_maven_project() -> None:
    assert f"<kafka.version>{kafka_version()}</kafka.version>" in POM.read_text()
    assert kafka_version().startswith("4.")


def test_cluster_ids_are_the_shape_kraft_wants() -> None:
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and "=" not in i for i in ids)
    # About one in 64 starts with "-": the format command must not read it as an option.
    assert any(i.startswith("-") for i in ids | {new_cluster_id() for _ in range(2000)})


def test_a_cluster_id_that_looks_like_an_option_still_formats(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apache, "new_cluster_id", lambda: "-" + "A" * 21)
    broker = ApacheKafka(tmp_path / "k")
    broker.home.mkdir()
    broker._format(kafka_classpath(), broker._config())
    assert "cluster.id=-AAAA" in (broker.data_dir / "meta.properties").read_text()


def _send(settings: KafkaSettings, topic: str, count: int, tag: str) -> None:
    producer = Producer(settings)
    try:
        futures = [producer.send(topic, f"{tag}-{n}".encode()) for n in range(count)]
        for f in futures:
            f.result(timeout=30)  # acknowledged by the broker (acks=all)
    finally:
        producer.close()


def _read_all(settings: KafkaSettings, topic: str, expected: int) -> list[bytes]:
    consumer = TailConsumer(settings, topic, from_beginning=True)
    got: list[bytes] = []
    try:
        for _ in range(100):
            got += [r.value for r in consumer.poll(0.3)]
            if len(got) >= expected:
                break
    finally:
        consumer.close()
    return got


@pytest.mark.parametrize("how", ["stop", "kill -9"])
def test_acknowledged_records_survive_a_restart_and_a_crash(
    running_broker: ApacheKafka, namespace: str, how: str
) -> None:
    settings = KafkaSettings(running_broker.bootstrap_servers)
    topic = f"{namespace}.durable"
    admin = Admin(settings)
    admin.ensure_topics({topic: 2})
    admin.close()
    _send(settings, topic, 500, "before")
    if how == "stop":
        running_broker.stop()
    else:
        running_broker.kill()
    assert not running_broker.running
    running_broker.start()
    _send(settings, topic, 10, "after")
    values = sorted(_read_all(settings, topic, 510))
    assert values == sorted(
        [f"before-{n}".encode() for n in range(500)] + [f"after-{n}".encode() for n in range(10)]
    )


def test_a_wipe_loses_everything(running_broker: ApacheKafka, namespace: str) -> None:
    settings = KafkaSettings(running_broker.bootstrap_servers)
    topic = f"{namespace}.wiped"
    admin = Admin(settings)
    admin.ensure_topics({topic: 1})
    assert admin.topic_id(topic) is not None
    # kafka-python's default (30 s) kept clients away from a broker that was back for
    # 11-17 s after a 40 s outage (measured); the Java client's 1 s brings them back in 1.
    assert admin._admin.config["reconnect_backoff_max_ms"] == 1_000
    admin.close()
    running_broker.restart(wipe=True)
    admin = Admin(settings)
    try:
        assert topic not in admin._admin.list_topics()
    finally:
        admin.close()


def test_a_broker_left_behind_by_a_killed_run_is_stopped_first(tmp_path: Path) -> None:
    first = ApacheKafka(tmp_path / "kafka").start()
    leftover = first.pid
    assert leftover is not None
    # The process that started it dies without stopping it (kill -9 of `entityflow dev`).
    said: list[str] = []
    second = ApacheKafka(
        tmp_path / "kafka", port=first.port, controller_port=first.controller_port, say=said.append
    )
    try:
        second.start()
        assert any(f"pid {leftover}" in line for line in said), said
        assert not alive(leftover)
        assert second.running
    finally:
        second.close()
        first.kill()


def test_a_taken_port_is_a_clear_error(tmp_path: Path, kafka_broker: ApacheKafka) -> None:
    clash = ApacheKafka(tmp_path / "clash", port=kafka_broker.port)
    with pytest.raises(BrokerLaunchError, match=f"port {kafka_broker.port} is taken"):
        clash.start()


def test_without_java_the_local_broker_is_tansu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", os.pathsep.join(_dirs_without_java()))
    said: list[str] = []
    broker = local_broker(tmp_path, say=said.append)
    assert type(broker).__name__ == "TansuBroker"
    assert "memory-only" in said[0] and "install Java 17" in said[0]


def _dirs_without_java() -> list[str]:
    return [d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "java").exists()]


def test_the_broker_runs_in_a_process_group_of_its_own(kafka_broker: ApacheKafka) -> None:
    """A Ctrl-C to entityflow must not reach the broker before entityflow has stopped its
    workers: it stops the broker itself, last."""
    assert kafka_broker.pid is not None
    assert os.getpgid(kafka_broker.pid) != os.getpgrp()
