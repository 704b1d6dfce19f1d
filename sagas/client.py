"""Start, signal, cancel, query and inspect workflow executions over any Mailbox and Store.

Starting, signalling and cancelling send a message to the execution's address and return
once the mailbox durably holds it (the HTTP 202 of the contract); the coordinator does
the rest. Status, history, queries and listings read the store and never go through the
mailbox. This is the object the HTTP layer wraps.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from actors import Entity, EntitySpec, Envelope, Mailbox
from eventstore import ExecutionRow, RecordedEvent, Store
from sagas.coordinator import cancel_command_id, start_command_id
from sagas.definition import AnyWorkflow, split_address
from sagas.engine import replay
from sagas.errors import (
    ReplayError,
    UnknownWorkflowError,
    WorkflowNotFoundError,
    WorkflowParkedError,
)
from sagas.record import FINAL_STATUSES, ExecutionRecord, ExecutionStatus

WorkflowRef = AnyWorkflow | str


class WorkflowClient:
    """The workflows registered with it, reachable through ``mailbox`` and ``store``."""

    def __init__(
        self,
        mailbox: Mailbox,
        store: Store,
        workflows: Sequence[AnyWorkflow],
        *,
        entities: Sequence[type[Entity[Any]]] = (),
        send_timeout: float = 10.0,
    ) -> None:
        self.mailbox = mailbox
        self.store = store
        self.send_timeout = send_timeout
        self.workflows: dict[str, AnyWorkflow] = {}
        for wf in workflows:
            wf.check()
            if self.workflows.get(wf.name, wf) is not wf:
                raise ValueError(f"two workflows are registered as {wf.name!r}")
            self.workflows[wf.name] = wf
        self._entities = {s.type_name: s for s in (EntitySpec.of(e) for e in entities)}

    def definition(self, workflow: WorkflowRef) -> AnyWorkflow:
        name = workflow if isinstance(workflow, str) else workflow.name
        found = self.workflows.get(name)
        if found is None:
            raise UnknownWorkflowError(
                f"no workflow type {name!r} is registered; registered: "
                + (", ".join(sorted(self.workflows)) or "(none)")
            )
        return found

    # -- messages ----------------------------------------------------------------------

    def start(self, workflow: WorkflowRef, input: Any, *, workflow_id: str | None = None) -> str:
        """Start an execution (or find the one already started with this id); its id."""
        wf = self.definition(workflow)
        body = wf.encode_input(input)
        wid = workflow_id if workflow_id is not None else uuid.uuid4().hex
        address = wf.address(wid)
        self._send(
            Envelope(
                command_id=start_command_id(address),
                address=address,
                kind="control",
                name="start",
                args={"input": body},
            )
        )
        return wid

    def signal(
        self,
        workflow: WorkflowRef,
        workflow_id: str,
        name: str,
        payload: Any = None,
        *,
        command_id: str | None = None,
    ) -> str:
        """Deliver a signal (buffered until the code waits for it); its command id."""
        wf = self.definition(workflow)
        body = wf.encode_signal(name, payload)
        fields: dict[str, Any] = {
            "address": wf.address(workflow_id),
            "kind": "signal",
            "name": name,
            "args": {"payload": body},
        }
        if command_id is not None:
            fields["command_id"] = command_id
        env = Envelope(**fields)
        self._send(env)
        return env.command_id

    def cancel(self, workflow: WorkflowRef, workflow_id: str, reason: str = "") -> str:
        """Ask the execution to stop and compensate; cancelling twice is cancelling once."""
        wf = self.definition(workflow)
        address = wf.address(workflow_id)
        env = Envelope(
            command_id=cancel_command_id(address),
            address=address,
            kind="control",
            name="cancel",
            args={"reason": reason[:500]},
        )
        self._send(env)
        return env.command_id

    def _send(self, env: Envelope) -> None:
        self.mailbox.send(env).result(timeout=self.send_timeout)

    # -- reading -------------------------------------------------------------------------

    def status(self, workflow: WorkflowRef, workflow_id: str) -> ExecutionStatus:
        """Status, result or error, steps and pending compensations (from the history)."""
        return self._record(workflow, workflow_id)[0].view()

    def history(
        self, workflow: WorkflowRef, workflow_id: str, *, after: int = 0, limit: int = 100
    ) -> list[RecordedEvent]:
        address = self.definition(workflow).address(workflow_id)
        events = self.store.read(address, after=after, limit=limit)
        if not events and after == 0:
            raise WorkflowNotFoundError(f"{address} has not started")
        return events

    def query(
        self,
        workflow: WorkflowRef,
        workflow_id: str,
        name: str,
        args: Mapping[str, Any] | None = None,
        /,
        **kwargs: Any,
    ) -> Any:
        """Evaluate a workflow query on the execution as its history rebuilds it."""
        wf = self.definition(workflow)
        spec = wf.query_spec(name)
        record, events = self._record(wf, workflow_id)
        memo: dict[str, Any] = {}
        if record.started:
            try:
                engine = replay(wf, record.address, events, self._entities)
            except ReplayError as exc:
                raise WorkflowParkedError(str(exc)) from exc
            memo = engine.memo
        return spec.evaluate(record.query_view(_copy(memo)), {**(args or {}), **kwargs})

    def execution(self, workflow: WorkflowRef, workflow_id: str) -> ExecutionRow | None:
        """The visibility row (status and summary), cheap to poll."""
        return self.store.execution(self.definition(workflow).address(workflow_id))

    def executions(
        self,
        workflow: WorkflowRef | None = None,
        *,
        status: str | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[ExecutionRow]:
        """List executions by type and status (``GET /workflows?type=&status=``)."""
        name = self.definition(workflow).name if workflow is not None else None
        return self.store.executions(workflow_type=name, status=status, limit=limit, after=after)

    async def wait(
        self,
        workflow: WorkflowRef,
        workflow_id: str,
        *,
        timeout: float = 30.0,
        until: Collection[str] = FINAL_STATUSES,
        poll: float = 0.02,
    ) -> ExecutionStatus:
        """Wait until the execution's status is one of ``until`` (default: a final one)."""
        address = self.definition(workflow).address(workflow_id)
        deadline = time.monotonic() + timeout
        while True:
            row = self.store.execution(address)
            if row is not None and row.status in until:
                return self.status(workflow, workflow_id)
            if time.monotonic() >= deadline:
                seen = row.status if row is not None else "not started"
                raise TimeoutError(
                    f"{address} did not reach {sorted(until)} within {timeout:g}s (it is {seen})"
                )
            await asyncio.sleep(poll)

    def _record(
        self, workflow: WorkflowRef, workflow_id: str
    ) -> tuple[ExecutionRecord, list[RecordedEvent]]:
        address = self.definition(workflow).address(workflow_id)
        events = self.store.load(address).events
        if not events:
            raise WorkflowNotFoundError(
                f"{address} has not started (or its start message is not processed yet)"
            )
        workflow_type, wid = split_address(address)
        record = ExecutionRecord(address, workflow_type, wid)
        for rec in events:
            record.apply(rec.event, rec.timestamp)
        return record, events


def _copy(memo: dict[str, Any]) -> dict[str, Any]:
    """Queries get a deep copy, so they cannot change the execution they look at."""
    return copy.deepcopy(memo)
