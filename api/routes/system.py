"""Operational routes: liveness, readiness (store and broker reachable), Prometheus metrics."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import Response

from api.context import ApiContext
from api.errors import JSON
from api.openapi.schemas import Health


def install(app: FastAPI, ctx: ApiContext) -> None:
    async def healthz() -> Health:
        return Health(status="ok")

    async def readyz() -> Response:
        checks: dict[str, str] = {}
        ready = True
        for name, check in {"store": ctx.store.ping, **ctx.checks}.items():
            try:
                await ctx.run(check)
                checks[name] = "ok"
            except Exception as exc:
                checks[name] = f"{type(exc).__name__}: {exc}"
                ready = False
        health = Health(status="ok" if ready else "unavailable", checks=checks)
        return Response(
            health.model_dump_json(), status_code=200 if ready else 503, media_type=JSON
        )

    async def metrics() -> Response:
        # In a thread: the scrape reads the store's counts.
        body = await ctx.run(ctx.metrics.exposition)
        return Response(body, media_type=ctx.metrics.content_type)

    app.add_api_route(
        "/healthz", healthz, methods=["GET"], tags=["operations"], summary="The process is up"
    )
    app.add_api_route(
        "/readyz",
        readyz,
        methods=["GET"],
        tags=["operations"],
        summary="The event store and the broker are reachable",
        response_class=Response,
        responses={
            200: {"model": Health, "description": "ready"},
            503: {"model": Health, "description": "a dependency is unreachable"},
        },
    )
    app.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        tags=["operations"],
        summary="Prometheus metrics: requests, latencies, command outcomes",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "exposition format"}},
    )
