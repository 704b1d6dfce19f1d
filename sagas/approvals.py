"""Human approval with an escalation ladder: who may approve, and what happens when they
do not (remind, escalate to someone else, give up).

Declare the approval on the workflow, then ask for it from the code::

    refund = Workflow("Refund", input=RefundInput, output=str)
    manager_ok = Approval(refund, "manager")       # its signal: .../signals/manager

    @refund.run
    async def run(ctx: WorkflowContext, r: RefundInput) -> str:
        result = await request_approval(
            ctx,
            manager_ok,
            approvers=["ada"],
            ladder=[
                remind(timedelta(hours=24)),
                escalate(timedelta(hours=48), to=["grace"]),
                give_up(timedelta(hours=72)),
            ],
        )

Each rung is a durable timer raced against the decision; every step (requested,
reminded, escalated, approved, rejected, gave up) is a ``wf.ApprovalStep`` in the history,
so the status, ``GET /approvals`` and replay all read the same record. A decision by
someone not (yet) among the approvers is refused before anything is recorded: the
caller gets a 422 naming who may decide. Reminders and escalations are recorded steps; to
also send an e-mail, pass ``notify``: an activity run with each step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sagas.activities import Activity
from sagas.context import WorkflowContext
from sagas.definition import Workflow
from sagas.errors import WaitTimedOut, WorkflowDefinitionError
from sagas.history import ApprovalStep
from sagas.signals import Signal

Approver = str
RungAction = Literal["remind", "escalate", "give_up"]


class ApprovalDecision(BaseModel):
    """The body of an approval's signal: the verdict, who gives it and why."""

    model_config = ConfigDict(extra="forbid")

    approved: bool
    by: str = Field(min_length=1, max_length=200)
    comment: str = Field(default="", max_length=2000)


class ApprovalResult(BaseModel):
    """What :func:`request_approval` returns."""

    model_config = ConfigDict(frozen=True)

    approved: bool
    by: str | None = None
    comment: str = ""
    gave_up: bool = False
    decided_at: datetime


class ApprovalNotice(BaseModel):
    """What a ``notify`` activity is given at each step."""

    workflow_id: str
    approval: str
    step: str
    approvers: list[str]


@dataclass(frozen=True)
class Rung:
    """One step of the ladder, ``after`` the request: remind, escalate (to more people),
    or give up."""

    after: timedelta
    action: RungAction
    to: tuple[Approver, ...] = ()


def remind(after: timedelta) -> Rung:
    return Rung(after, "remind")


def escalate(after: timedelta, *, to: Sequence[Approver]) -> Rung:
    return Rung(after, "escalate", tuple(to))


def give_up(after: timedelta) -> Rung:
    return Rung(after, "give_up")


class Approval:
    """An approval a workflow type asks for; decisions arrive as its signal ``name``."""

    def __init__(self, workflow: Workflow[Any, Any], name: str) -> None:
        self.name = name
        self.signal: Signal[ApprovalDecision] = workflow.signal(name, ApprovalDecision)

    def __repr__(self) -> str:
        return f"<approval {self.signal.workflow_name}.{self.name}>"


def check_ladder(approvers: Sequence[Approver], ladder: Sequence[Rung]) -> None:
    """Refuse a ladder that cannot mean what it says (before anything is recorded)."""
    if not approvers or any(not isinstance(a, str) or not a for a in approvers):
        raise WorkflowDefinitionError("an approval needs at least one approver (a non-empty name)")
    previous = timedelta(0)
    for i, rung in enumerate(ladder):
        if rung.after <= previous:
            raise WorkflowDefinitionError(
                f"rung {i + 1} of the approval ladder ({rung.action} after {rung.after}) must "
                f"come after the one before ({previous}): rungs count from the request"
            )
        if rung.action == "escalate" and not rung.to:
            raise WorkflowDefinitionError(
                f"rung {i + 1} escalates to nobody: escalate(..., to=[...])"
            )
        if rung.action == "give_up" and i != len(ladder) - 1:
            raise WorkflowDefinitionError("give_up ends the ladder: it must be its last rung")
        previous = rung.after


async def request_approval(
    ctx: WorkflowContext,
    approval: Approval,
    *,
    approvers: Sequence[Approver],
    ladder: Sequence[Rung] = (),
    notify: Activity[[ApprovalNotice], Any] | None = None,
) -> ApprovalResult:
    """Ask ``approvers`` and wait for a decision, walking ``ladder`` while none comes.

    Returns the decision (``approved`` True or False, ``by``, ``comment``), or
    ``gave_up=True`` when the ladder's last rung is ``give_up``. Without ``give_up`` it
    waits, after the last rung, for as long as it takes.
    """
    check_ladder(approvers, ladder)
    engine = ctx._engine
    started = ctx.now()
    asked = list(dict.fromkeys(approvers))

    def due(index: int) -> datetime | None:
        return started + ladder[index].after if index < len(ladder) else None

    async def step(kind: str, decision: ApprovalDecision | None = None) -> None:
        rung_due = due(rung) if kind in ("requested", "remind", "escalate") else None
        engine.record_decision(
            ApprovalStep(
                name=approval.name,
                kind=kind,
                approvers=list(asked),
                next_at=rung_due,
                by=decision.by if decision else None,
                comment=decision.comment if decision else "",
            )
        )
        if notify is not None:
            notice = ApprovalNotice(
                workflow_id=ctx.workflow_id, approval=approval.name, step=kind, approvers=asked
            )
            await ctx.execute_activity(notify, notice)

    def refusal(decision: ApprovalDecision) -> str | None:
        if decision.by in asked:
            return None
        return (
            f"{decision.by!r} may not decide approval {approval.name!r}; it is asked of "
            f"{', '.join(asked)}"
        )

    rung = 0
    engine.guard_signal(approval.name, refusal)
    try:
        await step("requested")
        while True:
            next_due = due(rung)
            if next_due is None:
                decision = await ctx.wait_signal(approval.signal)
                break
            left = max(next_due - ctx.now(), timedelta(0))
            try:
                decision = await ctx.wait_signal(approval.signal, timeout=left)
                break
            except WaitTimedOut:
                current = ladder[rung]
                rung += 1
                if current.action == "give_up":
                    await step("gave_up")
                    return ApprovalResult(approved=False, gave_up=True, decided_at=ctx.now())
                if current.action == "escalate":
                    asked.extend(a for a in current.to if a not in asked)
                await step(current.action)
        await step("approved" if decision.approved else "rejected", decision)
        return ApprovalResult(
            approved=decision.approved,
            by=decision.by,
            comment=decision.comment,
            decided_at=ctx.now(),
        )
    finally:
        engine.guard_signal(approval.name, None)


__all__ = [
    "Approval",
    "ApprovalDecision",
    "ApprovalNotice",
    "ApprovalResult",
    "Rung",
    "check_ladder",
    "escalate",
    "give_up",
    "remind",
    "request_approval",
]
