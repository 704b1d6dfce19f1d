"""The timers bench's domain: an entity that sets one durable timer and says how late it fired.

``Sleeper.arm(delay_ms)`` sets the timer ``wake`` due ``delay_ms`` after the command is
handled (``ctx.schedule`` with that instant, so the due time is exact); the timer sends
``Sleeper.fired(due_us)``, whose result is its lateness in ms: ``ctx.now`` of the fired
command (when the worker handles it) minus the due time. The bench reads those results
from the outcome rows. ``Account`` (the shop's) carries the W1 load beside it.

Worker processes import it (``--domain bench.timer_domain``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, Field

from actors import CommandContext, Entity, apply, command
from eventstore import DomainEvent
from examples.shop import Account
from sagas import Domain

TIMER = "wake"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(at: datetime) -> int:
    """Microseconds since the epoch (exact, unlike a float timestamp)."""
    delta = at.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


class SleeperState(BaseModel):
    armed: int = 0
    fired: int = 0
    due_us: int = 0


class SleeperArmed(DomainEvent):
    event_type = "BenchSleeperArmed"
    due_us: int


class SleeperFired(DomainEvent):
    event_type = "BenchSleeperFired"
    due_us: int
    late_us: int


class Sleeper(Entity[SleeperState]):
    """One timer at a time; its firing records how late it came."""

    @command
    def arm(self, ctx: CommandContext, delay_ms: Annotated[int, Field(ge=0, le=86_400_000)]) -> int:
        """Set the timer ``delay_ms`` from now; returns its due time (µs since the epoch)."""
        due = ctx.now + timedelta(milliseconds=delay_ms)
        due_us = micros(due)
        ctx.emit(SleeperArmed(due_us=due_us))
        ctx.schedule(TIMER, due, Sleeper.fired, due_us)
        return due_us

    @command
    def fired(self, ctx: CommandContext, due_us: int) -> float:
        """Sent by the timer: returns its lateness in ms (handled at ``ctx.now``)."""
        late_us = micros(ctx.now) - due_us
        ctx.emit(SleeperFired(due_us=due_us, late_us=late_us))
        return late_us / 1000

    @apply
    def _armed(self, event: SleeperArmed) -> None:
        self.state.armed += 1
        self.state.due_us = event.due_us

    @apply
    def _fired(self, event: SleeperFired) -> None:
        self.state.fired += 1


DOMAIN = Domain((Account, Sleeper))
