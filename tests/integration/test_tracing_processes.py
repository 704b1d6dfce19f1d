"""One trace across OS processes: `entityflow serve` and `entityflow worker` on Apache Kafka
and PostgreSQL, configured only by the standard OTEL_* variables, export over OTLP/HTTP
to a collector (a small receiver here); the event on the stream carries the trace too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from eventstore.kafka import free_port
from eventstore.kafka.io import KafkaSettings
from eventstore.stream.relay import StreamTopics
from tests.eventstore_tests.stream_support import read_topic
from tests.integration.processes import ROOT, WorkerProcess

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]


class Collector:
    """Receives OTLP/HTTP trace exports: (service name, span) for every span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = next(
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    )
                    for scope in resource_spans.scope_spans:
                        collector.spans += [(service, s) for s in scope.spans]
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def in_trace(self, trace_id: str) -> list[tuple[str, Any]]:
        return [(svc, s) for svc, s in self.spans if s.trace_id.hex() == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def _wait(what: str, check: Any, timeout: float, context: Any) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: {context()}"
        time.sleep(0.1)


def test_a_request_is_one_trace_across_api_broker_worker_and_stream(
    pg_url: str, kafka_bootstrap: str, namespace: str, collector: Collector
) -> None:
    otel = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    worker = WorkerProcess(pg_url, kafka_bootstrap, namespace, partitions=4, extra_env=otel)
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--domain", "examples.shop"],
        cwd=ROOT,
        env={
            **os.environ,
            **otel,
            "PYTHONPATH": str(ROOT),
            "ENTITYFLOW_STORE": pg_url,
            "ENTITYFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "ENTITYFLOW_NAMESPACE": namespace,
            "ENTITYFLOW_PARTITIONS": "4",
            "ENTITYFLOW_API_PORT": str(port),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        worker.wait_assigned()
        assert "tracing on (exporter otlp)" in worker.output

        def ready() -> bool:
            assert serve.poll() is None, serve.communicate()[0]
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        _wait("the API to be ready", ready, 90, lambda: "")
        trace_id, caller = uuid.uuid4().hex, uuid.uuid4().hex[:16]
        account = f"acct-{uuid.uuid4().hex[:8]}"
        r = httpx.post(
            f"{url}/entities/Account/{account}/updates/open",
            json={"owner": "Ada"},
            headers={"traceparent": f"00-{trace_id}-{caller}-01"},
            timeout=60,
        )
        assert r.status_code == 200, r.text

        def both_processes() -> list[tuple[str, Any]] | None:
            spans = collector.in_trace(trace_id)
            services = {svc for svc, _ in spans}
            return spans if {"entityflow-serve", "entityflow-worker"} <= services else None

        spans = _wait("spans from both processes", both_processes, 60, worker.output)
        (server,) = [s for svc, s in spans if svc == "entityflow-serve"]
        (applied,) = [s for svc, s in spans if s.name == "command Account.open"]
        assert server.parent_span_id.hex() == caller
        assert applied.parent_span_id == server.span_id  # through the broker
        attributes = {a.key: a.value.string_value for a in applied.attributes}
        assert attributes["entityflow.address"] == f"Account/{account}"
        assert attributes["entityflow.outcome"] == "applied"

        # The worker's relay publishes the event with the span that recorded it.
        records = read_topic(
            KafkaSettings(kafka_bootstrap), StreamTopics(namespace).events, 1, timeout=60
        )
        (record,) = [r for r in records if r.key == f"Account/{account}".encode()]
        parent = record.headers["traceparent"].decode().split("-")
        assert parent[1:3] == [trace_id, applied.span_id.hex()]
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
        worker.stop()
