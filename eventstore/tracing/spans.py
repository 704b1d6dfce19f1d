"""Spans and the W3C trace context carried by messages.

A span is opened around each piece of work a message causes (an HTTP request, a command
applied by an entity, a workflow turn, a step sent, an activity attempt). Its parent is
the ``traceparent`` the message carried, so the work of one request shows as one trace
across the API process, the broker and every worker. Spans are the only OpenTelemetry
objects the rest of entityflow touches, through :class:`Traced`, so the SDK's types stay
here.

Most traced deployments sample (``parentbased_traceidratio``): the API's sampler decides
once per request, and every later span of an unsampled trace would be dropped by the
SDK's parent-based sampler after it parsed the context, ran the sampler and made a new
span id (about 12 us a span, for nothing recorded). When the provider's sampler drops
what a not-sampled parent starts (probed once, in :func:`use_tracer_provider`), such a
span is skipped: the parent's context is made current as it came, so the next message
still carries the trace, not sampled, to the next process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Literal

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TracerProvider,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "Attributes",
    "SpanKind",
    "Traced",
    "current_trace_id",
    "enabled",
    "span",
    "traceparent",
    "use_tracer_provider",
]

SpanKind = Literal["internal", "server", "client", "producer", "consumer"]
AttributeValue = str | int | float | bool
Attributes = dict[str, AttributeValue | None]
"""A span's attributes; a None value is left out."""
_KINDS: dict[SpanKind, trace.SpanKind] = {
    "internal": trace.SpanKind.INTERNAL,
    "server": trace.SpanKind.SERVER,
    "client": trace.SpanKind.CLIENT,
    "producer": trace.SpanKind.PRODUCER,
    "consumer": trace.SpanKind.CONSUMER,
}
_PROPAGATOR = TraceContextTextMapPropagator()
_UNSAMPLED = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-00")
"""A version-00 ``traceparent`` with no flag set, as entityflow and the SDK write it
(the all-zero ids, which the W3C propagator refuses, are refused by :func:`_unsampled`;
any other form goes through the propagator)."""


class _Current:
    """The process's tracer (None: tracing is off), and whether its sampler drops every
    span whose parent was not sampled (then entityflow does not ask it)."""

    tracer: Tracer | None = None
    drops_unsampled: bool = False


_current = _Current()


