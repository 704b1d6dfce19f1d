"""The one fold of an execution's history: its status, steps and compensations, typed.

:class:`ExecutionRecord` folds the history without running any workflow code, so the
status of an execution is readable even when its code no longer replays (parked). The
engine keeps one for the execution it drives and reads its steps and compensations from
it (their status, attempts, what they guard); the coordinator writes the visibility row
from it; readers and the API show it. Its typed parts and their one vocabulary of
statuses are in :mod:`sagas.status`; the guard rule (a guarded compensation none of
whose calls took effect has nothing to undo) is written once, in
:meth:`ExecutionRecord.moot`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eventstore import DomainEvent, ExecutionRow, JSONDict
from sagas.history import (
    ActivityHeartbeat,
    ApprovalStep,
    CallCompleted,
    CallScheduled,
    CancelRequested,
    ChildCompleted,
    Compensated,
    Compensating,
    CompensationRegistered,
    CompensationRepaired,
    CompensationSkipped,
    Completed,
    ContinuedAsNew,
    Failed,
    Parked,
    Resumed,
    SignalReceived,
    Started,
    TimerCancelled,
    TimerFired,
    TimerStarted,
)
from sagas.runs import RunInfo
from sagas.status import (
    CHILD_PREFIX,
    FINAL_STATUSES,
    ApprovalInfo,
    ChildInfo,
    CompensationInfo,
    CompensationStatus,
    ExecutionState,
    ExecutionStatus,
    ParkInfo,
    StepInfo,
    StepStatus,
    TimerInfo,
    WorkflowView,
)


class ExecutionRecord:
    """A fold of one execution's history into its status."""

    def __init__(self, address: str, workflow_type: str, workflow_id: str) -> None:
        self.address = address
        self.workflow_type = workflow_type
        self.workflow_id = workflow_id
        self.logical: ExecutionState = "pending"
        self.parked: ParkInfo | None = None
        self.input: Any = None
        self.result: Any = None
        self.error: str | None = None
        self.failed_compensation: str | None = None
        self.cause: str | None = None
        """Why the saga compensates (a failed compensation's error does not replace it)."""
        self.repairs = 0
        self.cancelled = False
        self.steps: dict[int, StepInfo] = {}
        self.compensations: dict[int, CompensationInfo] = {}
        self.timers: dict[int, TimerInfo] = {}
        self.approvals: dict[str, ApprovalInfo] = {}
        self.children: dict[int, ChildInfo] = {}
        self.parent: str | None = None
        self.parent_seq: int | None = None
        self.signals = 0
        self.started_at: datetime | None = None
        self.updated_at: datetime | None = None
        self.version = 0
        self.run = 1
        self.run_first_version = 1
        self.runs: list[RunInfo] = []

    @property
    def started(self) -> bool:
        return self.logical != "pending"

    @property
    def status(self) -> ExecutionState:
        return "parked" if self.parked is not None else self.logical

    @property
    def final(self) -> bool:
        return self.logical in FINAL_STATUSES

    def apply(self, event: DomainEvent, at: datetime) -> None:
        self.version += 1
        self.updated_at = at
        fold = _FOLDS.get(type(event))
        if fold is not None:
            fold(self, event)

    # -- the rules, once ----------------------------------------------------------------

    def moot(self, comp: CompensationInfo) -> bool:
        """A guarded compensation none of whose calls can have taken effect has nothing
        to undo: each was refused, invalid or crashed."""
        return comp.guarded and all(
            self.steps[s].status not in ("applied", "pending") for s in comp.calls
        )

    def in_flight(self) -> list[StepInfo]:
        """Calls without a final answer yet (sent, or waiting to be tried again)."""
        return [s for s in self.steps.values() if s.status == "pending"]

    def forward_in_flight(self) -> bool:
        return any(s.compensation is None for s in self.in_flight())

    # -- folds ----------------------------------------------------------------------------

    def _started(self, event: Started) -> None:
        if event.run > 1 and self.started:  # a new run: only the chain of runs carries over
            version, updated_at, runs = self.version, self.updated_at, self.runs
            self.__init__(self.address, self.workflow_type, self.workflow_id)  # type: ignore[misc]
            self.version, self.updated_at, self.runs = version, updated_at, runs
        self.run, self.run_first_version = event.run, self.version
        self.logical, self.input, self.started_at = "running", event.input, event.at
        self.parent, self.parent_seq = event.parent, event.parent_seq

    def _scheduled(self, event: CallScheduled) -> None:
        step = self.steps.get(event.seq)
        if step is None:
            self.steps[event.seq] = StepInfo(
                seq=event.seq,
                address=event.address,
                command=event.command,
                args=event.args,
                compensation=event.compensation,
                guards=list(event.guards),
                attempts=event.attempt,
                command_id=event.command_id,
                retry=event.retry,
                not_before=event.not_before,
                activity=event.activity,
                scheduled_at=self.updated_at,
                first_scheduled_at=self.updated_at,
            )
            for g in event.guards:
                self.compensations[g].calls.append(event.seq)
        else:
            step.status, step.attempts = "pending", event.attempt
            step.command_id, step.not_before = event.command_id, event.not_before
            step.retry, step.scheduled_at = event.retry, self.updated_at
        comp = self.compensations.get(event.compensation or 0)
        if comp is not None:
            comp.status, comp.attempts = "running", event.attempt
        if event.address.startswith(CHILD_PREFIX) and event.command == "start":
            child_type, _, child_id = event.address.removeprefix(CHILD_PREFIX).partition("/")
            self.children.setdefault(
                event.seq, ChildInfo(seq=event.seq, workflow_type=child_type, workflow_id=child_id)
            )

    def _child_completed(self, event: ChildCompleted) -> None:
        child = self.children.get(event.seq)
        if child is not None:
            child.status, child.result, child.error = event.status, event.result, event.error

    def running_children(self) -> list[ChildInfo]:
        return [c for c in self.children.values() if c.status in ("starting", "running")]

    def _completed_call(self, event: CallCompleted) -> None:
        step = self.steps[event.seq]
        step.status = _step_status(event.status)
        step.result, step.error, step.code = event.result, event.error, event.code
        child = self.children.get(event.seq)
        if child is not None and child.status == "starting":
            child.status = "running" if event.status == "applied" else "failed"
            child.error = event.error
        comp = self.compensations.get(step.compensation or 0)
        if comp is not None:
            if event.status == "applied":
                comp.status = "done"
            comp.error = event.error

    def _signal(self, event: SignalReceived) -> None:
        self.signals += 1

    def _cancel(self, event: CancelRequested) -> None:
        self.cancelled = True

    def _registered(self, event: CompensationRegistered) -> None:
        self.compensations[event.index] = CompensationInfo(
            index=event.index,
            name=f"{event.address}.{event.command}",
            address=event.address,
            command=event.command,
            args=event.args,
            guarded=event.guarded,
            retry=event.retry,
        )

    def _skipped(self, event: CompensationSkipped) -> None:
        self.compensations[event.index].status = "skipped"

    def _compensating(self, event: Compensating) -> None:
        self.logical, self.error = "compensating", event.error
        self.cause = event.error

    def _repaired(self, event: CompensationRepaired) -> None:
        """Back to compensating, the saga's own error restored; the repaired compensation
        runs again from a fresh budget, or counts as skipped."""
        comp = self.compensations[event.index]
        if event.action == "retry":
            comp.status, comp.attempts, comp.error = "registered", 0, None
        else:
            comp.status, comp.error = "skipped", f"skipped by an operator: {event.reason}"
        self.logical, self.error = "compensating", self.cause
        self.failed_compensation = None
        self.repairs += 1

    def _continued(self, event: ContinuedAsNew) -> None:
        self.runs.append(
            RunInfo(
                run=self.run,
                first_version=self.run_first_version,
                last_version=self.version,
                started_at=self.started_at,
                ended_at=self.updated_at,
                input=self.input,
                next_input=event.input,
                signals_carried=len(event.carried),
            )
        )

    def _completed(self, event: Completed) -> None:
        self.logical, self.result = "completed", event.result

    def _compensated(self, event: Compensated) -> None:
        self.logical, self.error = "compensated", event.error

    def _failed(self, event: Failed) -> None:
        self.logical, self.error = "failed", event.error
        self.failed_compensation = event.compensation
        for comp in self.compensations.values():
            if comp.status == "running":
                comp.status = "failed"

    def _parked(self, event: Parked) -> None:
        self.parked = ParkInfo(
            error=event.error, step=event.step, expected=event.expected, actual=event.actual
        )

    def _resumed(self, event: Resumed) -> None:
        self.parked = None

    def _timer_started(self, event: TimerStarted) -> None:
        self.timers[event.seq] = TimerInfo(seq=event.seq, label=event.label, due_at=event.due_at)

    def _timer_fired(self, event: TimerFired) -> None:
        timer = self.timers.get(event.seq)
        if timer is not None and timer.status == "pending":
            timer.status, timer.fired_at = "fired", event.at

    def _timer_cancelled(self, event: TimerCancelled) -> None:
        timer = self.timers.get(event.seq)
        if timer is not None and timer.status == "pending":
            timer.status = "cancelled"

    def _approval(self, event: ApprovalStep) -> None:
        at = self.updated_at or _epoch()
        info = self.approvals.get(event.name)
        if event.kind == "requested" or info is None:
            info = self.approvals[event.name] = ApprovalInfo(
                name=event.name, approvers=list(event.approvers), since=at
            )
        info.approvers, info.next_at = list(event.approvers), event.next_at
        info.steps.append(f"{event.kind} at {at.isoformat()}")
        if event.kind in ("approved", "rejected", "gave_up"):
            info.open, info.next_at = False, None
            info.decided_by, info.comment = event.by, event.comment

    def pending_timers(self) -> list[TimerInfo]:
        return [t for t in self.timers.values() if t.status == "pending"]

    def _heartbeat(self, event: ActivityHeartbeat) -> None:
        step = self.steps.get(event.seq)
        if step is not None and event.started:
            step.started_at = self.updated_at
        elif step is not None:
            step.heartbeat_details, step.heartbeat_at = event.details, self.updated_at

    # -- views ---------------------------------------------------------------------------

    def _comp_status(self, comp: CompensationInfo) -> CompensationStatus:
        if comp.status == "registered" and self.moot(comp):
            return "moot"
        return comp.status

    def pending_compensations(self) -> list[str]:
        if self.logical in ("completed", "compensated"):
            return []
        return [
            f"#{c.index} {c.name}"
            for c in reversed(self.compensations.values())
            if self._comp_status(c) in ("registered", "running", "failed")
        ]

    @property
    def steps_done(self) -> int:
        return sum(
            1 for s in self.steps.values() if s.compensation is None and s.status == "applied"
        )

    def view(self) -> ExecutionStatus:
        return ExecutionStatus(
            workflow_type=self.workflow_type,
            workflow_id=self.workflow_id,
            status=self.status,
            input=self.input,
            result=self.result,
            error=self.error,
            failed_compensation=self.failed_compensation,
            repairs=self.repairs,
            cancelled=self.cancelled,
            parked=self.parked,
            steps_done=self.steps_done,
            steps=[s.model_copy() for s in self.steps.values()],
            compensations=[
                c.model_copy(update={"status": self._comp_status(c)})
                for c in self.compensations.values()
            ],
            compensations_pending=self.pending_compensations(),
            timers=[t.model_copy() for t in self.timers.values()],
            approvals=[a.model_copy(deep=True) for a in self.approvals.values()],
            children=[c.model_copy() for c in self.children.values()],
            parent=self.parent,
            signals_received=self.signals,
            started_at=self.started_at,
            updated_at=self.updated_at,
            version=self.version,
            run=self.run,
            runs=list(self.runs),
        )

    def query_view(self, memo: dict[str, Any]) -> WorkflowView:
        return WorkflowView(
            workflow_id=self.workflow_id,
            status=self.status,
            input=self.input,
            result=self.result,
            error=self.error,
            memo=memo,
            steps_done=self.steps_done,
            compensations_pending=self.pending_compensations(),
        )

    def row(self) -> ExecutionRow:
        summary: JSONDict = {
            "steps_done": self.steps_done,
            "compensations_pending": len(self.pending_compensations()),
            "in_flight": len(self.in_flight()),
        }
        if self.error is not None:
            summary["error"] = self.error[:500]
        if self.failed_compensation is not None:
            summary["failed_compensation"] = self.failed_compensation
        if self.repairs:
            summary["repairs"] = self.repairs
        if self.parked is not None:
            summary["parked"] = self.parked.error[:500]
        asked = [a for a in self.approvals.values() if a.open]
        if asked and self.logical == "running":
            summary["approvals"] = [
                {
                    "name": a.name,
                    "approvers": a.approvers,
                    "since": a.since.isoformat(),
                    "next_at": a.next_at.isoformat() if a.next_at else None,
                }
                for a in asked
            ]
        waiting = self.pending_timers()
        if waiting:
            summary["next_timer"] = min(t.due_at for t in waiting).isoformat()
        if self.run > 1:
            summary["run"] = self.run
        if self.cancelled:
            summary["cancelled"] = True  # running activities see it at their next heartbeat
        return ExecutionRow(
            address=self.address,
            workflow_type=self.workflow_type,
            workflow_id=self.workflow_id,
            status=self.status,
            updated_at=self.updated_at or self.started_at or _epoch(),
            started_at=self.started_at,
            summary=summary,
        )


