"""Entities and a workflow with durable timers, as `entityflow worker --domain
tests.integration.timer_domain` runs them in the timer tests.

An :class:`Alarm` is armed for an aware time (an entity timer, ``ctx.schedule``), armed
again (the timer moves) or disarmed (``ctx.cancel_timer``). Its ``ring`` command, which
only the timer sends, records unconditionally (a timer that fires twice, or fires after it
was cancelled, shows up as an event) the pid of the worker process that handled it and how
late that was. A :class:`Nap` workflow sleeps (a workflow timer, ``ctx.sleep``) and then
bumps its :class:`Tally` once.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from pydantic import BaseModel

from actors import CommandContext, Entity, apply, command, query
from eventstore import DomainEvent
from sagas import Domain, Workflow, WorkflowContext

RING = "ring"


class AlarmState(BaseModel):
    due_at: datetime | None = None
    armed: bool = False
    rings: int = 0


class Armed(DomainEvent):
    event_type = "timers.Armed"
    due_at: datetime


class Disarmed(DomainEvent):
    event_type = "timers.Disarmed"


class Rang(DomainEvent):
    event_type = "timers.Rang"
    due_at: datetime | None
    late: float
    """Seconds after its due time the ring was handled (negative: it rang early)."""
    pid: int
    """The worker process that fired the timer."""


class Alarm(Entity[AlarmState]):
    """Rings once at the time it was (last) armed for, unless disarmed first."""

    @command
    def arm(self, ctx: CommandContext, at: datetime) -> None:
        ctx.emit(Armed(due_at=at))
        ctx.schedule(RING, at, Alarm.ring)  # arming again moves the timer

    @command
    def disarm(self, ctx: CommandContext) -> None:
        ctx.emit(Disarmed())
        ctx.cancel_timer(RING)

    @command
    def ring(self, ctx: CommandContext) -> None:
        """Sent by the timer only; records every delivery, wanted or not."""
        due = self.state.due_at
        late = (ctx.now - due).total_seconds() if due is not None else 0.0
        ctx.emit(Rang(due_at=due, late=late, pid=os.getpid()))

    @query
    def rings(self) -> int:
        return self.state.rings

    @apply
    def _armed(self, event: Armed) -> None:
        self.state.due_at = event.due_at
        self.state.armed = True

    @apply
    def _disarmed(self, event: Disarmed) -> None:
        self.state.armed = False

    @apply
    def _rang(self, event: Rang) -> None:
        self.state.armed = False
        self.state.rings += 1


class TallyState(BaseModel):
    count: int = 0


class Bumped(DomainEvent):
    event_type = "timers.Bumped"
    by: str
    pid: int


class Tally(Entity[TallyState]):
    """Counts bumps: one per :class:`Nap` that woke up, if nothing took effect twice."""

    @command
    def bump(self, ctx: CommandContext, by: str) -> int:
        ctx.emit(Bumped(by=by, pid=os.getpid()))
        return self.state.count

    @query
    def count(self) -> int:
        return self.state.count

    @apply
    def _bumped(self, event: Bumped) -> None:
        self.state.count += 1


class NapInput(BaseModel):
    tally: str
    seconds: float


nap = Workflow("Nap", input=NapInput, output=int)


@nap.run
async def run_nap(ctx: WorkflowContext, n: NapInput) -> int:
    await ctx.sleep(timedelta(seconds=n.seconds))
    return await ctx.call(Tally.bump, n.tally, by=ctx.workflow_id)


# Replies overdue after 2 s are asked for again (a reply lost with a killed worker).
DOMAIN = Domain((Alarm, Tally), (nap,), resend_after=2.0)

__all__ = ["DOMAIN", "RING", "Alarm", "Armed", "Bumped", "Disarmed", "NapInput", "Rang", "Tally"]
