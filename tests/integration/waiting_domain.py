"""Workflows that wait for a person, against a deadline, as `entityflow worker --domain
tests.integration.waiting_domain` runs them in the deadline and approval tests.

An ``Ask`` waits for its ``answer`` signal with a timeout. On a timeout it notes the
miss on its :class:`Desk`, then waits for ``proceed`` (so a late answer arrives while
nobody is waiting for it), and then waits for ``answer`` again without a timeout: the
late answer, kept, is what that wait gets.

A ``Grant`` places a :class:`Desk` hold (undone by a release if the saga
compensates), then asks ``ada`` for approval on a ladder of seconds: reminded at 2 s,
``grace`` may decide from 4 s, given up at 7 s, and giving up compensates.
"""

from __future__ import annotations

import os
from datetime import timedelta

from pydantic import BaseModel

from actors import CommandContext, Entity, apply, command, query
from eventstore import DomainEvent
from sagas import (
    Approval,
    Domain,
    WaitTimedOut,
    Workflow,
    WorkflowContext,
    escalate,
    give_up,
    remind,
    request_approval,
)

REMIND_AFTER = timedelta(seconds=2)
ESCALATE_AFTER = timedelta(seconds=4)
GIVE_UP_AFTER = timedelta(seconds=7)
FIRST_APPROVER = "ada"
SECOND_APPROVER = "grace"


class DeskState(BaseModel):
    held: int = 0
    missed: int = 0


class Held(DomainEvent):
    event_type = "waiting.Held"
    by: str
    pid: int


class Released(DomainEvent):
    event_type = "waiting.Released"
    by: str
    pid: int


class Missed(DomainEvent):
    event_type = "waiting.Missed"
    by: str


class Desk(Entity[DeskState]):
    """Holds placed and released by grants, and deadlines missed by asks."""

    @command
    def hold(self, ctx: CommandContext, by: str) -> int:
        ctx.emit(Held(by=by, pid=os.getpid()))
        return self.state.held

    @command
    def release(self, ctx: CommandContext, by: str) -> int:
        ctx.emit(Released(by=by, pid=os.getpid()))
        return self.state.held

    @command
    def miss(self, ctx: CommandContext, by: str) -> int:
        ctx.emit(Missed(by=by))
        return self.state.missed

    @query
    def held(self) -> int:
        return self.state.held

    @query
    def missed(self) -> int:
        return self.state.missed

    @apply
    def _held(self, event: Held) -> None:
        self.state.held += 1

    @apply
    def _released(self, event: Released) -> None:
        self.state.held -= 1

    @apply
    def _missed(self, event: Missed) -> None:
        self.state.missed += 1


class AskInput(BaseModel):
    desk: str
    seconds: float


ask = Workflow("Ask", input=AskInput, output=str)
answer = ask.signal("answer", str)
proceed = ask.signal("proceed")


@ask.run
async def run_ask(ctx: WorkflowContext, a: AskInput) -> str:
    try:
        reply = await ctx.wait_signal(answer, timeout=timedelta(seconds=a.seconds))
    except WaitTimedOut:
        await ctx.call(Desk.miss, a.desk, by=ctx.workflow_id)
        await ctx.wait_signal(proceed)
        late = await ctx.wait_signal(answer)  # the late answer, kept for this wait
        return f"timed out, then {late}"
    return f"answered {reply}"


class GrantInput(BaseModel):
    desk: str


class GaveUpError(Exception):
    """Nobody decided in time: the saga compensates (releases its hold)."""


grant = Workflow("Grant", input=GrantInput, output=str)
sign_off = Approval(grant, "sign_off")


@grant.run
async def run_grant(ctx: WorkflowContext, g: GrantInput) -> str:
    with ctx.compensation(Desk.release, g.desk, by=ctx.workflow_id):
        await ctx.call(Desk.hold, g.desk, by=ctx.workflow_id)
    verdict = await request_approval(
        ctx,
        sign_off,
        approvers=[FIRST_APPROVER],
        ladder=[
            remind(REMIND_AFTER),
            escalate(ESCALATE_AFTER, to=[SECOND_APPROVER]),
            give_up(GIVE_UP_AFTER),
        ],
    )
    if verdict.gave_up:
        raise GaveUpError("nobody signed off")
    return f"{'approved' if verdict.approved else 'rejected'} by {verdict.by}"


# Replies overdue after 2 s are asked for again (a reply lost with a killed worker).
DOMAIN = Domain((Desk,), (ask, grant), resend_after=2.0)

__all__ = [
    "DOMAIN",
    "ESCALATE_AFTER",
    "FIRST_APPROVER",
    "GIVE_UP_AFTER",
    "REMIND_AFTER",
    "SECOND_APPROVER",
    "AskInput",
    "Desk",
    "GaveUpError",
    "GrantInput",
    "Held",
    "Missed",
    "Released",
    "answer",
    "ask",
    "grant",
    "proceed",
    "sign_off",
]
