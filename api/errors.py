"""Every error the API can answer, mapped to its HTTP status in this one module.

Routes raise the errors of the layers below (``actors``, ``eventstore``) or the few of
their own defined here; :func:`error_response` turns any of them into a JSON body that
says what was wrong and what to do about it. Nothing else in the API picks status codes
for errors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from actors import (
    AlreadyRedrivenError,
    CommandFailedError,
    CommandRejectedError,
    EntityNotFoundError,
    HandlerCrashedError,
    InvalidArgumentsError,
    MailboxUnavailableError,
    NotRedrivableError,
    PayloadTooLargeError,
    UnknownCommandError,
    UnknownDeadLetterError,
    UnknownEntityTypeError,
    UpdateTimeoutError,
)
from eventstore import (
    ConcurrencyConflictError,
    StoreUnavailableError,
    StreamNotFoundError,
    details,
    explain,
)
from sagas import (
    InvalidWorkflowInputError,
    SagasError,
    UnknownWorkflowError,
    WorkflowClosedError,
    WorkflowNotFoundError,
    WorkflowParkedError,
    WorkflowRefusedError,
)

log = logging.getLogger("entityflow.api")
JSON = "application/json"


class FieldError(BaseModel):
    """One problem with one input field."""

    loc: list[str | int] = Field(description="where: body/query/path/header, then the field")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str = Field(description="a stable, machine-readable code, e.g. `rejected`")
    message: str = Field(description="what was wrong")
    hint: str = Field(description="what to do about it")
    command_id: str | None = Field(
        default=None, description="the command concerned; ask GET /commands/{command_id}"
    )
    details: list[FieldError] | None = Field(default=None, description="per-field problems")


class ApiError(Exception):
    """Root of the errors the API layer itself raises."""


class UnknownCommandIdError(ApiError, LookupError):
    """No command with this id was ever accepted (or it is older than the retention)."""

    def __init__(self, command_id: str) -> None:
        super().__init__(f"no command {command_id!r} was accepted by this service")
        self.command_id = command_id


class IdempotencyKeyInFlightError(ApiError):
    """A request with the same Idempotency-Key is still being processed."""

    def __init__(self, key: str, command_id: str) -> None:
        super().__init__(f"a request with Idempotency-Key {key!r} is still in flight")
        self.command_id = command_id


class IdempotencyKeyReusedError(ApiError, ValueError):
    """The Idempotency-Key was first used with a different request."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was already used with a different request "
            "(another path or another body)"
        )


def _details(errors: Sequence[Any]) -> list[FieldError]:
    out = []
    for e in errors:
        loc = [p if isinstance(p, int) else str(p) for p in e.get("loc", ())]
        out.append(FieldError(loc=loc, msg=str(e.get("msg", "")), type=str(e.get("type", ""))))
    return out


def invalid_body(exc: ValidationError, what: str, where: str = "body") -> InvalidArgumentsError:
    """A pydantic error on a request body or query, as the actors' InvalidArgumentsError."""
    return InvalidArgumentsError(
        f"invalid arguments for {what}: {explain(exc)}",
        [{**d, "loc": [where, *d["loc"]]} for d in details(exc)],
    )


