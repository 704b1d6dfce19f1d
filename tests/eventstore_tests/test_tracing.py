"""Tracing's own rules: off unless configured, the standard variables, the W3C context."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from contextlib import redirect_stderr

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import StatusCode

from actors import Envelope
from eventstore import tracing
from eventstore.tracing import TracingConfigError, configure_tracing, shutdown_tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    yield exporter
    tracing.use_tracer_provider(None)


def test_off_by_default_costs_nothing_and_sends_no_context() -> None:
    assert not configure_tracing("entityflow-test", env={})
    assert not configure_tracing("entityflow-test", env={"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.enabled()
    with tracing.span("work", parent=f"00-{uuid.uuid4().hex}-{'1' * 16}-01") as sp:
        sp.set("k", "v")
        assert tracing.traceparent() is None
        assert sp.trace_context() is None
    assert Envelope(address="Gadget/g", kind="command", name="bump").traceparent is None


def test_a_span_continues_the_context_a_message_brought(spans: InMemorySpanExporter) -> None:
    trace_id, parent = uuid.uuid4().hex, "ab" * 8
    with tracing.span("work", parent=f"00-{trace_id}-{parent}-01", attributes={"a": 1, "b": None}):
        sent = Envelope(address="Gadget/g", kind="command", name="bump")
        inner = tracing.traceparent()
    (span,) = spans.get_finished_spans()
    assert span.context is not None and span.parent is not None
    assert f"{span.context.trace_id:032x}" == trace_id
    assert f"{span.parent.span_id:016x}" == parent
    assert dict(span.attributes or {}) == {"a": 1}
    # What the block sends carries the span itself as the next parent.
    assert sent.traceparent == inner == f"00-{trace_id}-{span.context.span_id:016x}-01"
    assert Envelope.decode(sent.encode()).traceparent == sent.traceparent


@pytest.mark.parametrize(
    "sampler", [None, ParentBased(TraceIdRatioBased(0.5))], ids=["default", "ratio"]
)
def test_an_unsampled_context_is_carried_on_without_spans(sampler: Sampler | None) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        trace_id, parent = uuid.uuid4().hex, "cd" * 8
        came = f"00-{trace_id}-{parent}-00"
        with tracing.span("work", parent=came, attributes={"a": 1}) as sp:
            sp.set("b", 2)
            assert tracing.traceparent() == came
            assert tracing.current_trace_id() == trace_id
            with tracing.span("step", kind="producer"):
                sent = Envelope(address="Gadget/g", kind="command", name="bump")
            assert tracing.traceparent() == came
        assert tracing.traceparent() is None
        # A sampled context in the same process is still traced through the SDK.
        with tracing.span("sampled", parent=f"00-{trace_id}-{parent}-01"):
            pass
    finally:
        tracing.use_tracer_provider(None)
    assert sent.traceparent == came
    assert [s.name for s in exporter.get_finished_spans()] == ["sampled"]


def test_a_sampler_that_records_unsampled_children_is_still_asked() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_ON)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer_provider(provider)
    try:
        trace_id = uuid.uuid4().hex
        with tracing.span("work", parent=f"00-{trace_id}-{'ef' * 8}-00"):
            pass
    finally:
        tracing.use_tracer_provider(None)
    (span,) = exporter.get_finished_spans()
    assert span.context is not None and span.parent is not None
    assert f"{span.context.trace_id:032x}" == trace_id
    assert f"{span.parent.span_id:016x}" == "ef" * 8


def test_an_escaping_exception_fails_the_span_and_is_reraised(
    spans: InMemorySpanExporter,
) -> None:
    with pytest.raises(RuntimeError, match="boom"), tracing.span("work"):
        raise RuntimeError("boom")
    with tracing.span("handled") as sp:
        sp.fail("rejected: too much")
    failed, handled = spans.get_finished_spans()
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert handled.status.status_code is StatusCode.ERROR
    assert handled.status.description == "rejected: too much"


def test_console_exports_one_json_line_per_span_under_the_service_name() -> None:
    err = io.StringIO()
    with redirect_stderr(err):
        assert configure_tracing("entityflow-test", env={"OTEL_TRACES_EXPORTER": "console"})
        try:
            with tracing.span("one"), tracing.span("two"):
                pass
        finally:
            shutdown_tracing()
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    assert [s["name"] for s in lines] == ["two", "one"]
    assert {s["resource"]["attributes"]["service.name"] for s in lines} == {"entityflow-test"}
    assert not tracing.enabled()


def test_otel_service_name_wins_over_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout-workers")
    err = io.StringIO()
    with redirect_stderr(err):
        env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "checkout-workers"}
        assert configure_tracing("entityflow-worker", env=env)
        try:
            with tracing.span("one"):
                pass
        finally:
            shutdown_tracing()
    (line,) = err.getvalue().splitlines()
    assert json.loads(line)["resource"]["attributes"]["service.name"] == "checkout-workers"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "knows 'otlp', 'console' and 'none'"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "set it to 'http/protobuf'",
        ),
    ],
)
def test_settings_it_cannot_honour_are_refused_with_what_to_do(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(TracingConfigError, match=message):
        configure_tracing("entityflow-test", env=env)
    assert not tracing.enabled()


def test_the_sdk_can_be_disabled_whatever_the_exporter() -> None:
    env = {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}
    assert not configure_tracing("entityflow-test", env=env)
    assert not tracing.enabled()
