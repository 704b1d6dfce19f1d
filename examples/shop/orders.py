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

An order placed with ``confirm_delivery`` then waits for the carrier's callback, the
workflow's ``shipped`` signal (``POST /workflows/Order/{id}/signals/shipped``). If it
has not come within :data:`CALLBACK_WAIT`, the saga escalates: the dispatch desk is asked
to chase the carrier (a local activity, recorded in the history) and the saga waits
:data:`CHASE_WAIT` more. If the carrier is still silent, the order completes with
``delivery="unconfirmed"``: it does not compensate, because the parcel was booked and
handed over, and refunding goods that may well be on their way would be wrong; the
unconfirmed orders are the desk's list to follow up. Orders placed without
``confirm_delivery`` (the default) complete as soon as the parcel is booked.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, model_validator

from examples.shop.accounts import Account, Money
from examples.shop.carts import Cart
from examples.shop.inventory import InventoryItem
from examples.shop.shipping import FULFILMENT, Shipped, chase_carrier
from sagas import WaitTimedOut, Workflow, WorkflowContext, WorkflowView

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
    confirm_delivery: bool = False
    """Wait for the carrier's ``shipped`` callback, escalating when it is late."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        skus = [line.sku for line in self.lines]
        if len(set(skus)) != len(skus):
            raise ValueError("each SKU may appear on one line only")
        if self.confirm_delivery and self.ship_to is None:
            raise ValueError("confirm_delivery needs a ship_to address: nothing is shipped")
        return self


class OrderResult(BaseModel):
    order_id: str
    charged: Decimal
    balance: Decimal
    cart_total: Decimal
    tracking: str | None = None
    """The carrier's tracking number of a shipped order."""
    delivery: Literal["confirmed", "unconfirmed"] | None = None
    """For an order placed with ``confirm_delivery``: whether the carrier called back."""


order_saga = Workflow(
    "Order",
    input=OrderInput,
    output=OrderResult,
    description=(
        "Reserve stock, charge the account, confirm the cart, ship it; compensate in reverse."
    ),
)
shipped = order_saga.signal("shipped", Shipped)
"""The carrier's callback: the parcel has left (with its tracking number)."""
CALLBACK_WAIT = timedelta(days=2)
"""How long the carrier has to call back before the dispatch desk is asked to chase it."""
CHASE_WAIT = timedelta(days=5)
"""How long the chased carrier has before the order completes unconfirmed."""


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
    delivery: Literal["confirmed", "unconfirmed"] | None = None
    if order.ship_to is not None:
        ctx.memo["stage"] = "shipping"
        items = sum(line.quantity for line in order.lines)
        shipment = await ctx.execute_activity(FULFILMENT, ctx.workflow_id, order.ship_to, items)
        tracking = shipment.tracking
        if order.confirm_delivery:
            delivery = await await_shipped(ctx, tracking)
    ctx.memo["stage"] = "confirmed"
    return OrderResult(
        order_id=ctx.workflow_id,
        charged=order.amount,
        balance=balance,
        cart_total=cart_total,
        tracking=tracking,
        delivery=delivery,
    )


async def await_shipped(ctx: WorkflowContext, tracking: str) -> Literal["confirmed", "unconfirmed"]:
    """Wait for the carrier's callback; chase it once when late; then give up unconfirmed.

    A callback that came early (while the parcel was being booked) is kept and read by
    the first wait, so it wins at once.
    """
    ctx.memo["stage"] = "awaiting carrier"
    try:
        await ctx.wait_signal(shipped, timeout=CALLBACK_WAIT)
        return "confirmed"
    except WaitTimedOut:
        pass
    ctx.memo["stage"] = "chasing carrier"
    await ctx.run_local(chase_carrier, ctx.workflow_id, tracking)
    try:
        await ctx.wait_signal(shipped, timeout=CHASE_WAIT)
        return "confirmed"
    except WaitTimedOut:
        return "unconfirmed"


@order_saga.query
def stage(view: WorkflowView) -> str:
    """Where the order is: reserving, charging, confirming, shipping, awaiting carrier,
    chasing carrier, confirmed, or how it ended."""
    if view.status in ("running", "parked"):
        return str(view.memo.get("stage", "starting"))
    return view.status
