"""The typed HTTP client for other services: the same calls as the in-process client.

::

    with EntityflowClient("http://localhost:8000") as ef:
        ef.update(Account.open, "acct-7", owner="Ada")
        balance = ef.update(Account.deposit, "acct-7", amount=Decimal("25")).result
        ef.signal(Account.withdraw, "acct-7", amount=Decimal("5"), idempotency_key="pay-81")
        ef.query(Account.balance, "acct-7").result  # Decimal('20.00')

Handlers are named by reference, so mypy checks each call's arguments, arguments are
validated before anything is sent, results come back as the handler's declared type
(``Decimal`` above) in the same :class:`~eventstore.Outcome` the in-process client
returns, and states as the entity's state model. Errors are raised as :class:`ApiError`
subclasses carrying the server's error body (``error``, ``message``, ``hint``,
``command_id``). This module needs only httpx, not FastAPI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from actors import Command, Entity, EntitySpec, Query, QueryResult, StateView
from eventstore import EventRecord, Outcome
from sagas import ExecutionStatus, Signal, Workflow

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=BaseModel)
WorkflowRef = Workflow[Any, Any] | str
_OUTCOME: TypeAdapter[Outcome[Any]] = TypeAdapter(Outcome[Any])
_EVENTS: TypeAdapter[list[EventRecord]] = TypeAdapter(list[EventRecord])


class ApiError(Exception):
    """The server answered with an error; ``body`` is its JSON error body."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        self.status = status
        self.body = dict(body)
        self.error: str = str(body.get("error", "http_error"))
        self.message: str = str(body.get("message", ""))
        self.hint: str = str(body.get("hint", ""))
        self.command_id: str | None = body.get("command_id")
        super().__init__(f"{status} {self.error}: {self.message}")


class NotFoundError(ApiError, LookupError):
    """404: unknown entity type, command, entity, version or command id."""


class RejectedError(ApiError):
    """409: a domain rule refused the command (or an Idempotency-Key is in flight)."""


class InvalidError(ApiError, ValueError):
    """422: invalid arguments, or an Idempotency-Key reused for another request."""


class UnavailableError(ApiError, ConnectionError):
    """503: the event store or the broker is unreachable; retry later."""


class TimedOutError(ApiError, TimeoutError):
    """504: no result in time; ``command_id`` stays valid (see :meth:`command`)."""


_ERRORS: dict[int, type[ApiError]] = {
    404: NotFoundError,
    409: RejectedError,
    422: InvalidError,
    503: UnavailableError,
    504: TimedOutError,
}


