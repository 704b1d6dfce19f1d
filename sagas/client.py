"""Start, signal, cancel, query and inspect workflow executions: the one path for each.

Starting returns once the mailbox durably holds the start (the HTTP 202 of the
contract); the coordinator does the rest. Signalling and cancelling wait for the
execution's verdict (it recorded the message, or refused it and why, see
:mod:`sagas.protocol`). Status, history, queries and listings read the store and never
go through the mailbox. The HTTP gateway wraps this client with HTTP concerns only.
"""

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel

from actors import CommandSender, Mailbox, ReplyOverdueError, UpdateTimeoutError
from eventstore import ExecutionRow, Outcome, RecordedEvent, Store
from sagas.definition import AnyWorkflow, Workflow, split_address
from sagas.errors import (
    ReplayError,
    UnknownWorkflowError,
    WorkflowNotFoundError,
    WorkflowParkedError,
)
from sagas.fold import ExecutionRecord
from sagas.protocol import (
    cancel_envelope,
    repair_envelope,
    signal_envelope,
    start_envelope,
    update_envelope,
    verdict,
)
from sagas.repairs import RepairAction
from sagas.replayer import replay
from sagas.runs import run_range
from sagas.signals import Signal
from sagas.status import FINAL_STATUSES, ExecutionStatus

WorkflowRef = AnyWorkflow | str
I = TypeVar("I", bound=BaseModel)  # noqa: E741 - the conventional name of an input type
O = TypeVar("O")  # noqa: E741 - the conventional name of an output type
T = TypeVar("T")


