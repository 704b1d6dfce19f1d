"""A refund that a person must approve, with an escalation ladder.

The support agent's refund waits for a manager. After a day without an answer the
manager is reminded; after two days the finance lead may decide too; after three days
the request is given up and nothing is paid. Each step is in the workflow's history and
``GET /approvals`` lists the open request with who is asked and when it escalates next.
The decision comes over HTTP as the workflow's ``manager`` signal::

    POST /workflows/Refund/{id}/signals/manager
    {"approved": true, "by": "manager", "comment": "goodwill"}
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from examples.shop.accounts import Account, Money
from sagas import (
    Approval,
    Workflow,
    WorkflowContext,
    escalate,
    give_up,
    remind,
    request_approval,
)

Id = Annotated[str, Field(min_length=1, max_length=100)]
LADDER = [
    remind(timedelta(hours=24)),
    escalate(timedelta(hours=48), to=["finance-lead"]),
    give_up(timedelta(hours=72)),
]


class RefundInput(BaseModel):
    account_id: Id
    amount: Money
    reason: str = Field(default="", max_length=500)


class RefundResult(BaseModel):
    status: Literal["refunded", "refused", "expired"]
    decided_by: str | None = None
    comment: str = ""


refund = Workflow("Refund", input=RefundInput, output=RefundResult)
manager_approval = Approval(refund, "manager")


@refund.run
async def run_refund(ctx: WorkflowContext, r: RefundInput) -> RefundResult:
    verdict = await request_approval(ctx, manager_approval, approvers=["manager"], ladder=LADDER)
    if verdict.gave_up:
        return RefundResult(status="expired")
    if not verdict.approved:
        return RefundResult(status="refused", decided_by=verdict.by, comment=verdict.comment)
    await ctx.call(Account.deposit, r.account_id, amount=r.amount)
    return RefundResult(status="refunded", decided_by=verdict.by, comment=verdict.comment)
