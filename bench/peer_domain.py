"""The shared W1-W3 workloads' domain (``../shared/bench/WORKLOADS.md``) in entityflow.

Accounts and inventory items exist from their first command (as a Restate Virtual Object
does), balances and stock are integers, and the order saga reserves, charges and
fulfils, compensating in reverse (refund, then release) when fulfilment fails.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from actors import Entity, Rejected, apply, query, update
from eventstore import DomainEvent
from sagas import Workflow, WorkflowContext

Amount = Annotated[int, Field(ge=0, le=10**12)]


class Balance(BaseModel):
    balance: int = 0


class Deposited(DomainEvent):
    amount: int


class Charged(DomainEvent):
    amount: int


class Refunded(DomainEvent):
    amount: int


class Account(Entity[Balance]):
    """Money in and out; a charge may not overdraw."""

    @update
    def deposit(self, amount: Amount) -> int:
        self.emit(Deposited(amount=amount))
        return self.state.balance

    @update
    def charge(self, amount: Amount) -> int:
        if amount > self.state.balance:
            raise Rejected("insufficient funds")
        self.emit(Charged(amount=amount))
        return self.state.balance

    @update
    def refund(self, amount: Amount) -> int:
        self.emit(Refunded(amount=amount))
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
    qty: int


class Reserved(DomainEvent):
    qty: int


class Released(DomainEvent):
    qty: int


class Inventory(Entity[Stock]):
    """Units on hand; a reservation may not exceed them."""

    @update
    def restock(self, qty: Amount) -> int:
        self.emit(Restocked(qty=qty))
        return self.state.stock

    @update
    def reserve(self, qty: Amount) -> int:
        if qty > self.state.stock:
            raise Rejected("out of stock")
        self.emit(Reserved(qty=qty))
        return self.state.stock

    @update
    def release(self, qty: Amount) -> int:
        self.emit(Released(qty=qty))
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


order_saga = Workflow("OrderSaga", input=Order, output=OrderOutcome)


@order_saga.run
async def run_order(ctx: WorkflowContext, order: Order) -> OrderOutcome:
    with ctx.compensation(Inventory, order.sku, "release", qty=order.qty):
        await ctx.call(Inventory, order.sku, "reserve", qty=order.qty)
    with ctx.compensation(Account, order.acct, "refund", amount=order.amount):
        await ctx.call(Account, order.acct, "charge", amount=order.amount)
    if order.fail:  # fulfilment, decided here until activities exist (a local side effect)
        raise FulfilmentError(f"order {order.order_id} could not be fulfilled")
    return OrderOutcome(order_id=order.order_id)


ENTITIES = (Account, Inventory)
WORKFLOWS = (order_saga,)
