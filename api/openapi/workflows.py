"""Request and response models of the workflow routes, generated per workflow definition.

Each workflow gets its own start body (``{workflow_id?, input}`` with its input model),
its own status model (input and result typed by the definition), one body schema per
signal and one response model per query, so the OpenAPI document shows the real types.
"""

from __future__ import annotations

import typing
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from api.openapi.schemas import example_value
from sagas import ExecutionStatus, QuerySpec, Workflow
from sagas.updates import UpdateSpec

WORKFLOW_ID_PATTERN = r"^[^\s/\x00-\x1f\x7f]{1,100}$"
WORKFLOW_ID_RULE = "1 to 100 characters, no '/', spaces or control characters"
StatusName = Literal[
    "pending", "running", "compensating", "completed", "compensated", "failed", "parked"
]
AnyWorkflow = Workflow[Any, Any]


class WorkflowStarted(BaseModel):
    """The start is durably queued; the same workflow id again is the same execution."""

    workflow_id: str = Field(description="read the execution at GET /workflows/{type}/{id}")


class WorkflowCommandAccepted(BaseModel):
    """The execution recorded the signal or the cancellation."""

    workflow_id: str
    command_id: str = Field(description="its outcome stays at GET /commands/{command_id}")


class CancelRequest(BaseModel):
    """Why the execution is cancelled (kept in its history and its error)."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=500, examples=["the customer changed their mind"])] = ""


class RepairRequest(BaseModel):
    """Why the compensation is retried or skipped (kept in the history); a skip needs one."""

    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=500, examples=["refunded by hand, ticket 4711"])] = ""


class ExecutionSummary(BaseModel):
    """What the visibility row says about an execution without reading its history."""

    model_config = ConfigDict(extra="allow")

    steps_done: int = 0
    compensations_pending: int = 0
    in_flight: int = Field(0, description="calls sent and not answered yet")
    error: str | None = None
    failed_compensation: str | None = None
    parked: str | None = None


class WorkflowExecution(BaseModel):
    """One execution as ``GET /workflows`` lists it."""

    workflow_type: str
    workflow_id: str
    status: StatusName
    started_at: datetime | None
    updated_at: datetime
    summary: ExecutionSummary


class ExecutionPage(BaseModel):
    """A page of executions, ordered by type and id."""

    executions: list[WorkflowExecution]
    next_after: str | None = Field(
        description="pass as ?after= for the next page; null when this page is the last"
    )


def model_name(wf: AnyWorkflow, *parts: str) -> str:
    return "_".join([wf.name.replace(".", "_"), *parts])


def _example(schema: dict[str, Any]) -> Any:
    return example_value(schema, schema.get("$defs", {}))


def input_example(wf: AnyWorkflow) -> Any:
    return _example(wf.input_type.model_json_schema())


def start_model(wf: AnyWorkflow) -> type[BaseModel]:
    """``{workflow_id?, input}`` for one workflow type."""
    model: type[BaseModel] = create_model(
        model_name(wf, "start"),
        __config__=ConfigDict(extra="forbid", title=f"start {wf.name}"),
        workflow_id=(
            str | None,
            Field(
                default=None,
                min_length=1,
                max_length=100,
                pattern=WORKFLOW_ID_PATTERN,
                description="the execution's id (default: a new one); "
                f"{WORKFLOW_ID_RULE}; the same id again is the same execution",
            ),
        ),
        input=(wf.input_type, Field(description=f"the input of {wf.name}")),
    )
    return model


def start_example(wf: AnyWorkflow) -> dict[str, Any]:
    return {"workflow_id": f"{wf.name.lower()}-17", "input": input_example(wf)}


def status_model(wf: AnyWorkflow) -> type[BaseModel]:
    """The status of one execution, with the workflow's input and output types."""
    output: Any = wf.output_type if wf.output_type is not None else type(None)
    input_type: Any = wf.input_type | None
    model: type[BaseModel] = create_model(
        model_name(wf, "status"),
        __base__=ExecutionStatus,
        input=(input_type, Field(default=None, description="the start's input")),
        result=(output | None, Field(default=None, description="the output, once completed")),
    )
    return model


def accepts_none(wf: AnyWorkflow, name: str) -> bool:
    """Whether a signal's payload may be left out (its type accepts null)."""
    try:
        wf.signal_adapter(name).validate_python(None)
    except ValidationError:
        return False
    return True


def signal_example(wf: AnyWorkflow, name: str) -> Any:
    return _example(wf.signal_adapter(name).json_schema())


def query_model(wf: AnyWorkflow, spec: QuerySpec) -> type[BaseModel]:
    result_type: Any = typing.get_type_hints(spec.fn)["return"]
    model: type[BaseModel] = create_model(
        model_name(wf, spec.name, "query"),
        result=(result_type, Field(description="what the query returned")),
    )
    return model


def update_model(wf: AnyWorkflow, spec: UpdateSpec) -> type[BaseModel]:
    result_type: Any = typing.get_type_hints(spec.fn)["return"]
    model: type[BaseModel] = create_model(
        model_name(wf, spec.name, "update"),
        workflow_id=(str, Field(description="the execution updated")),
        command_id=(str, Field(description="the update's command id (GET /commands/{id})")),
        result=(result_type, Field(description="what the update's handler returned")),
    )
    return model


def query_parameters(spec: QuerySpec) -> list[dict[str, Any]]:
    """The query's arguments as OpenAPI query parameters (scalars and lists of scalars)."""
    schema = spec.args_model.model_json_schema()
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def list_fields(spec: QuerySpec) -> set[str]:
    props = spec.args_model.model_json_schema().get("properties", {})
    return {name for name, prop in props.items() if prop.get("type") == "array"}