class WorkflowClient:
    """The workflows registered with it, reachable through ``mailbox`` and ``store``."""

    def __init__(
        self,
        mailbox: Mailbox,
        store: Store,
        workflows: Sequence[AnyWorkflow],
        *,
        timeout: float = 10.0,
        sender: CommandSender | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.store = store
        self.timeout = timeout
        self.sender = sender or CommandSender(mailbox, ack_timeout=timeout)
        self.workflows: dict[str, AnyWorkflow] = {}
        for wf in workflows:
            wf.check()
            if self.workflows.get(wf.name, wf) is not wf:
                raise ValueError(f"two workflows are registered as {wf.name!r}")
            self.workflows[wf.name] = wf

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

    def start(
        self, workflow: Workflow[Any, Any], input: Any, *, workflow_id: str | None = None
    ) -> str:
        """Start an execution (or find the one already started with this id); its id.

        Returns once the mailbox durably holds the start; the same id again is the same
        execution, so a caller whose start was not confirmed simply sends it again.
        """
        wf = self.definition(workflow)
        wid = workflow_id if workflow_id is not None else uuid.uuid4().hex
        self.sender.send(start_envelope(wf, wid, wf.encode_input(input)))
        return wid

    async def signal(
        self,
        signal: Signal[T],
        workflow_id: str,
        payload: T,
        *,
        command_id: str | None = None,
        timeout: float | None = None,
    ) -> Outcome[Any]:
        """Deliver a signal and wait until the execution recorded it (or says why not)."""
        wf = self.definition(signal.workflow_name)
        env = signal_envelope(
            wf,
            workflow_id,
            signal.name,
            signal.encode(payload),
            reply_to=self.sender.route,
            command_id=command_id,
        )
        return await self._ask(env, timeout)

    async def cancel(
        self,
        workflow: Workflow[Any, Any],
        workflow_id: str,
        reason: str = "",
        *,
        command_id: str | None = None,
        timeout: float | None = None,
    ) -> Outcome[Any]:
        """Ask the execution to stop and compensate; cancelling twice is cancelling once."""
        wf = self.definition(workflow)
        env = cancel_envelope(
            wf, workflow_id, reason, reply_to=self.sender.route, command_id=command_id
        )
        return await self._ask(env, timeout)

    async def update(
        self,
        workflow: Workflow[Any, Any],
        workflow_id: str,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        command_id: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Run the update ``name`` on a running execution and return its result.

        Raises :class:`~sagas.WorkflowRefusedError` when its validator or handler refused
        it, :class:`~sagas.InvalidWorkflowInputError` for arguments that do not fit; in
        both cases nothing was recorded.
        """
        wf = self.definition(workflow)
        outcome = await self.update_outcome(
            wf, workflow_id, name, args, command_id=command_id, timeout=timeout
        )
        return wf.update_spec(name).result_adapter.validate_python(outcome.result)

    async def update_outcome(
        self,
        workflow: Workflow[Any, Any],
        workflow_id: str,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        command_id: str | None = None,
        timeout: float | None = None,
    ) -> Outcome[Any]:
        """:meth:`update`, its result left in JSON form in the outcome (for the HTTP edge)."""
        wf = self.definition(workflow)
        spec = wf.update_spec(name)
        body = spec.parse(args).model_dump(mode="json")
        env = update_envelope(
            wf, workflow_id, spec.name, body, reply_to=self.sender.route, command_id=command_id
        )
        return await self._ask(env, timeout)

    async def repair(
        self,
        workflow: Workflow[Any, Any],
        workflow_id: str,
        index: int,
        action: RepairAction,
        reason: str = "",
        *,
        command_id: str | None = None,
        timeout: float | None = None,
    ) -> Outcome[Any]:
        """Retry or skip the compensation a failed execution could not finish; the saga
        then goes on compensating. Refused (nothing recorded) when it does not fit."""
        wf = self.definition(workflow)
        env = repair_envelope(
            wf,
            workflow_id,
            index,
            action,
            reason,
            reply_to=self.sender.route,
            command_id=command_id,
        )
        return await self._ask(env, timeout)

    async def _ask(self, env: Any, timeout: float | None) -> Outcome[Any]:
        wait = timeout if timeout is not None else self.timeout
        deadline = asyncio.get_running_loop().time() + wait
        try:
            outcome = await self.sender.ask(env, deadline=deadline)
        except ReplyOverdueError:
            raise UpdateTimeoutError(env.command_id, wait) from None
        return verdict(outcome)

    # -- reading -------------------------------------------------------------------------

    def status(self, workflow: WorkflowRef, workflow_id: str) -> ExecutionStatus:
        """Status, result or error, steps and pending compensations (from the history)."""
        return self.record(workflow, workflow_id)[0].view()

    def result(self, workflow: Workflow[I, O], workflow_id: str) -> O:
        """The result of a completed execution, as its output type."""
        status = self.status(workflow, workflow_id)
        if status.status != "completed":
            raise WorkflowNotFoundError(
                f"{workflow.address(workflow_id)} has no result: it is {status.status}"
                + (f" ({status.error})" if status.error else "")
            )
        decoded: O = workflow.decode_output(status.result)
        return decoded

    def history(
        self,
        workflow: WorkflowRef,
        workflow_id: str,
        *,
        after: int = 0,
        limit: int = 100,
        run: int | None = None,
    ) -> list[RecordedEvent]:
        """A page of the history (every run, oldest first; ``run``: that run's only);
        :class:`WorkflowNotFoundError` if it has not started or has no such run."""
        address = self.definition(workflow).address(workflow_id)
        if run is None:
            events = self.store.page(address, after=after, limit=limit)
            if events is None:
                raise WorkflowNotFoundError(f"{address} has not started")
            return events
        record, _ = self.record(workflow, workflow_id)
        first, last = run_range(address, record.runs, (record.run, record.run_first_version), run)
        return self.store.read(address, after=max(after, first - 1), upto=last, limit=limit)

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
        record, events = self.record(wf, workflow_id)
        memo: dict[str, Any] = {}
        if record.started:
            try:
                engine = replay(wf, record.address, events)
            except ReplayError as exc:
                raise WorkflowParkedError(str(exc)) from exc
            memo = engine.memo
        return spec.evaluate(record.query_view(copy.deepcopy(memo)), {**(args or {}), **kwargs})

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

    def record(
        self, workflow: WorkflowRef, workflow_id: str
    ) -> tuple[ExecutionRecord, list[RecordedEvent]]:
        """The execution's fold and its history; :class:`WorkflowNotFoundError` if none."""
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

    def close(self) -> None:
        self.sender.close()
