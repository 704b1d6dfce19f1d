"""What a command handler may do besides reading its entity: record events, know its time,
and set timers that send the entity one of its own commands later.

The runtime hands a :class:`CommandContext` to every command. The entity itself stays a
plain value (its id, state and version); the context holds what belongs to one turn: the
events recorded so far, the command's id, and the time it is handled (fixed for the whole
command, so a handler that reads it twice sees one instant). Emitting applies the event
to the working copy of the state at once, so the handler reads its own changes.

Timers (``ctx.schedule``, ``ctx.cancel_timer``) are durable: set in the same commit as
the turn's events, fired once by the worker owning the entity, kept across restarts. A
turn that is refused (``Rejected``) sets and cancels nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ParamSpec, Protocol

from actors.timers import check_timer_name, due_time
from eventstore import DomainEvent, JSONDict

P = ParamSpec("P")


class CommandRef(Protocol[P]):
    """What ``ctx.schedule`` takes: a command reference such as ``Cart.expire`` (typed by
    its parameters, so mypy checks the arguments of a timer like those of a call)."""

    @property
    def name(self) -> str: ...

    def bind(self, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]: ...


CommandBody = Callable[[Any, tuple[Any, ...], dict[str, Any]], JSONDict]
"""Validates a self-command's arguments: (handler, args, kwargs) -> the JSON body."""


class ScheduledCommand:
    """A timer set by a command: deliver ``command`` with ``args`` at ``due_at``."""

    __slots__ = ("args", "command", "due_at", "name")

    def __init__(self, name: str, due_at: datetime, command: str, args: JSONDict) -> None:
        self.name, self.due_at, self.command, self.args = name, due_at, command, args


class CommandContext:
    """The context of one command turn: ``ctx.emit(event)``, ``ctx.now``, ``ctx.command_id``."""

    __slots__ = ("_apply", "_body", "cancelled", "command_id", "events", "now", "scheduled")

    def __init__(
        self,
        apply: Callable[[DomainEvent], None],
        command_id: str,
        now: datetime,
        body: CommandBody | None = None,
    ) -> None:
        self._apply = apply
        self._body = body
        self.command_id = command_id
        """The id of the command being handled (the same on a redelivery)."""
        self.now = now
        """When the command is handled (a UTC datetime, fixed for the whole turn)."""
        self.events: list[DomainEvent] = []
        """The events recorded so far in this turn, oldest first."""
        self.scheduled: list[ScheduledCommand] = []
        self.cancelled: list[str] = []

    def emit(self, event: DomainEvent) -> None:
        """Record an event: applied to the state now, committed with the batch."""
        if not isinstance(event, DomainEvent):
            raise TypeError(f"emit() takes a DomainEvent, got {type(event).__name__}")
        self._apply(event)
        self.events.append(event)

    def schedule(
        self,
        name: str,
        delay: timedelta | datetime,
        handler: CommandRef[P],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> None:
        """Send this entity ``handler(*args, **kwargs)`` after ``delay`` (or at a time).

        ``name`` identifies the timer within the entity: scheduling the same name again
        moves it (a cart's expiry pushed back on every change), and
        :meth:`cancel_timer` removes it. Arguments are checked now, like a call's.
        """
        check_timer_name(name)
        due = due_time(self.now, delay)
        if self._body is None:
            raise RuntimeError("this context cannot set timers (it is not a command's)")
        body = self._body(handler, args, dict(kwargs))
        self.cancelled = [n for n in self.cancelled if n != name]
        self.scheduled = [t for t in self.scheduled if t.name != name]
        self.scheduled.append(ScheduledCommand(name, due, handler.name, body))

    def cancel_timer(self, name: str) -> None:
        """Cancel the timer of that name (one that is not set, or has fired, is ignored)."""
        check_timer_name(name)
        self.scheduled = [t for t in self.scheduled if t.name != name]
        if name not in self.cancelled:
            self.cancelled.append(name)
