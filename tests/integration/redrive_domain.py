"""A domain for re-drive tests: the shop plus a parcel whose shipping crashes until it is
labelled (the bug an operator fixes, by a command, before re-driving the dead letter)."""

from __future__ import annotations

from pydantic import BaseModel

from actors import CommandContext, Entity, apply, command, query
from eventstore import DomainEvent
from examples.shop import ACTIVITIES, WORKFLOWS
from examples.shop import ENTITIES as SHOP
from sagas import Domain


class ParcelState(BaseModel):
    labelled: bool = False
    shipped: int = 0


class Labelled(DomainEvent):
    event_type = "Labelled"


class Shipped(DomainEvent):
    event_type = "Shipped"


class Parcel(Entity[ParcelState]):
    @command
    def label(self, ctx: CommandContext) -> None:
        ctx.emit(Labelled())

    @command
    def ship(self, ctx: CommandContext) -> int:
        """Crashes (a bug, not a rejection) while the parcel has no label."""
        ctx.emit(Shipped())
        if not self.state.labelled:
            raise RuntimeError("no label: the printer is jammed")
        return self.state.shipped

    @query
    def shipped(self) -> int:
        return self.state.shipped

    @apply
    def _labelled(self, event: Labelled) -> None:
        self.state.labelled = True

    @apply
    def _shipped(self, event: Shipped) -> None:
        self.state.shipped += 1


ENTITIES = (*SHOP, Parcel)
DOMAIN = Domain(ENTITIES, WORKFLOWS, activities=ACTIVITIES)
