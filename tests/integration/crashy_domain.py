"""A domain for poison tests: the shop plus an entity whose handler can crash."""

from __future__ import annotations

from pydantic import BaseModel

from actors import CommandContext, Entity, apply, command
from eventstore import DomainEvent
from examples.shop import ENTITIES as SHOP


class FragileState(BaseModel):
    count: int = 0


class Touched(DomainEvent):
    event_type = "Touched"


class Fragile(Entity[FragileState]):
    @command
    def touch(self, ctx: CommandContext) -> int:
        ctx.emit(Touched())
        return self.state.count

    @command
    def explode(self, ctx: CommandContext) -> None:
        ctx.emit(Touched())
        raise RuntimeError("handler blew up on purpose")

    @apply
    def _touched(self, event: Touched) -> None:
        self.state.count += 1


ENTITIES = (*SHOP, Fragile)
