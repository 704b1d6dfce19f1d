"""One trace from the HTTP request to the entity, the workflow's steps, its activities and
the stored event: on the in-memory mailbox and on the real broker (the context then
travels in Kafka record headers and envelopes between the API and the worker)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from eventstore import tracing
from eventstore.stream.format import encode_entry
from tests.api_tests.conftest import StackFactory

KINDS = [
    "memory-sqlite",
    pytest.param("kafka-postgres", marks=[pytest.mark.kafka, pytest.mark.postgres]),
]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    yield exporter
    tracing.use_tracer_provider(None)
    provider.shutdown()


def _caller() -> tuple[str, str, str]:
    """A caller's own trace: (traceparent header, trace id, span id)."""
    trace_id, span_id = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def _in_trace(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.context is not None and f"{s.context.trace_id:032x}" == trace_id
    ]


def _wait_spans(
    exporter: InMemorySpanExporter, trace_id: str, name: str, count: int = 1
) -> list[ReadableSpan]:
    deadline = time.monotonic() + 30
    while True:
        found = [s for s in _in_trace(exporter, trace_id) if s.name == name]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, (
            f"{name} x{count} not in {[s.name for s in _in_trace(exporter, trace_id)]}"
        )
        time.sleep(0.02)


def _span_id(s: ReadableSpan) -> int:
    assert s.context is not None
    return s.context.span_id


def _attr(s: ReadableSpan, key: str) -> Any:
    assert s.attributes is not None
    return s.attributes.get(key)


@pytest.mark.parametrize("kind", KINDS)
def test_a_command_is_traced_from_the_request_to_its_stored_event(
    make_stack: StackFactory, spans: InMemorySpanExporter, kind: str
) -> None:
    header, trace_id, caller_span = _caller()
    with make_stack(kind) as s:
        gadget = s.new_id("g")
        r = s.http.post(
            f"/entities/Gadget/{gadget}/updates/bump",
            json={"by": 2},
            headers={"traceparent": header},
        )
        assert r.status_code == 200, r.text
        assert r.headers["traceresponse"].split("-")[1] == trace_id

        (server,) = _wait_spans(spans, trace_id, "POST /entities/Gadget/{entity_id}/updates/bump")
        assert server.kind is SpanKind.SERVER
        assert server.parent is not None and server.parent.span_id == int(caller_span, 16)
        assert _attr(server, "http.response.status_code") == 200

        (applied,) = _wait_spans(spans, trace_id, "command Gadget.bump")
        assert applied.kind is SpanKind.CONSUMER
        assert applied.parent is not None and applied.parent.span_id == _span_id(server)
        assert _attr(applied, "entityflow.address") == f"Gadget/{gadget}"
        assert _attr(applied, "entityflow.outcome") == "applied"
        assert applied.status.status_code is not StatusCode.ERROR

        # The event remembers the span that recorded it, and is published with it.
        (event,) = s.host.store.read(f"Gadget/{gadget}")
        assert event.traceparent is not None
        assert event.traceparent.split("-")[1] == trace_id
        assert event.traceparent.split("-")[2] == f"{_span_id(applied):016x}"
        entry = next(e for e in s.host.store.log(0, 10_000) if e.stream_id == f"Gadget/{gadget}")
        record = encode_entry(s.host.store, entry)
        assert record.headers["traceparent"] == event.traceparent.encode()


@pytest.mark.parametrize("kind", KINDS)
def test_a_rejected_and_a_crashed_command_mark_their_spans_failed(
    make_stack: StackFactory, spans: InMemorySpanExporter, kind: str
) -> None:
    with make_stack(kind) as s:
        gadget = s.new_id("g")
        for _ in range(10):
            r = s.http.post(f"/entities/Gadget/{gadget}/updates/bump", json={"by": 1000})
            assert r.status_code == 200, r.text
        header, trace_id, _ = _caller()
        r = s.http.post(
            f"/entities/Gadget/{gadget}/updates/bump",
            json={"by": 1},
            headers={"traceparent": header},
        )
        assert r.status_code == 409, r.text
        (rejected,) = _wait_spans(spans, trace_id, "command Gadget.bump")
        assert _attr(rejected, "entityflow.outcome") == "rejected"
        assert rejected.status.status_code is StatusCode.ERROR
        assert "10000" in (rejected.status.description or "")

        header, trace_id, _ = _caller()
        s.http.post(
            f"/entities/Gadget/{gadget}/updates/explode", json={}, headers={"traceparent": header}
        )
        (crashed,) = _wait_spans(spans, trace_id, "command Gadget.explode")
        assert _attr(crashed, "entityflow.outcome") == "dead_lettered"
        assert crashed.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("kind", KINDS)
def test_a_workflow_its_steps_and_its_activity_attempts_share_the_request_trace(
    make_stack: StackFactory, spans: InMemorySpanExporter, kind: str
) -> None:
    header, trace_id, _ = _caller()
    with make_stack(kind) as s:
        wid = s.new_id("receipt")
        r = s.http.post(
            "/workflows/Receipt",
            json={"workflow_id": wid, "input": {"email": "ada@example.com"}},
            headers={"traceparent": header},
        )
        assert r.status_code == 202, r.text
        r = s.http.get(f"/workflows/Receipt/{wid}", params={"wait": "30"})
        assert r.json()["status"] == "completed", r.text

        (server,) = _wait_spans(spans, trace_id, "POST /workflows/Receipt")
        (start,) = _wait_spans(spans, trace_id, "control workflow:Receipt.start")
        assert start.parent is not None and start.parent.span_id == _span_id(server)

        steps = _wait_spans(spans, trace_id, "step send_receipt", 2)
        attempts = _wait_spans(spans, trace_id, "activity send_receipt", 2)
        by_attempt = {_attr(a, "entityflow.step.attempt"): a for a in attempts}
        assert by_attempt[1].status.status_code is StatusCode.ERROR
        assert _attr(by_attempt[1], "entityflow.outcome") == "rejected"
        assert _attr(by_attempt[2], "entityflow.outcome") == "applied"
        step_ids = {_span_id(st) for st in steps}
        for a in attempts:
            assert a.kind is SpanKind.CONSUMER
            assert a.parent is not None and a.parent.span_id in step_ids
            assert _attr(a, "entityflow.workflow") == f"workflow:Receipt/{wid}"
        # The first step is sent by the start turn; the turn that reads each reply is the
        # child of the activity attempt that sent it, so the chain never breaks.
        first = next(st for st in steps if _attr(st, "entityflow.step.attempt") == 1)
        assert first.parent is not None and first.parent.span_id == _span_id(start)
        replies = _wait_spans(spans, trace_id, "reply workflow:Receipt.reply", 2)
        assert {r.parent.span_id for r in replies if r.parent} == {_span_id(a) for a in attempts}
