"""``GET /catalog``: the entity and workflow types this API serves, with what each takes.

The console builds its pickers from it (it cannot guess type names), and any client can
discover the domain without parsing the OpenAPI document. It is derived from the
registered definitions once, when the app is built.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.responses import Response

from actors import EntitySpec
from api.context import ApiContext
from api.errors import JSON
from sagas.definition import AnyWorkflow

__all__ = ["Catalog", "EntityType", "Handler", "WorkflowType", "catalog", "install"]


class Handler(BaseModel):
    """One command or query of an entity type."""

    name: str
    doc: str = Field(description="the first line of its docstring")


class EntityType(BaseModel):
    type: str = Field(description="the entity type, as in `/entities/{type}/{id}`")
    doc: str
    commands: list[Handler]
    queries: list[Handler]


class WorkflowType(BaseModel):
    type: str = Field(description="the workflow type, as in `/workflows/{type}/{id}`")
    description: str
    signals: list[str]
    queries: list[str]


class Catalog(BaseModel):
    """What this API serves."""

    entities: list[EntityType]
    workflows: list[WorkflowType]


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0].strip()


def _entity(spec: EntitySpec) -> EntityType:
    return EntityType(
        type=spec.type_name,
        doc=_first_line(spec.cls.__doc__),
        commands=[Handler(name=h.name, doc=_first_line(h.doc)) for h in spec.commands()],
        queries=[Handler(name=h.name, doc=_first_line(h.doc)) for h in spec.queries()],
    )


def _workflow(wf: AnyWorkflow) -> WorkflowType:
    return WorkflowType(
        type=wf.name,
        description=_first_line(wf.description),
        signals=sorted(wf.signals),
        queries=sorted(wf.queries),
    )


def catalog(ctx: ApiContext) -> Catalog:
    """The catalog of the app's domain, sorted by type name."""
    return Catalog(
        entities=sorted((_entity(s) for s in ctx.catalog), key=lambda e: e.type),
        workflows=sorted((_workflow(w) for w in ctx.domain.workflows), key=lambda w: w.type),
    )


def install(app: FastAPI, ctx: ApiContext) -> None:
    body = catalog(ctx).model_dump_json()

    async def get_catalog() -> Response:
        return Response(body, media_type=JSON)

    app.add_api_route(
        "/catalog",
        get_catalog,
        methods=["GET"],
        tags=["operations"],
        response_class=Response,
        summary="The entity and workflow types served, with their commands, queries, signals",
        operation_id="catalog",
        responses={200: {"model": Catalog, "description": "the catalog"}},
    )
