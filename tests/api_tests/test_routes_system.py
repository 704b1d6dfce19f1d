"""Operational routes: liveness, readiness against the real store and broker, metrics."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.server import ServerThread
from api.settings import Settings
from api.wiring import load_domain
from eventstore.kafka import ApacheKafka
from tests.api_tests.conftest import Stack


def test_healthz_and_readyz(stack: Stack) -> None:
    assert stack.http.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = stack.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["store"] == "ok"


def test_metrics_count_requests_latencies_and_outcomes(stack: Stack) -> None:
    gadget = stack.new_id("g")
    assert stack.http.post(f"/entities/Gadget/{gadget}/updates/bump").status_code == 200
    assert stack.http.post(f"/entities/Gadget/{gadget}/signals/bump").status_code == 202
    assert stack.http.post(f"/entities/Gadget/{gadget}/updates/bump?timeout=0").status_code == 422
    text = stack.http.get("/metrics").text
    route = "/entities/Gadget/{entity_id}/updates/bump"
    assert f'entityflow_http_requests_total{{method="POST",route="{route}",status="200"}}' in text
    assert f'entityflow_http_requests_total{{method="POST",route="{route}",status="422"}}' in text
    assert f'entityflow_http_request_seconds_count{{method="POST",route="{route}"}}' in text
    assert (
        'entityflow_command_outcomes_total{command="bump",entity_type="Gadget",outcome="applied"}'
        in text
    )
    assert (
        'entityflow_command_outcomes_total{command="bump",entity_type="Gadget",outcome="accepted"}'
        in text
    )


@pytest.mark.kafka
def test_broker_down_makes_readyz_and_commands_503_and_health_stays_up(
    running_broker: ApacheKafka, tmp_path: Path
) -> None:
    settings = Settings(
        store=f"sqlite:///{tmp_path / 'store.db'}",
        kafka_bootstrap_servers=running_broker.bootstrap_servers,
        namespace=f"t{uuid.uuid4().hex[:10]}",
        partitions=2,
        update_timeout=1.0,
    )
    app = create_app(settings, load_domain("examples.shop"))
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        ready = http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"store": "ok", "broker": "ok"}
        assert http.post("/entities/Account/a/signals/open", json={"owner": "A"}).status_code == 202
        running_broker.stop()
        down = http.get("/readyz")
        assert down.status_code == 503
        assert down.json()["checks"]["store"] == "ok"
        assert "BrokerUnavailableError" in down.json()["checks"]["broker"]
        start = time.monotonic()
        r = http.post("/entities/Account/b/signals/open", json={"owner": "B"})
        assert r.status_code == 503
        assert r.json()["error"] == "unavailable"
        assert r.json()["command_id"]
        assert time.monotonic() - start < 10
        assert http.get("/healthz").status_code == 200
