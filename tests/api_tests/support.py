"""A test entity that covers what the shop does not: a command that answers nothing, a
handler that crashes (dead letter), a query that changes its copy, list-typed query
arguments; and a test
workflow that waits for a signal (the order saga never does), with queries that take
arguments."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field

from actors import CommandContext, Entity, Rejected, apply, command, query
from eventstore import DomainEvent
from examples.shop import ACTIVITIES, ENTITIES, WORKFLOWS, Account
from sagas import (
    ActivityError,
    ApplicationError,
    Domain,
    RetryPolicy,
    Workflow,
    WorkflowContext,
    WorkflowView,
    activity,
    activity_info,
)


class GadgetState(BaseModel):
    count: int = 0
    notes: list[str] = Field(default_factory=list)


class Bumped(DomainEvent):
    event_type = "Bumped"
    by: int


class Noted(DomainEvent):
    event_type = "Noted"
    note: str


class Gadget(Entity[GadgetState]):
    """A counter with notes."""

    @command
    def note(
        self, ctx: CommandContext, text: Annotated[str, Field(min_length=1, max_length=100)]
    ) -> None:
        """Attach a note."""
        ctx.emit(Noted(note=text))

    @command
    def bump(self, ctx: CommandContext, by: Annotated[int, Field(ge=1, le=1000)] = 1) -> int:
        """Add to the count; returns the new count."""
        if self.state.count + by > 10_000:
            raise Rejected("the count may not exceed 10000")
        ctx.emit(Bumped(by=by))
        return self.state.count

    @command
    def explode(self, ctx: CommandContext) -> None:
        """A handler with a bug."""
        raise RuntimeError("boom")

    @query
    def count(self) -> int:
        return self.state.count

    @query
    def has_notes(self, texts: list[str]) -> list[bool]:
        """Which of the given notes are attached."""
        return [t in self.state.notes for t in texts]

    @query
    def sneaky(self) -> int:
        """A query with a bug: it changes the state it sees (a copy)."""
        self.state.count += 1
        return self.state.count

    @apply
    def _bumped(self, event: Bumped) -> None:
        self.state.count += event.by

    @apply
    def _noted(self, event: Noted) -> None:
        self.state.notes.append(event.note)


API_ENTITIES = (*ENTITIES, Gadget)


class TransferInput(BaseModel):
    source: Annotated[str, Field(min_length=1, max_length=100)]
    target: Annotated[str, Field(min_length=1, max_length=100)]
    amount: Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=2)]


class Approval(BaseModel):
    by: Annotated[str, Field(min_length=1, max_length=50)]


class TransferResult(BaseModel):
    approved_by: str
    amount: Decimal


transfer = Workflow(
    "Transfer",
    input=TransferInput,
    output=TransferResult,
    description="Hold the amount, wait for a person's approval, then pay it to the target.",
)
approve = transfer.signal("approve", Approval)
note = transfer.signal("note", Annotated[str, Field(min_length=1, max_length=100)])
nudge = transfer.signal("nudge")


@transfer.run
async def run_transfer(ctx: WorkflowContext, t: TransferInput) -> TransferResult:
    ctx.memo["stage"] = "holding"
    with ctx.compensation(Account.deposit, t.source, amount=t.amount):
        await ctx.call(Account.withdraw, t.source, amount=t.amount)
    ctx.memo["stage"] = "waiting"
    approval = await ctx.wait_signal(approve)
    ctx.memo["stage"] = "paying"
    ctx.memo["approved_by"] = approval.by
    await ctx.call(Account.deposit, t.target, amount=t.amount)
    ctx.memo["stage"] = "paid"
    return TransferResult(approved_by=approval.by, amount=t.amount)


def _not_shouting(view: WorkflowView, text: str) -> None:
    if text.isupper():
        raise ValueError("no shouting in remarks")


@transfer.update(validator=_not_shouting)
def remark(view: WorkflowView, text: Annotated[str, Field(min_length=1, max_length=100)]) -> int:
    """Add a remark to the transfer; returns how many it has."""
    view.memo.setdefault("remarks", []).append(text)
    return len(view.memo["remarks"])


@transfer.query
def stage(view: WorkflowView) -> str:
    """Where the transfer is: holding, waiting, paying, paid (or how it ended)."""
    if view.status in ("running", "parked"):
        return str(view.memo.get("stage", "starting"))
    return view.status


@transfer.query
def memo_value(view: WorkflowView, key: str, default: str = "-") -> str:
    """One value the transfer noted (``default`` when it has none)."""
    return str(view.memo.get(key, default))


# -- an activity, retried once -----------------------------------------------------------


@activity
def send_receipt(email: str) -> str:
    """Busy on its first attempt; an address without "@" is refused for good."""
    if "@" not in email:
        raise ApplicationError(f"{email!r} is no address", type="BadAddress", non_retryable=True)
    if activity_info().attempt == 1:
        raise ConnectionError("the mail server is busy")
    return f"sent to {email}"


class ReceiptInput(BaseModel):
    email: Annotated[str, Field(min_length=1, max_length=200)]


receipt = Workflow("Receipt", input=ReceiptInput, output=str)


@receipt.run
async def run_receipt(ctx: WorkflowContext, r: ReceiptInput) -> str:
    mail = send_receipt.options(retry=RetryPolicy(attempts=3, initial_interval=0.05))
    try:
        return await ctx.execute_activity(mail, r.email)
    except ActivityError as exc:
        return f"not sent: {exc.error_type}"


# -- a saga whose compensation can fail (for repair) -----------------------------------


class PayoutInput(BaseModel):
    account_id: Annotated[str, Field(min_length=1, max_length=100)]
    amount: Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=2)]


payout = Workflow("Payout", input=PayoutInput, output=str)
payout_go = payout.signal("go")


@payout.run
async def run_payout(ctx: WorkflowContext, p: PayoutInput) -> str:
    """Withdraw, wait for ``go``, then a step that is refused: the withdrawal is undone,
    twice at most (an account closed meanwhile refuses it, and the saga fails)."""
    undo = Account.deposit.options(retry=RetryPolicy(attempts=2, initial_interval=0.05))
    with ctx.compensation(undo, p.account_id, amount=p.amount):
        await ctx.call(Account.withdraw, p.account_id, amount=p.amount)
    await ctx.wait_signal(payout_go)
    await ctx.call(Account.withdraw, p.account_id, amount=Decimal("1000000"))
    return "paid"


API_WORKFLOWS = (*WORKFLOWS, transfer, receipt, payout)
API_DOMAIN = Domain(API_ENTITIES, API_WORKFLOWS, activities=[*ACTIVITIES, send_receipt])
