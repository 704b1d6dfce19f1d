"""A domain for poison tests: the shop plus an entity whose handler can crash."""

from __future__ import annotations

from pydantic import BaseModel

from actors import Entity, apply, update
from eventstore import DomainEvent
from examples.shop import ENTITIES as SHOP


class FragileState(BaseModel):
    count: int = 0


class Touched(DomainEvent):
    pass


class Fragile(Entity[FragileState]):
    @update
    def touch(self) -> int:
        self.emit(Touched())
        return self.state.count

    @update
    def explode(self) -> None:
        self.emit(Touched())
        raise RuntimeError("handler blew up on purpose")

    @apply
    def _touched(self, event: Touched) -> None:
        self.state.count += 1


ENTITIES = (*SHOP, Fragile)
