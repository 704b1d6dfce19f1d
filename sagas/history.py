"""The events of a workflow execution's history, with stable ``wf.*`` type names.

A history has three sorts of events:

- **inputs** come from outside the code and are fed to it on replay: the start, a
  call's reply, a signal, a cancellation request;
- **decisions** are what the code (and the saga machinery) did in answer: calls
  scheduled, compensations registered or skipped, the switch to compensating, the end;
- **annotations** say something about the execution without being part of its logic
  (parked after a failed replay, resumed); replay passes over them.

Every input carries ``at``, the time it was handled: ``ctx.now()`` is the ``at`` of the
input being processed, so replay sees the same clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from actors import RetryPolicy
from eventstore import DomainEvent, JSONDict
from sagas.activities import ActivityOptions


class WorkflowEvent(DomainEvent):
    """Base class of workflow history events (never stored itself)."""


class InputEvent(WorkflowEvent):
    at: datetime


class Decision(WorkflowEvent):
    """Something the code decided; replay compares these with what the code does now."""

    def signature(self) -> tuple[Any, ...]:
        """What must be equal between the history and a replay (no free text, no times)."""
        return (self.event_type,)

    def describe(self) -> str:
        return self.event_type.removeprefix("wf.")


class Annotation(WorkflowEvent):
    """Not part of the execution's logic; replay skips it."""


# -- inputs ------------------------------------------------------------------------------


class Started(InputEvent):
    event_type = "wf.Started"
    input: Any
    seed: int
    parent: str | None = None
    """The address of the workflow that started this one as its child (None: a root)."""
    parent_seq: int | None = None
    run: int = 1
    """The run of the execution this event starts (above 1: it continued as new)."""


class ChildCompleted(InputEvent):
    """A child workflow ended (``completed``, ``compensated`` or ``failed``)."""

    event_type = "wf.ChildCompleted"
    seq: int
    status: str
    result: Any = None
    error: str | None = None


class CallCompleted(InputEvent):
    event_type = "wf.CallCompleted"
    seq: int
    attempt: int
    status: str
    result: Any = None
    error: str | None = None
    version: int | None = None
    code: str | None = None
    """Why it failed, as a value (an activity's error type, ``timed_out``, ...)."""


class SignalReceived(InputEvent):
    event_type = "wf.SignalReceived"
    name: str
    payload: Any = None
    carried: bool = False
    """Received by the previous run, which ended without reading it: delivered again."""


class CancelRequested(InputEvent):
    event_type = "wf.CancelRequested"
    reason: str = ""


class UpdateAccepted(InputEvent):
    """A caller's update passed its checks: the handler changes the memo (again on replay)."""

    event_type = "wf.UpdateAccepted"
    name: str
    args: JSONDict


class CompensationRepaired(InputEvent):
    """A person repaired the compensation that ran out of attempts: it is tried again
    (with a fresh retry budget) or skipped, and the saga goes on undoing the rest."""

    event_type = "wf.CompensationRepaired"
    index: int
    action: Literal["retry", "skip"]
    reason: str = ""


class TimerFired(InputEvent):
    """A durable timer came due (``ctx.sleep``, a timeout): the order of this input among
    the others (a signal, a reply) is what decides a race, on replay too."""

    event_type = "wf.TimerFired"
    seq: int


# -- decisions ---------------------------------------------------------------------------


class CallScheduled(Decision):
    """A command to an entity or an activity's attempt, recorded before it is sent (the
    outbox). ``activity`` holds an activity's timeouts (None for an entity call).

    ``compensation`` is the index of the compensation this call runs (None for a forward
    step); ``guards`` the compensations whose ``with`` blocks were open when it was made.
    """

    event_type = "wf.CallScheduled"
    seq: int
    attempt: int = 1
    address: str
    command: str
    args: JSONDict
    command_id: str
    compensation: int | None = None
    guards: list[int] = []
    retry: RetryPolicy | None = None
    not_before: datetime | None = None
    activity: ActivityOptions | None = None

    def signature(self) -> tuple[Any, ...]:
        return (
            self.event_type,
            self.seq,
            self.attempt,
            self.address,
            self.command,
            self.args,
            self.compensation,
            tuple(self.guards),
        )

    def describe(self) -> str:
        what = "compensation call" if self.compensation is not None else "call"
        if self.activity is not None:
            what = "activity"
        retry = f" (attempt {self.attempt})" if self.attempt > 1 else ""
        return f"{what} #{self.seq} {self.address}.{self.command}({_args(self.args)}){retry}"


class CompensationRegistered(Decision):
    event_type = "wf.CompensationRegistered"
    index: int
    address: str
    command: str
    args: JSONDict
    retry: RetryPolicy
    guarded: bool = False

    def signature(self) -> tuple[Any, ...]:
        return (self.event_type, self.index, self.address, self.command, self.args, self.guarded)

    def describe(self) -> str:
        return f"compensation #{self.index} {self.address}.{self.command}({_args(self.args)})"


class CompensationSkipped(Decision):
    event_type = "wf.CompensationSkipped"
    index: int
    reason: str

    def signature(self) -> tuple[Any, ...]:
        return (self.event_type, self.index)

    def describe(self) -> str:
        return f"skipping compensation #{self.index}"


class Compensating(Decision):
    """The code failed or was cancelled: compensations run from here, newest first."""

    event_type = "wf.Compensating"
    error: str
    cancelled: bool = False

    def signature(self) -> tuple[Any, ...]:
        return (self.event_type, self.cancelled)

    def describe(self) -> str:
        return "cancellation" if self.cancelled else f"failure ({self.error})"


