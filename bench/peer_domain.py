"""The shared W1-W3 workloads' domain (``../shared/bench/WORKLOADS.md``) in entityflow.

Accounts and inventory items exist from their first command (as a Restate Virtual Object
does), balances and stock are integers, and the order saga reserves, charges and
fulfils, compensating in reverse (refund, then release) when fulfilment fails.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from actors import CommandContext, Entity, Rejected, apply, command, query
from eventstore import DomainEvent
from sagas import ActivityError, ApplicationError, Workflow, WorkflowContext, activity

Amount = Annotated[int, Field(ge=0, le=10**12)]


class Balance(BaseModel):
    balance: int = 0


class Deposited(DomainEvent):
    event_type = "Deposited"
    amount: int


class Charged(DomainEvent):
    event_type = "Charged"
    amount: int


class Refunded(DomainEvent):
    event_type = "Refunded"
    amount: int


class Account(Entity[Balance]):
    """Money in and out; a charge may not overdraw."""

    @command
    def deposit(self, ctx: CommandContext, amount: Amount) -> int:
        ctx.emit(Deposited(amount=amount))
        return self.state.balance

    @command
    def charge(self, ctx: CommandContext, amount: Amount) -> int:
        if amount > self.state.balance:
            raise Rejected("insufficient funds")
        ctx.emit(Charged(amount=amount))
        return self.state.balance

    @command
    def refund(self, ctx: CommandContext, amount: Amount) -> int:
        ctx.emit(Refunded(amount=amount))
        return self.state.balance

    @query
    def balance(self) -> int:
        return self.state.balance

    @apply
    def _deposited(self, event: Deposited) -> None:
        self.state.balance += event.amount

    @apply
    def _charged(self, event: Charged) -> None:
        self.state.balance -= event.amount

    @apply
    def _refunded(self, event: Refunded) -> None:
        self.state.balance += event.amount


class Stock(BaseModel):
    stock: int = 0


class Restocked(DomainEvent):
    event_type = "Restocked"
    qty: int


class Reserved(DomainEvent):
    event_type = "Reserved"
    qty: int


class Released(DomainEvent):
    event_type = "Released"
    qty: int


class Inventory(Entity[Stock]):
    """Units on hand; a reservation may not exceed them."""

    @command
    def restock(self, ctx: CommandContext, qty: Amount) -> int:
        ctx.emit(Restocked(qty=qty))
        return self.state.stock

    @command
    def reserve(self, ctx: CommandContext, qty: Amount) -> int:
        if qty > self.state.stock:
            raise Rejected("out of stock")
        ctx.emit(Reserved(qty=qty))
        return self.state.stock

    @command
    def release(self, ctx: CommandContext, qty: Amount) -> int:
        ctx.emit(Released(qty=qty))
        return self.state.stock

    @query
    def stock(self) -> int:
        return self.state.stock

    @apply
    def _restocked(self, event: Restocked) -> None:
        self.state.stock += event.qty

    @apply
    def _reserved(self, event: Reserved) -> None:
        self.state.stock -= event.qty

    @apply
    def _released(self, event: Released) -> None:
        self.state.stock += event.qty


class Order(BaseModel):
    order_id: str
    sku: str
    acct: str
    qty: Amount
    amount: Amount
    fail: bool = False


class OrderOutcome(BaseModel):
    order_id: str


class FulfilmentError(Exception):
    """The order could not be fulfilled: the saga compensates."""


@activity
def fulfil(order_id: str, fail: bool) -> str:
    """The fulfilment side effect, run as a local activity: Restate's W3 runs it as a
    journaled ``ctx.run``, whose entityflow equivalent is ``ctx.run_local`` (recorded,
    never run again on replay), not a task through the activity topic."""
    if fail:
        raise ApplicationError(
            f"order {order_id} could not be fulfilled", type="Unfulfillable", non_retryable=True
        )
    return order_id


order_saga = Workflow("OrderSaga", input=Order, output=OrderOutcome)


@order_saga.run
async def run_order(ctx: WorkflowContext, order: Order) -> OrderOutcome:
    with ctx.compensation(Inventory.release, order.sku, qty=order.qty):
        await ctx.call(Inventory.reserve, order.sku, qty=order.qty)
    with ctx.compensation(Account.refund, order.acct, amount=order.amount):
        await ctx.call(Account.charge, order.acct, amount=order.amount)
    try:
        await ctx.run_local(fulfil, order.order_id, order.fail)
    except ActivityError as exc:
        raise FulfilmentError(exc.reason) from exc
    return OrderOutcome(order_id=order.order_id)


ENTITIES = (Account, Inventory)
WORKFLOWS = (order_saga,)
ACTIVITIES = (fulfil,)
