"""The HTTP end of a trace: one server span per request, the root of what it causes.

A request that brings a W3C ``traceparent`` header continues the caller's trace;
otherwise the span starts one. Every message the request sends (a command, a workflow's
start, a signal) is built inside the span and carries it on, so the worker's spans join
the same trace. The response's ``traceresponse`` header (W3C Trace Context Level 2)
names the request's span, so a caller without a tracer of its own can still look its
request up. Nothing runs here unless tracing is configured (``OTEL_TRACES_EXPORTER``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventstore import tracing

__all__ = ["TracingMiddleware"]

_TRACEPARENT = b"traceparent"


class TracingMiddleware:
    """Opens the request's server span, named by its route template once routed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        parent = next((v.decode("latin-1") for k, v in scope["headers"] if k == _TRACEPARENT), None)
        method = scope["method"]
        attributes: tracing.Attributes = {
            "http.request.method": method,
            "url.path": scope["path"],
        }
        with tracing.span(method, parent=parent, kind="server", attributes=attributes) as sp:
            status = 500

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    context = sp.trace_context()
                    if context is not None:
                        headers = list(message.get("headers", []))
                        headers.append((b"traceresponse", context.encode()))
                        message = {**message, "headers": headers}
                await send(message)

            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                template = getattr(scope.get("route"), "path", None)
                ended: dict[str, str | int] = {"http.response.status_code": status}
                if template is not None:
                    sp.rename(f"{method} {template}")
                    ended["http.route"] = template
                sp.update(ended)
                if status >= 500:
                    sp.fail(f"HTTP {status}")
