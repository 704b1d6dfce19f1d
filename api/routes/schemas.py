"""Routes that describe the event stream: the AsyncAPI document and each event's JSON Schema."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from api.context import ApiContext
from api.errors import ErrorBody, render
from api.openapi.asyncapi import asyncapi_document, entity_streams
from eventstore.stream.schemas import event_schemas


def install(app: FastAPI, ctx: ApiContext) -> None:
    settings = ctx.settings
    streams = entity_streams(
        ctx.catalog, ctx.store.registry, workflow_events=settings.relay_workflow_events
    )
    document = asyncapi_document(
        streams,
        namespace=settings.namespace,
        partitions=settings.partitions,
        bootstrap_servers=settings.kafka_bootstrap_servers
        if settings.kafka_bootstrap_servers != "memory"
        else None,
        per_type_topics=settings.relay_per_type_topics,
        version=app.version,
    )
    schemas = event_schemas(cls for classes in streams.values() for cls in classes)

    async def asyncapi() -> dict[str, Any]:
        return document

    async def all_schemas() -> dict[str, Any]:
        return schemas

    async def one_schema(event_type: str) -> Any:
        schema = schemas.get(event_type)
        if schema is None:
            return render(
                404,
                ErrorBody(
                    error="unknown_event_type",
                    message=f"no event type {event_type!r} is published on the stream",
                    hint="GET /schemas/events lists the event types and their schemas",
                ),
            )
        return schema

    app.add_api_route(
        "/asyncapi.json",
        asyncapi,
        methods=["GET"],
        tags=["event stream"],
        summary="AsyncAPI 3.0 document of the Kafka event stream",
    )
    app.add_api_route(
        "/schemas/events",
        all_schemas,
        methods=["GET"],
        tags=["event stream"],
        summary="JSON Schema of every event type on the stream, by type name",
    )
    app.add_api_route(
        "/schemas/events/{event_type}",
        one_schema,
        methods=["GET"],
        tags=["event stream"],
        summary="JSON Schema of one event type",
        responses={404: {"model": ErrorBody, "description": "unknown event type"}},
        response_model=None,
    )
