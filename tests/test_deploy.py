"""deploy/ runs the Apache Kafka version and broker settings the tests and benchmarks run."""

from __future__ import annotations

from pathlib import Path

import yaml

from eventstore.kafka.apache import TUNING, kafka_version

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _compose() -> dict[str, object]:
    loaded = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_compose_runs_the_kafka_version_of_the_tests() -> None:
    kafka = _compose()["services"]["kafka"]  # type: ignore[index]
    assert kafka["image"] == f"apache/kafka:{kafka_version()}"


def test_compose_sets_every_broker_setting_the_tests_set() -> None:
    env = _compose()["services"]["kafka"]["environment"]  # type: ignore[index]
    for key, value in TUNING.items():
        name = "KAFKA_" + key.upper().replace(".", "_")
        assert str(env.get(name)) == value, f"{name} should be {value!r} in docker-compose.yml"


def test_every_compose_worker_has_its_own_identity() -> None:
    services = _compose()["services"]
    ids = [
        s["environment"]["ENTITYFLOW_WORKER_ID"]  # type: ignore[index]
        for name, s in services.items()  # type: ignore[attr-defined]
        if name.startswith("worker")
    ]
    assert len(ids) >= 2
    assert len(set(ids)) == len(ids)


def test_the_k8s_workers_take_their_identity_from_the_pod_name() -> None:
    worker = yaml.safe_load((DEPLOY / "k8s" / "worker.yaml").read_text())
    assert worker["kind"] == "StatefulSet"
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["ENTITYFLOW_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_the_k8s_workers_serve_metrics_where_prometheus_is_told_to_look() -> None:
    worker = yaml.safe_load((DEPLOY / "k8s" / "worker.yaml").read_text())
    template = worker["spec"]["template"]
    (container,) = template["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    port = env["ENTITYFLOW_WORKER_METRICS_PORT"]
    assert env["ENTITYFLOW_WORKER_METRICS_HOST"] == "0.0.0.0"  # reachable from outside the pod
    assert {"name": "metrics", "containerPort": int(port)} in container["ports"]
    assert template["metadata"]["annotations"]["prometheus.io/port"] == port
