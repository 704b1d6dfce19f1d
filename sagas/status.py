"""The typed status of an execution: its steps, timers, children, approvals and
compensations, and the views readers get.

These models are the vocabulary the fold (:mod:`sagas.fold`) keeps its state in and
the one readers see (``GET /workflows/{type}/{id}``, queries, the timeline); kept apart
from the fold's rules so that a reader of the shapes never reads how they are folded.
There is one vocabulary for a step's status (:data:`StepStatus`) and one for a
compensation's (:data:`CompensationStatus`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from actors import RetryPolicy
from eventstore import JSONDict
from sagas.activities import ActivityOptions
from sagas.runs import RunInfo

CHILD_PREFIX = "workflow:"
ExecutionState = Literal[
    "pending", "running", "compensating", "completed", "compensated", "failed", "parked"
]
StepStatus = Literal["pending", "applied", "rejected", "invalid", "dead_lettered"]
"""``pending``: sent, or waiting to be tried again; the others are the call's verdict."""
CompensationStatus = Literal["registered", "moot", "running", "done", "skipped", "failed"]
FINAL_STATUSES: frozenset[str] = frozenset({"completed", "compensated", "failed"})
UNFINISHED_STATUSES: tuple[str, ...] = ("running", "compensating", "parked")


class StepInfo(BaseModel):
    """One call the execution made (a forward step or a compensation's call)."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    address: str
    command: str
    args: JSONDict
    compensation: int | None = None
    guards: list[int] = []
    status: StepStatus = "pending"
    attempts: int = 1
    command_id: str
    result: Any = None
    error: str | None = None
    retry: RetryPolicy | None = None
    not_before: datetime | None = None
    code: str | None = None
    """Why the last attempt failed, as a value (an activity's error type, ``timed_out``)."""
    activity: ActivityOptions | None = None
    """An activity's timeouts; None for an entity call."""
    scheduled_at: datetime | None = None
    """When the current attempt was scheduled (it is sent then, or at ``not_before``)."""
    first_scheduled_at: datetime | None = None
    heartbeat_details: Any = None
    heartbeat_at: datetime | None = None
    started_at: datetime | None = None
    """When a worker took the attempt (known only with a schedule-to-start timeout)."""


TimerStatus = Literal["pending", "fired", "cancelled"]


class TimerInfo(BaseModel):
    """One durable timer of the execution (a sleep, a timeout)."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    label: str
    due_at: datetime
    status: TimerStatus = "pending"
    fired_at: datetime | None = None


class ChildInfo(BaseModel):
    """A child workflow this execution started."""

    model_config = ConfigDict(extra="forbid")

    seq: int
    workflow_type: str
    workflow_id: str
    status: str = "starting"
    """``starting`` until the child took its start, ``running``, then its final status."""
    result: Any = None
    error: str | None = None


class ApprovalInfo(BaseModel):
    """One human approval of the execution: who is asked, since when, what happened."""

    model_config = ConfigDict(extra="forbid")

    name: str
    approvers: list[str]
    since: datetime
    open: bool = True
    next_at: datetime | None = None
    """When the next rung of the escalation ladder is due (None: no rung left)."""
    steps: list[str] = []
    decided_by: str | None = None
    comment: str = ""


class CompensationInfo(BaseModel):
    """One registered compensation: what it undoes, what guards it, how it went."""

    model_config = ConfigDict(extra="forbid")

    index: int
    name: str
    address: str
    command: str
    args: JSONDict
    guarded: bool
    status: CompensationStatus = "registered"
    attempts: int = 0
    error: str | None = None
    calls: list[int] = []
    """The forward steps made inside its ``with`` block (it undoes their effect)."""
    retry: RetryPolicy | None = None


class ParkInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    error: str
    step: str | None = None
    expected: str | None = None
    actual: str | None = None


class ExecutionStatus(BaseModel):
    """The status of one execution: ``GET /workflows/{type}/{id}``."""

    model_config = ConfigDict(frozen=True)

    workflow_type: str
    workflow_id: str
    status: ExecutionState
    input: Any = None
    result: Any = None
    error: str | None = None
    failed_compensation: str | None = None
    repairs: int = 0
    """How many times a person repaired a failed compensation (retried or skipped it)."""
    cancelled: bool = False
    parked: ParkInfo | None = None
    steps_done: int = 0
    steps: list[StepInfo] = []
    compensations: list[CompensationInfo] = []
    compensations_pending: list[str] = []
    timers: list[TimerInfo] = []
    approvals: list[ApprovalInfo] = []
    children: list[ChildInfo] = []
    parent: str | None = None
    signals_received: int = 0
    started_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0
    run: int = 1
    """Which run this is (``ctx.continue_as_new`` starts the next one)."""
    runs: list[RunInfo] = []
    """The runs before this one, oldest first (``GET .../history?run=N`` reads one)."""


@dataclass(frozen=True)
class WorkflowView:
    """What a workflow query sees: a read-only copy of the execution."""

    workflow_id: str
    status: str
    input: Any
    result: Any
    error: str | None
    memo: dict[str, Any]
    steps_done: int
    compensations_pending: list[str]
