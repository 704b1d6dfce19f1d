"""Turning tracing on for one process, from the standard ``OTEL_*`` variables.

Exporting is off unless ``OTEL_TRACES_EXPORTER`` names an exporter (the OpenTelemetry
default would be ``otlp``; entityflow's is off, so a process that nobody configured
opens no connections and pays nothing). Supported:

- ``otlp``: OTLP over HTTP/protobuf (needs ``pip install 'entityflow[otlp]'``); the
  exporter reads ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``..._TRACES_ENDPOINT``,
  ``..._HEADERS`` and ``..._TIMEOUT`` itself;
- ``console``: one JSON object per span, one per line, on standard error;
- ``none``: off.

The SDK reads the rest itself: ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``
(the resource), ``OTEL_TRACES_SAMPLER`` and ``..._ARG`` (sampling), ``OTEL_BSP_*`` (the
batch processor). ``OTEL_SDK_DISABLED=true`` turns everything off.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Mapping

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from eventstore.errors import EventStoreError
from eventstore.tracing.spans import use_tracer_provider

__all__ = ["TracingConfigError", "configure_tracing", "shutdown_tracing"]


class _Configured:
    """The provider this module installed, to flush and shut down at exit."""

    provider: TracerProvider | None = None


_configured = _Configured()


class TracingConfigError(EventStoreError, ValueError):
    """The OTEL_* variables ask for something this process cannot do."""


def _one_line(span: ReadableSpan) -> str:
    line: str = span.to_json(indent=None)
    return line + "\n"


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter(out=sys.stderr, formatter=_one_line)
    if name == "otlp":
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        if protocol != "http/protobuf":
            raise TracingConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; entityflow "
                "exports OTLP over HTTP: set it to 'http/protobuf' (or unset it)"
            )
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise TracingConfigError(
                "OTEL_TRACES_EXPORTER=otlp needs the OTLP exporter: pip install 'entityflow[otlp]'"
            ) from exc
        return OTLPSpanExporter()
    raise TracingConfigError(
        f"OTEL_TRACES_EXPORTER names {name!r}; entityflow knows 'otlp', 'console' and 'none'"
    )


def configure_tracing(service: str, env: Mapping[str, str] | None = None) -> bool:
    """Trace this process if the environment asks for it; True when it does.

    ``service`` is the default ``service.name`` (``entityflow-worker``, ...), used
    when ``OTEL_SERVICE_NAME`` is not set. Raises :class:`TracingConfigError` for a
    setting it cannot honour, before anything runs.
    """
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    exporters = [_exporter(n, env) for n in names if n and n != "none"]
    if not exporters:
        return False
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    provider = TracerProvider(resource=Resource.create(attributes))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    shutdown_tracing()
    _configured.provider = provider
    use_tracer_provider(provider)
    atexit.register(shutdown_tracing)
    return True


def shutdown_tracing() -> None:
    """Export what is buffered and stop tracing (at exit, or before reconfiguring)."""
    provider, _configured.provider = _configured.provider, None
    if provider is not None:
        use_tracer_provider(None)
        provider.shutdown()
