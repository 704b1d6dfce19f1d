"""Test entities and a small driver that runs the Runtime against a real Store, no worker.

``Counter`` exists to exercise what the shop entities never do: handlers that emit and
then refuse or crash, queries that try to change state, rich result types and an
unbounded text argument for payload limits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from actors import (
    BatchResult,
    CommandContext,
    Delivery,
    Entity,
    EntityKind,
    EntitySpec,
    Envelope,
    Rejected,
    Runtime,
    apply,
    command,
    query,
)
from actors.runtime import merge_registries
from eventstore import DomainEvent, EventRegistry, Outcome, Store

REPLY_ROUTE = "local:tests"


class CounterState(BaseModel):
    value: int = 0
    notes: list[str] = Field(default_factory=list)


class Incremented(DomainEvent):
    event_type = "Incremented"
    by: int


class Noted(DomainEvent):
    event_type = "Noted"
    text: str


class CounterSummary(BaseModel):
    value: int
    notes: int
    at: datetime


class Counter(Entity[CounterState]):
    """A counter whose handlers misbehave on purpose when asked to."""

    @command
    def bump(self, ctx: CommandContext, by: int = 1) -> None:
        ctx.emit(Incremented(by=by))

    @command
    def add(self, ctx: CommandContext, by: int) -> int:
        ctx.emit(Incremented(by=by))
        return self.state.value

    @command
    def add_then_reject(self, ctx: CommandContext, by: int) -> int:
        """Emits an event and then refuses: the event must not survive."""
        ctx.emit(Incremented(by=by))
        raise Rejected(f"refused after adding {by}")

    @command
    def add_then_crash(self, ctx: CommandContext, by: int) -> int:
        """Emits an event and then fails like a buggy handler."""
        ctx.emit(Incremented(by=by))
        raise RuntimeError(f"boom after adding {by}")

    @command
    def crash(self, ctx: CommandContext) -> None:
        raise ValueError("handler bug")

    @command
    def note(self, ctx: CommandContext, text: str) -> int:
        ctx.emit(Noted(text=text))
        return len(self.state.notes)

    @command
    def summary(self, ctx: CommandContext) -> CounterSummary:
        return CounterSummary(value=self.state.value, notes=len(self.state.notes), at=ctx.now)

    @query
    def value(self) -> int:
        return self.state.value

    @query
    def plus(self, n: int) -> int:
        return self.state.value + n

    @query
    def sneaky_mutate(self) -> int:
        self.state.value += 1
        return self.state.value

    @query
    def sneaky_replace(self) -> int:
        self.state = CounterState(value=-1)
        return self.state.value

    @apply
    def _incremented(self, event: Incremented) -> None:
        self.state.value += event.by

    @apply
    def _noted(self, event: Noted) -> None:
        self.state.notes.append(event.text)


def kinds_of(
    entities: Iterable[type[Entity[Any]]], snapshot_every: int | None = None
) -> list[EntityKind]:
    return [EntityKind(EntitySpec.of(cls), snapshot_every) for cls in entities]


def registry_of(entities: Iterable[type[Entity[Any]]]) -> EventRegistry:
    return merge_registries(kinds_of(entities))


def message(
    entity: type[Entity[Any]],
    entity_id: str,
    name: str,
    *,
    kind: str = "update",
    command_id: str | None = None,
    reply_to: str | None = REPLY_ROUTE,
    **args: Any,
) -> Envelope:
    """A command envelope as a client would send it (arguments already JSON-ready);
    ``kind="signal"`` sends it without a reply route (fire and forget)."""
    fields: dict[str, Any] = {
        "address": f"{EntitySpec.of(entity).type_name}/{entity_id}",
        "kind": "command",
        "name": name,
        "args": args,
        "reply_to": reply_to if kind == "update" else None,
    }
    if command_id is not None:
        fields["command_id"] = command_id
    return Envelope(**fields)


class Driver:
    """Runs batches through a Runtime and commits them to its Store, like a worker would."""

    def __init__(
        self,
        store: Store,
        entities: Sequence[type[Entity[Any]]],
        *,
        snapshot_every: int | None = None,
        **runtime_options: Any,
    ) -> None:
        self.store = store
        self.kinds = kinds_of(entities, snapshot_every)
        self.runtime = Runtime(store, self.kinds, **runtime_options)
        self.offset = 0

    def deliveries(self, envelopes: Iterable[Envelope]) -> list[Delivery]:
        out = []
        for env in envelopes:
            out.append(Delivery(0, self.offset, env.encode(), env))
            self.offset += 1
        return out

    def process(self, envelopes: Iterable[Envelope]) -> BatchResult:
        """Process a batch without committing it."""
        return self.runtime.process(self.deliveries(envelopes))

    def run(self, envelopes: Iterable[Envelope]) -> BatchResult:
        """Process and commit one batch, then let the runtime snapshot and trim."""
        batch = self.process(envelopes)
        self.store.commit(batch.commit)
        self.runtime.committed(batch)
        return batch

    def replies(self, envelopes: Iterable[Envelope]) -> list[Outcome[Any]]:
        return [reply for _, reply, _ in self.run(envelopes).replies]

    def reply(self, envelope: Envelope) -> Outcome[Any]:
        (reply,) = self.replies([envelope])
        return reply
