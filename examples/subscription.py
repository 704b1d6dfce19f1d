"""A subscription that bills every month for as long as the customer stays: years.

One execution per subscription, ``workflow:Subscription/<customer>``. Each run bills
``months_per_run`` months (a durable ``ctx.sleep`` of 30 days, then a charge to the
customer's :class:`Billing` entity) and then continues as new with what it learned (the
months billed, the current price), so its history is never longer than one run's,
however many years it lives. A price change may come at any time as a signal; one that
arrives while a run is handing over is read by the next run.

Run it with ``entityflow worker --domain examples.subscription`` beside your API, or
in-process as ``tests/sagas_tests/test_continue_as_new.py`` does.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, Field

from actors import CommandContext, Entity, Rejected, apply, command, query
from eventstore import DomainEvent
from sagas import Domain, WaitTimedOut, Workflow, WorkflowContext, WorkflowView

MONTH = timedelta(days=30)


class BillingState(BaseModel):
    months: list[int] = []
    charged: int = 0


class Charged(DomainEvent):
    event_type = "Charged"
    month: int
    amount: int


class Billing(Entity[BillingState]):
    """What one customer was charged, month by month (a month is charged once)."""

    @command
    def charge(
        self,
        ctx: CommandContext,
        month: Annotated[int, Field(ge=1)],
        amount: Annotated[int, Field(gt=0)],
    ) -> int:
        """Charge one month (in cents); returns the total charged so far."""
        if month in self.state.months:
            raise Rejected(f"month {month} is already charged")
        ctx.emit(Charged(month=month, amount=amount))
        return self.state.charged

    @query
    def total(self) -> int:
        return self.state.charged

    @query
    def months(self) -> list[int]:
        return list(self.state.months)

    @apply
    def _charged(self, event: Charged) -> None:
        self.state.months.append(event.month)
        self.state.charged += event.amount


class SubscriptionInput(BaseModel):
    customer: str = Field(min_length=1, max_length=200)
    price: int = Field(gt=0, description="cents a month")
    billed: int = Field(0, ge=0, description="months billed by the runs before this one")
    months: int | None = Field(None, ge=1, description="end after this many months")
    months_per_run: int = Field(12, ge=1, le=120)


subscription = Workflow("Subscription", input=SubscriptionInput, output=int)
change_price = subscription.signal("change_price", int)


@subscription.run
async def run(ctx: WorkflowContext, sub: SubscriptionInput) -> int:
    price, billed = sub.price, sub.billed
    ctx.memo.update(billed=billed, price=price)
    for _ in range(sub.months_per_run):
        if sub.months is not None and billed >= sub.months:
            return billed
        due = ctx.now() + MONTH
        while True:  # price changes until the month is over
            try:
                price = await ctx.wait_signal(change_price, timeout=due - ctx.now())
            except WaitTimedOut:
                break
        await ctx.call(Billing.charge, sub.customer, month=billed + 1, amount=price)
        billed += 1
        ctx.memo.update(billed=billed, price=price)
    return await ctx.continue_as_new(sub.model_copy(update={"price": price, "billed": billed}))


@subscription.query
def billed(view: WorkflowView) -> int:
    return int(view.memo.get("billed", 0))


DOMAIN = Domain([Billing], workflows=[subscription])

__all__ = [
    "DOMAIN",
    "Billing",
    "Charged",
    "SubscriptionInput",
    "billed",
    "change_price",
    "run",
    "subscription",
]
