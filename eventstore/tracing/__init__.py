"""Tracing: one OpenTelemetry trace from the HTTP request to the actor, and beyond.

This package is OpenTelemetry's one home in entityflow. The rest of the code sees three
things: :func:`span` (a span around a piece of work, continuing a W3C ``traceparent``
that came with a message), :func:`traceparent` (the context to send on with the next
message) and :func:`configure_tracing` (called once per process by the CLI).

The context travels with every message as the envelope's ``traceparent`` (mirrored into
a Kafka record header of the same name), is stored with every event it caused, and is
published as the ``traceparent`` header of the event's stream record, so a subscriber
can continue the trace.

Tracing is off unless a process is configured to export (``OTEL_TRACES_EXPORTER``):
then :func:`span` is a shared no-op and :func:`traceparent` returns None, so a command
pays one attribute read for it.
"""

from eventstore.tracing.setup import TracingConfigError, configure_tracing, shutdown_tracing
from eventstore.tracing.spans import (
    Attributes,
    SpanKind,
    Traced,
    current_trace_id,
    enabled,
    span,
    traceparent,
    use_tracer_provider,
)

__all__ = [
    "Attributes",
    "SpanKind",
    "Traced",
    "TracingConfigError",
    "configure_tracing",
    "current_trace_id",
    "enabled",
    "shutdown_tracing",
    "span",
    "traceparent",
    "use_tracer_provider",
]