class Completed(Decision):
    event_type = "wf.Completed"
    result: Any = None

    def describe(self) -> str:
        return "completion"


class Compensated(Decision):
    event_type = "wf.Compensated"
    error: str

    def describe(self) -> str:
        return "the end of compensation"


class UpdateCompleted(Decision):
    """What an update's handler returned to its caller."""

    event_type = "wf.UpdateCompleted"
    name: str
    result: Any = None

    def signature(self) -> tuple[Any, ...]:
        return (self.event_type, self.name)

    def describe(self) -> str:
        return f"update {self.name}"


class ContinuedAsNew(Decision):
    """The code ended this run with ``ctx.continue_as_new(input)``: the next run starts
    in the same commit, from ``input``, with the signals this run received but never
    read (``carried``, each ``{"name", "payload"}``) delivered to it again."""

    event_type = "wf.ContinuedAsNew"
    input: Any
    run: int
    carried: list[JSONDict] = []

    def signature(self) -> tuple[Any, ...]:
        return (self.event_type, self.input)

    def describe(self) -> str:
        return f"continue as new (run {self.run + 1})"


class Failed(Decision):
    """A compensation could not finish within its retry budget: a person must look."""

    event_type = "wf.Failed"
    error: str
    compensation: str

    def describe(self) -> str:
        return f"failure of {self.compensation}"


# -- annotations -------------------------------------------------------------------------


class ChildCancelRequested(Decision):
    """The parent's code ended with this child still running, and its policy cancels it."""

    event_type = "wf.ChildCancelRequested"
    seq: int
    address: str

    def signature(self) -> tuple[Any, ...]:
        return (self.event_type, self.seq)

    def describe(self) -> str:
        return f"cancel child #{self.seq} {self.address}"


class TimerStarted(Decision):
    """A durable timer set by the code: it fires at ``due_at`` (``label`` says why)."""

    event_type = "wf.TimerStarted"
    seq: int
    due_at: datetime
    label: str = "sleep"

    def signature(self) -> tuple[Any, ...]:
        return (self.event_type, self.seq)

    def describe(self) -> str:
        return f"timer #{self.seq} ({self.label}) due {self.due_at.isoformat()}"


class TimerCancelled(Decision):
    """A timer the code no longer waits for (it lost a race, or the code ended)."""

    event_type = "wf.TimerCancelled"
    seq: int

    def signature(self) -> tuple[Any, ...]:
        return (self.event_type, self.seq)

    def describe(self) -> str:
        return f"cancel timer #{self.seq}"


class LocalActivityRan(Decision):
    """An attempt of a local activity ran inline: its outcome, and when the next attempt
    runs if it failed and may be retried (``retry_at``)."""

    event_type = "wf.LocalActivityRan"
    seq: int
    name: str
    attempt: int
    status: str
    result: Any = None
    error: str | None = None
    code: str | None = None
    retry_at: datetime | None = None

    def signature(self) -> tuple[Any, ...]:
        return (self.event_type, self.seq, self.name, self.attempt)

    def describe(self) -> str:
        return f"local activity #{self.seq} {self.name} (attempt {self.attempt})"


class Patched(Decision):
    """The code took the new branch of ``ctx.patched(change_id)`` at this point: replays
    of this history take it too, and histories without it keep the old branch."""

    event_type = "wf.Patched"
    change_id: str

    def signature(self) -> tuple[Any, ...]:
        return (self.event_type, self.change_id)

    def describe(self) -> str:
        return f"patch {self.change_id!r}"


class ApprovalStep(Decision):
    """A step of a human approval (``sagas.approvals``): requested, reminded, escalated,
    given up, or decided (``by`` and ``comment`` say who and why)."""

    event_type = "wf.ApprovalStep"
    name: str
    kind: str
    approvers: list[str]
    next_at: datetime | None = None
    by: str | None = None
    comment: str = ""

    def signature(self) -> tuple[Any, ...]:
        return (self.event_type, self.name, self.kind, tuple(self.approvers))

    def describe(self) -> str:
        return f"approval {self.name!r} {self.kind}"


class Parked(Annotation):
    event_type = "wf.Parked"
    error: str
    step: str | None = None
    expected: str | None = None
    actual: str | None = None


class Resumed(Annotation):
    event_type = "wf.Resumed"


class ActivityHeartbeat(Annotation):
    """The latest progress a running attempt reported; the next attempt starts from it.
    ``started``: not progress but the notice that a worker took the attempt (sent only
    by attempts with a schedule-to-start timeout)."""

    event_type = "wf.ActivityHeartbeat"
    seq: int
    attempt: int
    details: Any = None
    started: bool = False


HISTORY_EVENTS: tuple[type[WorkflowEvent], ...] = (
    Started,
    CallCompleted,
    SignalReceived,
    CancelRequested,
    CompensationRepaired,
    UpdateAccepted,
    UpdateCompleted,
    TimerFired,
    ChildCompleted,
    ChildCancelRequested,
    CallScheduled,
    TimerStarted,
    TimerCancelled,
    Patched,
    LocalActivityRan,
    ApprovalStep,
    CompensationRegistered,
    CompensationSkipped,
    Compensating,
    Completed,
    Compensated,
    ContinuedAsNew,
    Failed,
    Parked,
    Resumed,
    ActivityHeartbeat,
)


def _args(args: JSONDict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())
