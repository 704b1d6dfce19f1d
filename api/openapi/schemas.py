"""Response models of the entity routes and the OpenAPI pieces generated per entity.

The request body of each command and the parameters of each query come from the
handler's argument model (built by ``actors`` from its signature). Bodies are parsed by
the routes themselves with ``model_validate_json`` (one pass from bytes to a model), so
their schemas are added to the OpenAPI document here rather than through FastAPI's body
parameters. Response models are built once per command, query and entity type, so the
documentation shows the real result types.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.json_schema import models_json_schema

from actors import CommandSpec, EntitySpec
from eventstore import EventRecord

REF = "#/components/schemas/{model}"
Responses = dict[int | str, dict[str, Any]]


def responses(*parts: Mapping[int | str, dict[str, Any]]) -> Responses:
    """The OpenAPI responses of a route, merged from parts (later parts win)."""
    merged: Responses = {}
    for part in parts:
        merged.update(part)
    return merged


def tags(spec: EntitySpec) -> list[str | Enum]:
    return [spec.type_name]


class CommandAccepted(BaseModel):
    """A signal is durably in the mailbox; its outcome comes later."""

    command_id: str = Field(description="look up the outcome at GET /commands/{command_id}")


class EventPage(BaseModel):
    """A page of an entity's or an execution's history, oldest first."""

    events: list[EventRecord]
    next_after: int | None = Field(
        description="pass as ?after= for the next page; null when this page is the last"
    )


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


def _model_name(*parts: str) -> str:
    return "_".join(p.replace(".", "_") for p in parts)


def update_response_model(handler: CommandSpec) -> type[BaseModel]:
    result_type: Any = handler.result_type if handler.result_type is not None else None
    model: type[BaseModel] = create_model(
        _model_name(handler.entity_type, handler.name, "result"),
        __config__=ConfigDict(title=f"{handler.entity_type}.{handler.name} result"),
        result=(result_type, Field(description="what the handler returned")),
        version=(int, Field(description="the entity's version after the command")),
        command_id=(str, Field(description="the command's id")),
    )
    return model


def query_response_model(handler: CommandSpec) -> type[BaseModel]:
    model: type[BaseModel] = create_model(
        _model_name(handler.entity_type, handler.name, "query"),
        result=(handler.result_type, Field(description="what the query returned")),
        version=(int, Field(description="the version the query was evaluated at")),
    )
    return model


def state_response_model(spec: EntitySpec) -> type[BaseModel]:
    model: type[BaseModel] = create_model(
        _model_name(spec.type_name, "state"),
        state=(spec.state_type, ...),
        version=(int, Field(description="the version this state is at")),
    )
    return model


def argument_schemas(specs: list[EntitySpec]) -> dict[str, Any]:
    """JSON schemas of every handler's argument model, with shared definitions hoisted."""
    models = [(h.args_model, "validation") for spec in specs for h in spec.handlers.values()]
    if not models:
        return {}
    _, top = models_json_schema(models, ref_template=REF)  # type: ignore[arg-type]
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


def example_value(schema: dict[str, Any], components: dict[str, Any], depth: int = 0) -> Any:
    """A plausible value for a JSON schema, for the examples shown in /docs."""
    if depth > 6:
        return None
    if schema.get("examples"):
        return schema["examples"][0]
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    if "enum" in schema:
        return schema["enum"][0]
    if "$ref" in schema:
        target = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
        return example_value(target, components, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_value(options[0], components, depth + 1)
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: example_value(v, components, depth + 1) for k, v in props.items()}
    if kind == "array":
        return [example_value(schema.get("items", {}), components, depth + 1)]
    return _scalar_example(kind, schema)


def _scalar_example(kind: Any, schema: dict[str, Any]) -> Any:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
    if kind == "integer":
        return max(1, int(low) + 1)
    if kind == "number":
        return float(max(10, low + 1))
    if kind == "boolean":
        return True
    if kind == "string":
        if schema.get("format") == "date-time":
            return "2024-01-01T00:00:00Z"
        return "example"[: max(1, schema.get("maxLength", 7))]
    return None
