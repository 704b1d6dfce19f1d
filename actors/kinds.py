"""How the runtime sees an actor type, and the entity implementation of it.

The runtime is generic: it owns partitions, caching, deduplication and group commit,
and hands each message to an :class:`Actor`. Entities are one kind of actor (here);
workflow coordinators are another (in ``sagas``), plugged in through the same protocol,
so the actor layer never imports the saga layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from actors.entity import Entity, EntitySpec
from actors.envelopes import Envelope
from actors.errors import InvalidArgumentsError, Rejected, UnknownCommandError
from actors.timers import TimerRequest
from eventstore import (
    DomainEvent,
    EventRegistry,
    ExecutionRow,
    JSONDict,
    LoadedStream,
    OutcomeStatus,
    Store,
)


@dataclass
class Turn:
    """What handling one message produced.

    ``status`` None means the message is not a command (e.g. a reply to a workflow) and
    leaves no outcome row. ``code`` names a refusal as a value (``Rejected(code=...)``,
    a workflow's ``finished``). ``crashed`` sends the message to the dead-letter topic.
    A turn that is not applied leaves the actor as it was before the message.
    ``timers`` are set (or moved) and ``cancel_timers`` (names) deleted with its commit.
    ``snapshot`` (version, state) is saved right after the commit, under the kind's
    ``snapshot_type``: an actor that knows where loading may start (a workflow's new run)
    asks for one there.
    """

    events: list[DomainEvent] = field(default_factory=list)
    status: OutcomeStatus | None = "applied"
    result: Any = None
    error: str | None = None
    code: str | None = None
    outbox: list[Envelope] = field(default_factory=list)
    crashed: bool = False
    timers: list[TimerRequest] = field(default_factory=list)
    cancel_timers: list[str] = field(default_factory=list)
    snapshot: tuple[int, JSONDict] | None = None


class Actor(Protocol):
    """One live actor: a cached entity or workflow execution."""

    @property
    def address(self) -> str: ...

    @property
    def version(self) -> int: ...

    def handle(self, envelope: Envelope, now: datetime) -> Turn:
        """Handle one message; events it returns are already applied to the actor.

        A turn whose status is not ``applied`` must leave the actor unchanged."""

    def snapshot_state(self) -> JSONDict | None:
        """The state to snapshot at the current version (None: this actor never snapshots)."""

    def visibility(self) -> ExecutionRow | None:
        """A visibility row to upsert with the batch (workflows), or None."""

    def on_loaded(self) -> list[Envelope]:
        """Messages to (re)send after the actor was loaded from the store (an outbox)."""

    def tick(self, now: datetime) -> list[Envelope]:
        """Called about once a second while cached: messages that are due (resends, timers)."""


class ActorKind(Protocol):
    """One registered actor type: what loads actors of that type."""

    @property
    def type_name(self) -> str:
        """The part of the address before '/', e.g. ``Account`` or ``workflow:Order``."""

    @property
    def snapshot_type(self) -> str | None: ...

    @property
    def snapshot_every(self) -> int | None: ...

    @property
    def registry(self) -> EventRegistry: ...

    def load(self, address: str, stream: LoadedStream) -> Actor:
        """Build the actor from its stored stream (empty for a new actor)."""

    def unfinished(self, store: Store) -> list[str]:
        """Addresses of actors that must be woken when their partition gets a new owner.

        A workflow waiting on a reply that was lost (the worker or the broker died) has
        no message coming to wake it; the new owner loads it, and loading re-sends its
        outbox. Entities never need this.
        """


class EntityActor:
    """An :class:`Entity` instance as the runtime drives it."""

    __slots__ = ("entity", "spec")

    def __init__(self, spec: EntitySpec, entity: Entity[Any]) -> None:
        self.spec = spec
        self.entity = entity

    @property
    def address(self) -> str:
        return self.entity.address

    @property
    def version(self) -> int:
        return self.entity.version

    def handle(self, envelope: Envelope, now: datetime) -> Turn:
        if envelope.kind != "command":
            return Turn(status="invalid", error=f"entities do not accept {envelope.kind} messages")
        try:
            command = self.spec.command(envelope.name)
            parsed = command.parse(envelope.args)
        except (UnknownCommandError, InvalidArgumentsError) as exc:
            return Turn(status="invalid", error=str(exc))
        try:
            working, ctx, value = self.spec.run_command(
                self.entity, command, parsed, command_id=envelope.command_id, now=now
            )
            result = command.encode_result(value)
        except Rejected as exc:
            return Turn(status="rejected", error=exc.reason, code=exc.code)
        except Exception as exc:
            return Turn(status="dead_lettered", error=_describe(exc), crashed=True)
        self.entity = working  # the copy the command ran on becomes the entity
        if not (ctx.scheduled or ctx.cancelled):
            return Turn(events=ctx.events, result=result)
        timers = [
            TimerRequest(
                t.name,
                t.due_at,
                Envelope(address=self.address, kind="command", name=t.command, args=t.args),
            )
            for t in ctx.scheduled
        ]
        return Turn(events=ctx.events, result=result, timers=timers, cancel_timers=ctx.cancelled)

    def snapshot_state(self) -> JSONDict | None:
        return self.spec.snapshot_state(self.entity)

    def visibility(self) -> ExecutionRow | None:
        return None

    def on_loaded(self) -> list[Envelope]:
        return []

    def tick(self, now: datetime) -> list[Envelope]:
        return []


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class EntityKind:
    """The actor kind of one entity class."""

    def __init__(self, spec: EntitySpec, default_snapshot_every: int | None = None) -> None:
        self.spec = spec
        self._snapshot_every = spec.snapshot_every or default_snapshot_every

    @property
    def type_name(self) -> str:
        return self.spec.type_name

    @property
    def snapshot_type(self) -> str:
        return self.spec.snapshot_type

    @property
    def snapshot_every(self) -> int | None:
        return self._snapshot_every

    @property
    def registry(self) -> EventRegistry:
        return self.spec.registry

    def load(self, address: str, stream: LoadedStream) -> EntityActor:
        entity_id = address.split("/", 1)[1]
        return EntityActor(self.spec, self.spec.rehydrate(entity_id, stream))

    def unfinished(self, store: Store) -> list[str]:
        return []
