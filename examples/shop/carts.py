"""A shopping cart: lines added and removed until it is checked out, abandoned, or left
untouched for :data:`CART_TTL`, when its expiry timer abandons it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from actors import CommandContext, Entity, Rejected, apply, command, query
from eventstore import DomainEvent

Sku = Annotated[str, Field(min_length=1, max_length=100)]
Quantity = Annotated[int, Field(gt=0, le=10_000)]
Price = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=2)]
CART_TTL = timedelta(minutes=30)
"""An open cart nobody changed for this long is abandoned."""
EXPIRY = "expiry"


class CartLine(BaseModel):
    quantity: int
    unit_price: Decimal


class CartState(BaseModel):
    status: Literal["open", "checked_out", "abandoned"] = "open"
    lines: dict[str, CartLine] = Field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        return sum((line.unit_price * line.quantity for line in self.lines.values()), Decimal("0"))


class ItemAdded(DomainEvent):
    event_type = "ItemAdded"
    sku: str
    quantity: int
    unit_price: Decimal


class ItemRemoved(DomainEvent):
    event_type = "ItemRemoved"
    sku: str


class CheckedOut(DomainEvent):
    event_type = "CheckedOut"
    total: Decimal


class CartAbandoned(DomainEvent):
    event_type = "CartAbandoned"
    reason: Literal["abandoned", "expired"] = "abandoned"


class Cart(Entity[CartState]):
    """Open until checked out or abandoned; a closed cart refuses changes."""

    @command
    def add_item(self, ctx: CommandContext, sku: Sku, quantity: Quantity, unit_price: Price) -> int:
        """Add units of a SKU (at one price per SKU); returns the number of lines."""
        self._require_open()
        line = self.state.lines.get(sku)
        if line is not None and line.unit_price != unit_price:
            raise Rejected(f"{sku} is already in the cart at {line.unit_price}")
        ctx.emit(ItemAdded(sku=sku, quantity=quantity, unit_price=unit_price))
        ctx.schedule(EXPIRY, CART_TTL, Cart.expire)  # moved back by every change
        return len(self.state.lines)

    @command
    def remove_item(self, ctx: CommandContext, sku: Sku) -> None:
        self._require_open()
        if sku not in self.state.lines:
            raise Rejected(f"{sku} is not in the cart")
        ctx.emit(ItemRemoved(sku=sku))
        ctx.schedule(EXPIRY, CART_TTL, Cart.expire)

    @command
    def checkout(self, ctx: CommandContext) -> Decimal:
        """Close the cart for an order; returns the total."""
        self._require_open()
        if not self.state.lines:
            raise Rejected("cannot check out an empty cart")
        ctx.emit(CheckedOut(total=self.state.total))
        ctx.cancel_timer(EXPIRY)
        return self.state.total

    @command
    def abandon(self, ctx: CommandContext) -> None:
        self._require_open()
        ctx.emit(CartAbandoned())
        ctx.cancel_timer(EXPIRY)

    @command
    def expire(self, ctx: CommandContext) -> bool:
        """Sent by the cart's expiry timer: abandon it if it is still open."""
        if self.state.status != "open":
            return False
        ctx.emit(CartAbandoned(reason="expired"))
        return True

    @query
    def total(self) -> Decimal:
        return self.state.total

    @query
    def lines(self) -> dict[str, CartLine]:
        return dict(self.state.lines)

    def _require_open(self) -> None:
        if self.state.status != "open":
            raise Rejected(f"cart is {self.state.status}")

    @apply
    def _added(self, event: ItemAdded) -> None:
        line = self.state.lines.get(event.sku)
        quantity = event.quantity + (line.quantity if line else 0)
        self.state.lines[event.sku] = CartLine(quantity=quantity, unit_price=event.unit_price)

    @apply
    def _removed(self, event: ItemRemoved) -> None:
        self.state.lines.pop(event.sku, None)

    @apply
    def _checked_out(self, event: CheckedOut) -> None:
        self.state.status = "checked_out"

    @apply
    def _abandoned(self, event: CartAbandoned) -> None:
        self.state.status = "abandoned"