class EntityflowClient:
    """Talks to one entityflow API over HTTP (thread-safe like ``httpx.Client``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

    # -- commands ------------------------------------------------------------------------

    def signal(
        self,
        handler: Command[P, R],
        entity_id: str,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> str:
        """Send a command fire-and-forget; its command id once the broker holds it.

        ``idempotency_key`` is read from ``handler.options(command_id=...)``: the key names
        the command, so a retry with it is the same command.
        """
        spec, command, body = _arguments(handler, args, kwargs)
        r = self._post(spec, entity_id, "signals", command.name, body, handler, None)
        return str(r["command_id"])

    def update(
        self,
        handler: Command[P, R],
        entity_id: str,
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Outcome[R]:
        """Send a command and wait for its result (its declared type) and the new version."""
        spec, command, body = _arguments(handler, args, kwargs)
        timeout = handler.call_options.timeout
        r = self._post(spec, entity_id, "updates", command.name, body, handler, timeout)
        return Outcome(
            command_id=r["command_id"],
            address=spec.address(entity_id),
            command=command.name,
            status="applied",
            result=command.decode_result(r["result"]),
            version=r["version"],
        )

    def command(self, command_id: str) -> Outcome[Any]:
        """What became of a command (pending, applied, rejected, invalid, dead_lettered)."""
        return _OUTCOME.validate_python(self._get(f"/commands/{command_id}"))

    # -- reads ---------------------------------------------------------------------------

    def query(
        self, handler: Query[P, R], entity_id: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> QueryResult[R]:
        """A query's result (its declared type), at ``handler.at(version)`` if given."""
        spec = EntitySpec.of(handler.entity)
        query = spec.compiled(handler)
        parsed = query.parse(handler.arguments(args, kwargs))
        params = {k: _param(v) for k, v in parsed.model_dump(mode="json").items()}
        if handler.call_options.version is not None:
            params["version"] = str(handler.call_options.version)
        r = self._get(f"{_base(spec, entity_id)}/queries/{query.name}", params)
        return QueryResult(query.decode_result(r["result"]), r["version"])

    def state(
        self, entity: type[Entity[S]], entity_id: str, *, version: int | None = None
    ) -> StateView[S]:
        spec = EntitySpec.of(entity)
        params = {"version": str(version)} if version is not None else {}
        r = self._get(_base(spec, entity_id), params)
        state: Any = spec.state_type.model_validate(r["state"])
        return StateView(state, r["version"])

    def events(
        self, entity: type[Entity[Any]], entity_id: str, *, after: int = 0, limit: int = 100
    ) -> tuple[list[EventRecord], int | None]:
        """One page of history: the events and the ``after`` of the next page (or None)."""
        spec = EntitySpec.of(entity)
        r = self._get(f"{_base(spec, entity_id)}/events", {"after": after, "limit": limit})
        return _EVENTS.validate_python(r["events"]), r["next_after"]

    # -- plumbing ------------------------------------------------------------------------

    def _post(
        self,
        spec: EntitySpec,
        entity_id: str,
        mode: str,
        command: str,
        body: bytes,
        handler: Command[Any, Any],
        timeout: float | None,
    ) -> dict[str, Any]:
        headers = {"content-type": "application/json"}
        key = handler.call_options.command_id
        if key is not None:
            headers["Idempotency-Key"] = key
        params = {"timeout": str(timeout)} if timeout is not None else None
        wait = None if timeout is None else timeout + 10
        response = self._http.post(
            f"{_base(spec, entity_id)}/{mode}/{command}",
            content=body,
            headers=headers,
            params=params,
            timeout=wait if wait is not None else httpx.USE_CLIENT_DEFAULT,
        )
        return _json(response)

    def _get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return _json(self._http.get(path, params=params))

    # -- workflows -----------------------------------------------------------------------

    def start_workflow(
        self,
        workflow: WorkflowRef,
        input: Any,
        /,
        *,
        workflow_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """Start an execution (the same id again is the same execution); its workflow id."""
        if not isinstance(workflow, str):
            input = workflow.encode_input(input)  # checked before anything is sent
        body: dict[str, Any] = {"input": input}
        if workflow_id is not None:
            body["workflow_id"] = workflow_id
        r = self._send(f"/workflows/{_workflow(workflow)}", body, idempotency_key, None)
        return str(r["workflow_id"])

    def workflow_status(
        self, workflow: WorkflowRef, workflow_id: str, /, *, wait: float | None = None
    ) -> ExecutionStatus:
        """Status, result (typed when the definition is given), steps, compensations.

        ``wait`` long-polls: the answer comes once the execution is finished or parked,
        or after ``wait`` seconds.
        """
        params = {"wait": str(wait)} if wait is not None else None
        timeout = httpx.USE_CLIENT_DEFAULT if wait is None else wait + 10
        r = self._http.get(
            f"/workflows/{_workflow(workflow)}/{workflow_id}", params=params, timeout=timeout
        )
        status = ExecutionStatus.model_validate(_json(r))
        if isinstance(workflow, str) or status.result is None:
            return status
        return status.model_copy(update={"result": workflow.decode_output(status.result)})

    def signal_workflow(
        self,
        signal: Signal[R],
        workflow_id: str,
        payload: R,
        /,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Deliver a signal; its command id once the execution recorded it."""
        path = f"/workflows/{signal.workflow_name}/{workflow_id}/signals/{signal.name}"
        body = signal.encode(payload)
        return str(self._send(path, body, idempotency_key, timeout)["command_id"])

    def cancel_workflow(
        self,
        workflow: WorkflowRef,
        workflow_id: str,
        /,
        reason: str = "",
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Cancel an execution (it runs its compensations); its command id once recorded."""
        path = f"/workflows/{_workflow(workflow)}/{workflow_id}/cancel"
        return str(self._send(path, {"reason": reason}, idempotency_key, timeout)["command_id"])

    def update_workflow(
        self,
        workflow: WorkflowRef,
        workflow_id: str,
        update: str,
        /,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        **args: Any,
    ) -> Any:
        """Run a workflow update; its result (typed when the definition is given)."""
        path = f"/workflows/{_workflow(workflow)}/{workflow_id}/updates/{update}"
        result = self._send(path, args, idempotency_key, timeout)["result"]
        if isinstance(workflow, str):
            return result
        return workflow.update_spec(update).result_adapter.validate_python(result)

    def repair_workflow(
        self,
        workflow: WorkflowRef,
        workflow_id: str,
        index: int,
        action: str,
        /,
        reason: str = "",
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Retry or skip a failed execution's compensation; its command id once recorded."""
        path = f"/workflows/{_workflow(workflow)}/{workflow_id}/compensations/{index}/{action}"
        return str(self._send(path, {"reason": reason}, idempotency_key, timeout)["command_id"])

    def query_workflow(
        self, workflow: WorkflowRef, workflow_id: str, query: str, /, **args: Any
    ) -> Any:
        """A workflow query's result (typed when the definition is given)."""
        params = {k: _param(v) for k, v in args.items()}
        r = self._get(f"/workflows/{_workflow(workflow)}/{workflow_id}/queries/{query}", params)
        if isinstance(workflow, str):
            return r["result"]
        return workflow.query_spec(query).result_adapter.validate_python(r["result"])

    def workflow_history(
        self, workflow: WorkflowRef, workflow_id: str, /, *, after: int = 0, limit: int = 100
    ) -> tuple[list[EventRecord], int | None]:
        """One page of an execution's history and the ``after`` of the next page (or None)."""
        path = f"/workflows/{_workflow(workflow)}/{workflow_id}/history"
        r = self._get(path, {"after": after, "limit": limit})
        return _EVENTS.validate_python(r["events"]), r["next_after"]

    def workflows(
        self,
        workflow: WorkflowRef | None = None,
        /,
        *,
        status: str | None = None,
        after: str | None = None,
        limit: int = 100,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of executions (by type and status) and the ``after`` of the next page."""
        params: dict[str, Any] = {"limit": limit}
        if workflow is not None:
            params["type"] = _workflow(workflow)
        if status is not None:
            params["status"] = status
        if after is not None:
            params["after"] = after
        r = self._get("/workflows", params)
        return list(r["executions"]), r["next_after"]

    def workflow_timeline(self, workflow: WorkflowRef, workflow_id: str, /) -> dict[str, Any]:
        """The execution's saga timeline: entries on a time axis, pending compensations,
        what it waits on, and its memo (rebuilt by a replay)."""
        return self._get(f"/workflows/{_workflow(workflow)}/{workflow_id}/timeline")

    # -- dead letters ---------------------------------------------------------------------

    def dead_letters(
        self, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of dead letters (oldest first) and the ``after`` of the next page."""
        params: dict[str, Any] = {"limit": limit}
        if after is not None:
            params["after"] = after
        r = self._get("/deadletters", params)
        return list(r["dead_letters"]), r["next_after"]

    def dead_letter(self, dead_letter_id: str) -> dict[str, Any]:
        """One dead letter, with its command id and arguments."""
        return self._get(f"/deadletters/{_segment(dead_letter_id)}")

    def redrive(self, dead_letter_id: str) -> dict[str, Any]:
        """Send a dead letter back to its actor (409 if it was re-driven before)."""
        return self._send(f"/deadletters/{_segment(dead_letter_id)}/redrive", None, None, None)

    def _send(
        self, path: str, body: Any, idempotency_key: str | None, timeout: float | None
    ) -> dict[str, Any]:
        headers = {"content-type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        params = {"timeout": str(timeout)} if timeout is not None else None
        wait = httpx.USE_CLIENT_DEFAULT if timeout is None else timeout + 10
        content = httpx.Request("POST", "/", json=body).content
        response = self._http.post(
            path, content=content, headers=headers, params=params, timeout=wait
        )
        return _json(response)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EntityflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _segment(value: str) -> str:
    """A path segment as typed by a person: quoted, so a slash cannot change the route."""
    return quote(value, safe="")


def _workflow(workflow: WorkflowRef) -> str:
    return workflow if isinstance(workflow, str) else workflow.name


def _base(spec: EntitySpec, entity_id: str) -> str:
    return f"/entities/{spec.type_name}/{entity_id}"


def _arguments(
    handler: Command[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[EntitySpec, Any, bytes]:
    """The handler's entity and compiled form, and its arguments checked and encoded."""
    spec = EntitySpec.of(handler.entity)
    command = spec.compiled(handler)
    parsed = command.parse(handler.arguments(args, kwargs))
    return spec, command, parsed.model_dump_json().encode()


def _param(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = {"error": "http_error", "message": response.text[:500]}
    if response.status_code >= 400:
        raise _ERRORS.get(response.status_code, ApiError)(response.status_code, body)
    if not isinstance(body, dict):
        raise ApiError(response.status_code, {"message": f"unexpected body {body!r}"})
    return body
