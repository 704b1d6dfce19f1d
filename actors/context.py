"""What a command handler may do besides reading its entity: record events, know its time.

The runtime hands a :class:`CommandContext` to every command. The entity itself stays a
plain value (its id, state and version); the context holds what belongs to one turn: the
events recorded so far, the command's id, and the time it is handled (fixed for the whole
command, so a handler that reads it twice sees one instant). Emitting applies the event
to the working copy of the state at once, so the handler reads its own changes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from eventstore import DomainEvent


class CommandContext:
    """The context of one command turn: ``ctx.emit(event)``, ``ctx.now``, ``ctx.command_id``."""

    __slots__ = ("_apply", "command_id", "events", "now")

    def __init__(
        self, apply: Callable[[DomainEvent], None], command_id: str, now: datetime
    ) -> None:
        self._apply = apply
        self.command_id = command_id
        """The id of the command being handled (the same on a redelivery)."""
        self.now = now
        """When the command is handled (a UTC datetime, fixed for the whole turn)."""
        self.events: list[DomainEvent] = []
        """The events recorded so far in this turn, oldest first."""

    def emit(self, event: DomainEvent) -> None:
        """Record an event: applied to the state now, committed with the batch."""
        if not isinstance(event, DomainEvent):
            raise TypeError(f"emit() takes a DomainEvent, got {type(event).__name__}")
        self._apply(event)
        self.events.append(event)
