"""Stock of one SKU, with reservations that are later committed or released."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from actors import CommandContext, Entity, Rejected, apply, command, query
from eventstore import DomainEvent

Quantity = Annotated[int, Field(gt=0, le=1_000_000)]
ReservationId = Annotated[str, Field(min_length=1, max_length=200)]


class InventoryState(BaseModel):
    on_hand: int = 0
    reservations: dict[str, int] = Field(default_factory=dict)

    @property
    def available(self) -> int:
        return self.on_hand - sum(self.reservations.values())


class Restocked(DomainEvent):
    event_type = "Restocked"
    quantity: int


class StockReserved(DomainEvent):
    event_type = "StockReserved"
    reservation_id: str
    quantity: int


class ReservationReleased(DomainEvent):
    event_type = "ReservationReleased"
    reservation_id: str
    quantity: int


class ReservationCommitted(DomainEvent):
    event_type = "ReservationCommitted"
    reservation_id: str
    quantity: int


class InventoryItem(Entity[InventoryState]):
    """Reservations hold stock for an order until it is committed (shipped) or released."""

    @command
    def restock(self, ctx: CommandContext, quantity: Quantity) -> int:
        """Add stock; returns what is available now."""
        ctx.emit(Restocked(quantity=quantity))
        return self.state.available

    @command
    def reserve(
        self, ctx: CommandContext, reservation_id: ReservationId, quantity: Quantity
    ) -> int:
        """Hold stock for an order; returns what is still available. Repeating it is harmless."""
        held = self.state.reservations.get(reservation_id)
        if held is not None:
            if held != quantity:
                raise Rejected(f"reservation {reservation_id} already holds {held}, not {quantity}")
            return self.state.available
        if quantity > self.state.available:
            raise Rejected(
                f"insufficient stock: {self.state.available} available, {quantity} asked"
            )
        ctx.emit(StockReserved(reservation_id=reservation_id, quantity=quantity))
        return self.state.available

    @command
    def release(self, ctx: CommandContext, reservation_id: ReservationId) -> int:
        """Give held stock back (a compensation: releasing twice, or nothing, is harmless)."""
        held = self.state.reservations.get(reservation_id)
        if held is not None:
            ctx.emit(ReservationReleased(reservation_id=reservation_id, quantity=held))
        return self.state.available

    @command
    def commit(self, ctx: CommandContext, reservation_id: ReservationId) -> None:
        """The reserved stock leaves the warehouse."""
        held = self.state.reservations.get(reservation_id)
        if held is None:
            raise Rejected(f"no reservation {reservation_id}")
        ctx.emit(ReservationCommitted(reservation_id=reservation_id, quantity=held))

    @query
    def available(self) -> int:
        return self.state.available

    @apply
    def _restocked(self, event: Restocked) -> None:
        self.state.on_hand += event.quantity

    @apply
    def _reserved(self, event: StockReserved) -> None:
        self.state.reservations[event.reservation_id] = event.quantity

    @apply
    def _released(self, event: ReservationReleased) -> None:
        self.state.reservations.pop(event.reservation_id, None)

    @apply
    def _committed(self, event: ReservationCommitted) -> None:
        self.state.reservations.pop(event.reservation_id, None)
        self.state.on_hand -= event.quantity
