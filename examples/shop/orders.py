"""The order saga: reserve the stock, charge the account, confirm the cart, ship it.

Each step that changes something runs inside a ``ctx.compensation(...)`` block that
registers its undo *before* the step: if a later step is refused, or the order is
cancelled, the undos run newest first (refund, then release the reservations). An undo
whose step was itself refused is skipped, since that step changed nothing.

An order with a ``ship_to`` address is then shipped: the fulfilment activity books the
parcel with the carrier (``shipping.py``), on whichever worker runs activities, retried
while the carrier is unreachable. If it cannot be shipped (an undeliverable address, or
the carrier away for all its attempts) the customer is refunded and the stock released.
An order without an address is collected in the shop: nothing to ship.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Self

from pydantic import BaseModel, Field, model_validator

from examples.shop.accounts import Account, Money
from examples.shop.carts import Cart
from examples.shop.inventory import InventoryItem
from examples.shop.shipping import FULFILMENT
from sagas import Workflow, WorkflowContext, WorkflowView

Id = Annotated[str, Field(min_length=1, max_length=100)]


class OrderLine(BaseModel):
    sku: Id
    quantity: Annotated[int, Field(gt=0, le=1_000_000)]


class OrderInput(BaseModel):
    account_id: Id
    cart_id: Id
    lines: list[OrderLine] = Field(min_length=1, max_length=50)
    amount: Money
    ship_to: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    """Where to ship the order (None: collected in the shop)."""

    @model_validator(mode="after")
    def _one_line_per_sku(self) -> Self:
        skus = [line.sku for line in self.lines]
        if len(set(skus)) != len(skus):
            raise ValueError("each SKU may appear on one line only")
        return self


class OrderResult(BaseModel):
    order_id: str
    charged: Decimal
    balance: Decimal
    cart_total: Decimal
    tracking: str | None = None
    """The carrier's tracking number of a shipped order."""


order_saga = Workflow(
    "Order",
    input=OrderInput,
    output=OrderResult,
    description=(
        "Reserve stock, charge the account, confirm the cart, ship it; compensate in reverse."
    ),
)


@order_saga.run
async def place_order(ctx: WorkflowContext, order: OrderInput) -> OrderResult:
    reservation = ctx.workflow_id
    ctx.memo["stage"] = "reserving"
    for line in order.lines:
        with ctx.compensation(InventoryItem.release, line.sku, reservation_id=reservation):
            await ctx.call(
                InventoryItem.reserve,
                line.sku,
                reservation_id=reservation,
                quantity=line.quantity,
            )
    ctx.memo["stage"] = "charging"
    with ctx.compensation(Account.deposit, order.account_id, amount=order.amount):
        balance = await ctx.call(Account.withdraw, order.account_id, amount=order.amount)
    ctx.memo["stage"] = "confirming"
    cart_total = await ctx.call(Cart.checkout, order.cart_id)
    tracking = None
    if order.ship_to is not None:
        ctx.memo["stage"] = "shipping"
        items = sum(line.quantity for line in order.lines)
        shipment = await ctx.execute_activity(FULFILMENT, ctx.workflow_id, order.ship_to, items)
        tracking = shipment.tracking
    ctx.memo["stage"] = "confirmed"
    return OrderResult(
        order_id=ctx.workflow_id,
        charged=order.amount,
        balance=balance,
        cart_total=cart_total,
        tracking=tracking,
    )


@order_saga.query
def stage(view: WorkflowView) -> str:
    """Where the order is: reserving, charging, confirming, shipping, confirmed, or how it
    ended."""
    if view.status in ("running", "parked"):
        return str(view.memo.get("stage", "starting"))
    return view.status
