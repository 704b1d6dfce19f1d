"""A small typed HTTP client for other services: signal, update, query, state, history,
and workflows (start, status with a long poll, signal, query, cancel, history, list).

::

    with EntityflowClient("http://localhost:8000") as ef:
        ef.update(Account, "acct-7", "open", owner="Ada")
        balance = ef.update(Account, "acct-7", "deposit", amount=Decimal("25")).result
        ef.signal(Account, "acct-7", "withdraw", amount="5", idempotency_key="pay-81")
        ef.query(Account, "acct-7", "balance").result  # Decimal('20.00')

Pass the entity class (not just its name) and results come back as the handler's declared
type (``Decimal`` above), arguments are checked before anything is sent, and states are
the entity's state model. Errors are raised as :class:`ApiError` subclasses carrying the
server's error body (``error``, ``message``, ``hint``, ``command_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from actors import Entity, EntitySpec, InvalidArgumentsError
from sagas import ExecutionStatus, Workflow

EntityRef = type[Entity[Any]] | str
WorkflowRef = Workflow[Any, Any] | str


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


@dataclass(frozen=True)
class Accepted:
    command_id: str


@dataclass(frozen=True)
class Applied:
    command_id: str
    result: Any
    version: int


@dataclass(frozen=True)
class QueryAnswer:
    result: Any
    version: int


@dataclass(frozen=True)
class EntityState:
    state: Any
    version: int


@dataclass(frozen=True)
class CommandOutcome:
    command_id: str
    status: str
    result: Any = None
    version: int | None = None
    error: str | None = None


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
        entity: EntityRef,
        entity_id: str,
        command: str,
        /,
        *,
        idempotency_key: str | None = None,
        **args: Any,
    ) -> Accepted:
        """Send a command fire-and-forget; returns once the broker holds it."""
        body = self._arguments(entity, command, args)
        r = self._post(entity, entity_id, "signals", command, body, idempotency_key, None)
        return Accepted(r["command_id"])

    def update(
        self,
        entity: EntityRef,
        entity_id: str,
        command: str,
        /,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
        **args: Any,
    ) -> Applied:
        """Send a command and wait for its result and the entity's new version."""
        body = self._arguments(entity, command, args)
        r = self._post(entity, entity_id, "updates", command, body, idempotency_key, timeout)
        return Applied(r["command_id"], self._result(entity, command, r["result"]), r["version"])

    def command(self, command_id: str) -> CommandOutcome:
        """What became of a command (pending, applied, rejected, invalid, dead_lettered)."""
        r = self._get(f"/commands/{command_id}")
        return CommandOutcome(
            command_id=r["command_id"],
            status=r["status"],
            result=r.get("result"),
            version=r.get("version"),
            error=r.get("error"),
        )

    # -- reads ---------------------------------------------------------------------------

    def query(
        self,
        entity: EntityRef,
        entity_id: str,
        query: str,
        /,
        *,
        version: int | None = None,
        **args: Any,
    ) -> QueryAnswer:
        params = {k: _param(v) for k, v in args.items()}
        if version is not None:
            params["version"] = str(version)
        r = self._get(f"{_base(entity, entity_id)}/queries/{query}", params)
        return QueryAnswer(self._result(entity, query, r["result"]), r["version"])

    def state(
        self, entity: EntityRef, entity_id: str, *, version: int | None = None
    ) -> EntityState:
        params = {"version": str(version)} if version is not None else {}
        r = self._get(_base(entity, entity_id), params)
        state: Any = r["state"]
        if not isinstance(entity, str):
            state = EntitySpec.of(entity).state_type.model_validate(state)
        return EntityState(state, r["version"])

    def events(
        self, entity: EntityRef, entity_id: str, *, after: int = 0, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of history: the events and the ``after`` of the next page (or None)."""
        r = self._get(f"{_base(entity, entity_id)}/events", {"after": after, "limit": limit})
        return list(r["events"]), r["next_after"]

    # -- plumbing ------------------------------------------------------------------------

    def _arguments(self, entity: EntityRef, command: str, args: dict[str, Any]) -> bytes:
        """Check arguments locally when the class is known, and encode them as JSON."""
        if isinstance(entity, str):
            model: type[BaseModel] | None = None
        else:
            model = EntitySpec.of(entity).command(command).args_model
        if model is None:
            return httpx.Request("POST", "/", json=args).content
        try:
            parsed = model.model_validate(args)
        except ValidationError as exc:
            raise InvalidArgumentsError(str(exc)) from None
        return parsed.model_dump_json().encode()

    def _result(self, entity: EntityRef, handler: str, value: Any) -> Any:
        if isinstance(entity, str):
            return value
        adapter = EntitySpec.of(entity).handlers[handler].result_adapter
        return adapter.validate_python(value) if adapter is not None else value

    def _post(
        self,
        entity: EntityRef,
        entity_id: str,
        mode: str,
        command: str,
        body: bytes,
        idempotency_key: str | None,
        timeout: float | None,
    ) -> dict[str, Any]:
        headers = {"content-type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        params = {"timeout": str(timeout)} if timeout is not None else None
        wait = None if timeout is None else timeout + 10
        response = self._http.post(
            f"{_base(entity, entity_id)}/{mode}/{command}",
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
        workflow: WorkflowRef,
        workflow_id: str,
        signal: str,
        payload: Any = None,
        /,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Accepted:
        """Deliver a signal; returns once the execution recorded it."""
        if not isinstance(workflow, str):
            payload = workflow.encode_signal(signal, payload)
        path = f"/workflows/{_workflow(workflow)}/{workflow_id}/signals/{signal}"
        return Accepted(self._send(path, payload, idempotency_key, timeout)["command_id"])

    def cancel_workflow(
        self,
        workflow: WorkflowRef,
        workflow_id: str,
        /,
        reason: str = "",
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Accepted:
        """Cancel an execution (it runs its compensations); returns once it recorded that."""
        path = f"/workflows/{_workflow(workflow)}/{workflow_id}/cancel"
        r = self._send(path, {"reason": reason}, idempotency_key, timeout)
        return Accepted(r["command_id"])

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
    ) -> tuple[list[dict[str, Any]], int | None]:
        """One page of an execution's history and the ``after`` of the next page (or None)."""
        path = f"/workflows/{_workflow(workflow)}/{workflow_id}/history"
        r = self._get(path, {"after": after, "limit": limit})
        return list(r["events"]), r["next_after"]

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


def _workflow(workflow: WorkflowRef) -> str:
    return workflow if isinstance(workflow, str) else workflow.name


def _base(entity: EntityRef, entity_id: str) -> str:
    name = entity if isinstance(entity, str) else EntitySpec.of(entity).type_name
    return f"/entities/{name}/{entity_id}"


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