def _step_status(status: str) -> StepStatus:
    if status in ("applied", "rejected", "invalid", "dead_lettered"):
        return status  # type: ignore[return-value]
    return "dead_lettered"


_FOLDS: dict[type[DomainEvent], Callable[[ExecutionRecord, Any], None]] = {
    Started: ExecutionRecord._started,
    CallScheduled: ExecutionRecord._scheduled,
    CallCompleted: ExecutionRecord._completed_call,
    SignalReceived: ExecutionRecord._signal,
    CancelRequested: ExecutionRecord._cancel,
    CompensationRepaired: ExecutionRecord._repaired,
    CompensationRegistered: ExecutionRecord._registered,
    CompensationSkipped: ExecutionRecord._skipped,
    Compensating: ExecutionRecord._compensating,
    Completed: ExecutionRecord._completed,
    ContinuedAsNew: ExecutionRecord._continued,
    Compensated: ExecutionRecord._compensated,
    Failed: ExecutionRecord._failed,
    Parked: ExecutionRecord._parked,
    Resumed: ExecutionRecord._resumed,
    ActivityHeartbeat: ExecutionRecord._heartbeat,
    TimerStarted: ExecutionRecord._timer_started,
    TimerFired: ExecutionRecord._timer_fired,
    TimerCancelled: ExecutionRecord._timer_cancelled,
    ApprovalStep: ExecutionRecord._approval,
    ChildCompleted: ExecutionRecord._child_completed,
}


def _epoch() -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC)