# (error types, status, code, hint): the whole mapping, first match wins.
_MAPPING: list[tuple[tuple[type[BaseException], ...], int, str, str]] = [
    (
        (UnknownEntityTypeError, UnknownCommandError),
        404,
        "unknown_type_or_command",
        "check the path against GET /openapi.json (or /docs)",
    ),
    (
        (UnknownWorkflowError,),
        404,
        "unknown_workflow",
        "check the workflow type, signal or query against GET /openapi.json (or /docs)",
    ),
    (
        (WorkflowNotFoundError,),
        404,
        "workflow_not_found",
        "start it with POST /workflows/{type}; a start is visible once a worker processed it",
    ),
    (
        (WorkflowParkedError,),
        409,
        "workflow_parked",
        "its history does not replay with the deployed code; deploy code that does (see "
        "`parked` in GET /workflows/{type}/{id}) and it resumes",
    ),
    (
        (WorkflowClosedError,),
        409,
        "workflow_closed",
        "the execution has finished or is compensating and takes no more signals or "
        "cancellation; read its status at GET /workflows/{type}/{id}",
    ),
    (
        (WorkflowRefusedError,),
        409,
        "workflow_refused",
        "the execution refused it and recorded nothing; the message says why (an update's "
        "validator, or a repair that does not fit its status at GET /workflows/{type}/{id})",
    ),
    (
        (InvalidWorkflowInputError,),
        422,
        "invalid_arguments",
        "fix the input, payload or arguments; the schema is in /openapi.json",
    ),
    (
        (EntityNotFoundError, StreamNotFoundError),
        404,
        "entity_not_found",
        "an entity exists once a command recorded its first event; check the id and version",
    ),
    (
        (UnknownCommandIdError,),
        404,
        "unknown_command",
        "use the command_id a 202/200/504 response returned; outcomes are kept for the "
        "configured retention",
    ),
    (
        (UnknownDeadLetterError,),
        404,
        "unknown_dead_letter",
        "list them with GET /deadletters; ids look like 0-17 and age out with the "
        "dead-letter topic's retention",
    ),
    (
        (AlreadyRedrivenError,),
        409,
        "already_redriven",
        "it was sent again already and is not sent twice; read its outcome at "
        "GET /commands/{command_id} (a new failure is a new dead letter)",
    ),
    (
        (NotRedrivableError,),
        409,
        "not_redrivable",
        "this dead letter cannot be sent again as it is; the message says why",
    ),
    (
        (CommandRejectedError,),
        409,
        "rejected",
        "a domain rule refused the command and nothing changed; fix the cause (read the "
        "entity's state) before trying again",
    ),
    ((ConcurrencyConflictError,), 409, "conflict", "another writer moved on; read and retry"),
    (
        (IdempotencyKeyInFlightError,),
        409,
        "idempotency_key_in_flight",
        "wait for the first request to finish, then retry with the same key to get its response",
    ),
    (
        (IdempotencyKeyReusedError,),
        422,
        "idempotency_key_reused",
        "use a new Idempotency-Key for a different request",
    ),
    (
        (PayloadTooLargeError,),
        413,
        "payload_too_large",
        "store large data elsewhere and send a reference",
    ),
    (
        (InvalidArgumentsError,),
        422,
        "invalid_arguments",
        "fix the fields listed in details; the schema is in /openapi.json",
    ),
    (
        (HandlerCrashedError,),
        500,
        "handler_crashed",
        "the command's handler raised an unexpected exception; the message was "
        "dead-lettered and nothing changed; this is a bug in the entity",
    ),
    (
        (CommandFailedError,),
        422,
        "invalid_command",
        "the worker could not run this command with these arguments; fix them",
    ),
    (
        (UpdateTimeoutError,),
        504,
        "update_timeout",
        "the command id stays valid: poll GET /commands/{command_id}, or retry with the same "
        "Idempotency-Key; do not resend without one",
    ),
    (
        (StoreUnavailableError, MailboxUnavailableError, ConnectionError),
        503,
        "unavailable",
        "the event store or the broker is unreachable; retry with backoff (with an "
        "Idempotency-Key, a retry cannot apply a command twice)",
    ),
]


def classify(exc: BaseException) -> tuple[int, ErrorBody]:
    """The HTTP status and body for an error."""
    for types, status, code, hint in _MAPPING:
        if isinstance(exc, types):
            errors = getattr(exc, "errors", None)
            return status, ErrorBody(
                error=code,
                message=str(getattr(exc, "reason", None) or exc),
                hint=hint,
                command_id=getattr(exc, "command_id", None),
                details=_details(errors) if isinstance(errors, list) and errors else None,
            )
    log.error("unexpected error", exc_info=exc)
    return 500, ErrorBody(
        error="internal_error",
        message=f"{type(exc).__name__}: {exc}",
        hint="this is a bug in entityflow or in the entity code; the server log has details",
    )


def render(status: int, body: ErrorBody) -> Response:
    return Response(
        body.__pydantic_serializer__.to_json(body, exclude_none=True),
        status_code=status,
        media_type=JSON,
    )


def error_response(exc: BaseException) -> Response:
    return render(*classify(exc))


async def _on_error(request: Request, exc: Exception) -> Response:
    return error_response(exc)


async def _on_request_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = _details(exc.errors())
    summary = "; ".join(f"{'.'.join(map(str, d.loc))}: {d.msg}" for d in details[:5])
    return render(
        422,
        ErrorBody(
            error="invalid_request",
            message=f"invalid request: {summary}",
            hint="fix the fields listed in details; the schema is in /openapi.json",
            details=details,
        ),
    )


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        body = ErrorBody(
            error="not_found",
            message=f"no route {request.method} {request.url.path}",
            hint="see GET /docs for the routes of the registered entities",
        )
    elif exc.status_code == 405:
        body = ErrorBody(
            error="method_not_allowed",
            message=f"{request.method} is not allowed on {request.url.path}",
            hint="see GET /docs for the methods of each route",
        )
    else:
        body = ErrorBody(error="http_error", message=str(exc.detail), hint="see GET /docs")
    response = render(exc.status_code, body)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def install(app: FastAPI) -> None:
    """Register the handlers that render every error through :func:`classify`."""
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
    for exc_type in (
        ApiError,
        UnknownEntityTypeError,
        UnknownCommandError,
        EntityNotFoundError,
        StreamNotFoundError,
        InvalidArgumentsError,
        CommandRejectedError,
        CommandFailedError,
        UpdateTimeoutError,
        ConcurrencyConflictError,
        StoreUnavailableError,
        MailboxUnavailableError,
        ConnectionError,
        SagasError,
        Exception,
    ):
        app.add_exception_handler(exc_type, _on_error)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "unknown entity type, command, entity or version"},
    409: {"model": ErrorBody, "description": "rejected by a domain rule, or a key in flight"},
    422: {"model": ErrorBody, "description": "invalid arguments or a reused Idempotency-Key"},
    503: {"model": ErrorBody, "description": "the event store or the broker is unavailable"},
}