class Traced:
    """The span of one piece of work: attributes and the outcome are set as they become
    known (an entity's outcome is known only after its handler ran)."""

    __slots__ = ("_span",)

    def __init__(self, span: trace.Span | None) -> None:
        self._span = span

    def set(self, key: str, value: AttributeValue | None) -> None:
        if self._span is not None and value is not None:
            self._span.set_attribute(key, value)

    def update(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Several attributes at once (the SDK takes its span's lock once, not per key)."""
        if self._span is not None:
            self._span.set_attributes(attributes)

    def rename(self, name: str) -> None:
        """A better name found while working (an HTTP request's route template)."""
        if self._span is not None:
            self._span.update_name(name)

    def trace_context(self) -> str | None:
        """This span as a W3C ``traceparent`` value (for a response header)."""
        return None if self._span is None else _format(self._span.get_span_context())

    def fail(self, error: str) -> None:
        """The work ended in an error the code handled (a rejected command, a failed
        attempt): the span is marked as failed without an exception."""
        if self._span is not None:
            self._span.set_status(Status(StatusCode.ERROR, error[:500]))


_OFF = Traced(None)


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Trace through ``provider`` from now on (None: stop tracing).

    entityflow keeps its own reference instead of OpenTelemetry's global provider, which
    can be set only once per process: tests and embedded uses can switch it.
    """
    drops = provider is not None and _drops_unsampled_children(provider)
    _current.drops_unsampled = False  # while the tracer changes, ask the SDK
    _current.tracer = provider.get_tracer("entityflow") if provider is not None else None
    _current.drops_unsampled = drops


def _drops_unsampled_children(provider: TracerProvider) -> bool:
    """Whether ``provider``'s sampler drops every span whose parent, remote or local, was
    not sampled (the SDK's default ``parentbased_always_on`` and every ``parentbased_*``
    sampler do; ``always_on`` and ``traceidratio`` do not).

    Asked once, of the sampler itself, for the lowest and highest trace ids (a ratio
    delegate samples the low ones): a sampler that answers otherwise, or a provider that
    is not the SDK's, keeps every span going through the SDK.
    """
    sampler = getattr(provider, "sampler", None)
    if sampler is None:
        return False
    for remote in (True, False):
        for trace_id in (1, (1 << 128) - 1):
            parent = SpanContext(trace_id, 1, is_remote=remote, trace_flags=TraceFlags(0))
            context = trace.set_span_in_context(NonRecordingSpan(parent))
            result = sampler.should_sample(context, trace_id, "probe")
            if result.decision != Decision.DROP:
                return False
    return True


def enabled() -> bool:
    return _current.tracer is not None


def span(
    name: str,
    *,
    parent: str | None = None,
    kind: SpanKind = "internal",
    attributes: Mapping[str, AttributeValue | None] | None = None,
) -> AbstractContextManager[Traced]:
    """A span named ``name``, the current one while the block runs.

    ``parent`` is a W3C ``traceparent`` that came with a message; without one the span
    continues the current context (or starts a trace). An exception that escapes the
    block is recorded on the span, which is marked failed, and re-raised.
    """
    tracer = _current.tracer
    if tracer is None:
        return nullcontext(_OFF)
    if _current.drops_unsampled:
        if parent is not None:
            unsampled = _unsampled(parent)
            if unsampled is not None:
                _formatted.last = (unsampled, parent)
                return _Active(NonRecordingSpan(unsampled))
        else:
            current = trace.get_current_span().get_span_context()
            if current.is_valid and not current.trace_flags.sampled:
                return nullcontext(_OFF)  # already current: its messages carry it on
    context = _PROPAGATOR.extract({"traceparent": parent}) if parent is not None else None
    clean = attributes
    if attributes is not None and None in attributes.values():
        clean = {k: v for k, v in attributes.items() if v is not None}
    return _Active(tracer.start_span(name, context=context, kind=_KINDS[kind], attributes=clean))


class _Active:
    """The open span as the current one; a plain class, since this runs for every message
    a traced worker handles (a generator-based context manager costs a third more)."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._token: object = None

    def __enter__(self) -> Traced:
        self._token = context_api.attach(trace.set_span_in_context(self._span))
        return Traced(self._span)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if error is not None:
            self._span.record_exception(error)
            self._span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
        context_api.detach(self._token)  # type: ignore[arg-type]
        self._span.end()


def _unsampled(parent: str) -> SpanContext | None:
    """The context of a ``traceparent`` that says not sampled; None for any other (a
    sampled or malformed one goes through the SDK's propagator as before)."""
    found = _UNSAMPLED.fullmatch(parent)
    if found is None:
        return None
    trace_id, span_id = int(found[1], 16), int(found[2], 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(0))


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to send with the next message (None
    when tracing is off or no span is open)."""
    if _current.tracer is None:
        return None
    return _format(trace.get_current_span().get_span_context())


class _Formatted:
    """The last context formatted and its ``traceparent``, as one tuple so that threads
    read a matching pair: a request formats its span twice (its message and its
    ``traceresponse``), a turn once per message it sends, and a context carried on
    unsampled is never formatted at all."""

    last: tuple[trace.SpanContext | None, str | None] = (None, None)


_formatted = _Formatted()


def _format(context: trace.SpanContext) -> str | None:
    # What the W3C propagator's inject writes, without its carrier and setter machinery
    # (it runs for every message a traced turn sends).
    last = _formatted.last
    if last[0] is context:
        return last[1]
    if not context.is_valid:
        return None
    value = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    _formatted.last = (context, value)
    return value


def current_trace_id() -> str | None:
    """The current trace's id as 32 hex digits (for logs and error bodies), if any."""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None
