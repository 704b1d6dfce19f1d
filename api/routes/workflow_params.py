"""What every workflow route shares: its path and query parameters, its documented errors.

The routes of each workflow are generated at run time (``workflows.py``), so their
bodies get their types at run time too (:func:`with_body`); the parameters and error
tables are declared once here, and the timeline routes use the same execution id.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Path, Query

from api.errors import ErrorBody
from api.openapi.schemas import Responses
from api.openapi.workflows import WORKFLOW_ID_PATTERN, WORKFLOW_ID_RULE
from sagas import FINAL_STATUSES, Workflow

AnyWorkflow = Workflow[Any, Any]
F = TypeVar("F", bound=Callable[..., Any])
WAIT_UNTIL = frozenset({*FINAL_STATUSES, "parked"})
MAX_WAIT = 30.0

WorkflowId = Annotated[
    str,
    Path(
        description=f"the execution's id: {WORKFLOW_ID_RULE}",
        min_length=1,
        max_length=100,
        pattern=WORKFLOW_ID_PATTERN,
        examples=["order-17"],
    ),
]
Run = Annotated[
    int | None,
    Query(ge=1, le=2**31, description="only this run of an execution that continued as new"),
]
Wait = Annotated[
    float | None,
    Query(
        gt=0,
        le=MAX_WAIT,
        description="long poll: answer once the execution is completed, compensated, failed "
        "or parked, or after this many seconds with its status then",
    ),
]


def error_responses(**descriptions: str) -> Responses:
    return {
        int(code[1:]): {"model": ErrorBody, "description": d} for code, d in descriptions.items()
    }


START_ERRORS = error_responses(
    _404="unknown workflow type",
    _409="a request with the same Idempotency-Key is in flight",
    _422="invalid input or workflow id, or a reused Idempotency-Key",
    _503="the broker or the event store is unavailable",
)
READ_ERRORS = error_responses(
    _404="unknown workflow type, or no such execution",
    _422="invalid id or parameters",
    _503="the event store is unavailable",
)
MESSAGE_ERRORS = error_responses(
    _404="unknown workflow type or signal, or the execution has not started",
    _409="the execution has finished or is parked, or the Idempotency-Key is in flight",
    _422="invalid payload or id, or a reused Idempotency-Key",
    _503="the broker or the event store is unavailable",
    _504="no verdict in time: the command_id stays valid",
)


def with_body(fn: F, annotation: Any | None, *, optional: bool = False) -> F:
    """Give ``fn``'s ``body`` parameter a type built at run time (or drop it: None)."""
    sig = inspect.signature(fn)
    default = None if optional else inspect.Parameter.empty
    params = [
        p.replace(annotation=annotation, default=default) if p.name == "body" else p
        for p in sig.parameters.values()
        if p.name != "body" or annotation is not None
    ]
    fn.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return fn
