"""Human approval with an escalation ladder, on the test kit's virtual clock (time skipping).

The refund example waits for its manager: reminded at 24 h, escalated to the finance lead
at 48 h, given up at 72 h. The environment jumps to each timer, so days pass in
milliseconds; what is asserted is the recorded history and the status readers see.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal

import pytest
from pydantic import BaseModel

from examples.shop import DOMAIN, Account, refund
from examples.shop.refunds import manager_approval
from sagas import (
    ApprovalDecision,
    Domain,
    InvalidWorkflowInputError,
    Workflow,
    WorkflowContext,
    WorkflowDefinitionError,
    escalate,
    give_up,
    remind,
    request_approval,
)
from sagas.approvals import Approval, check_ladder
from sagas.testing import WorkflowEnvironment

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with WorkflowEnvironment(DOMAIN) as environment:
        await environment.call(environment.client.update(Account.open, "acc", owner="Ada"))
        yield environment


def steps(env: WorkflowEnvironment, wid: str) -> list[str]:
    [info] = env.status(refund, wid).approvals
    return [s.split(" at ")[0] for s in info.steps]


def balance(env: WorkflowEnvironment) -> Decimal:
    return Decimal(env.client.query(Account.balance, "acc").result)


async def test_a_refund_nobody_answers_walks_every_rung_and_gives_up_in_milliseconds(
    env: WorkflowEnvironment,
) -> None:
    began = time.perf_counter()
    started_at = env.now()
    wid = await env.start(refund, {"account_id": "acc", "amount": "25.00"})
    status = await env.result(refund, wid)
    elapsed = time.perf_counter() - began
    assert status.result == {"status": "expired", "decided_by": None, "comment": ""}
    assert steps(env, wid) == ["requested", "remind", "escalate", "gave_up"]
    assert env.now() - started_at == timedelta(hours=72)
    [info] = status.approvals
    assert info.approvers == ["manager", "finance-lead"]
    assert not info.open
    assert balance(env) == 0
    assert elapsed < 1.0, f"three days of escalation took {elapsed:.2f}s of real time"


class Nothing(BaseModel):
    pass


month = Workflow("Month", input=Nothing, output=str)
ok = Approval(month, "ok")


@month.run
async def run_month(ctx: WorkflowContext, _: Nothing) -> str:
    verdict = await request_approval(
        ctx,
        ok,
        approvers=["ada"],
        ladder=[
            remind(timedelta(days=10)),
            escalate(timedelta(days=20), to=["grace"]),
            give_up(timedelta(days=30)),
        ],
    )
    return "gave up" if verdict.gave_up else "decided"


async def test_thirty_days_of_reminders_run_in_under_a_second() -> None:
    async with WorkflowEnvironment(Domain((), (month,))) as own:
        began = time.perf_counter()
        wid = await own.start(month, {})
        status = await own.result(month, wid)
        assert status.result == "gave up"
        assert time.perf_counter() - began < 1.0
        kinds = [e.event.kind for e in own.history(month, wid) if e.event_type == "wf.ApprovalStep"]  # type: ignore[attr-defined]
        assert kinds == ["requested", "remind", "escalate", "gave_up"]


async def test_an_approval_before_the_reminder_pays_the_refund(env: WorkflowEnvironment) -> None:
    wid = await env.start(refund, {"account_id": "acc", "amount": "25.00"})
    await env.sleep(timedelta(hours=23))
    decision = ApprovalDecision(approved=True, by="manager", comment="goodwill")
    await env.signal(manager_approval.signal, wid, decision)
    status = await env.result(refund, wid)
    assert status.result == {"status": "refunded", "decided_by": "manager", "comment": "goodwill"}
    assert steps(env, wid) == ["requested", "approved"]
    assert balance(env) == Decimal("25.00")
    assert [t.status for t in status.timers] == ["cancelled"]


async def test_the_finance_lead_may_decide_only_once_escalated(env: WorkflowEnvironment) -> None:
    wid = await env.start(refund, {"account_id": "acc", "amount": "10.00"})
    early = ApprovalDecision(approved=False, by="finance-lead", comment="too early")
    with pytest.raises(InvalidWorkflowInputError, match="may not decide approval 'manager'"):
        await env.signal(manager_approval.signal, wid, early)
    assert env.status(refund, wid).signals_received == 0  # nothing recorded
    await env.sleep(timedelta(hours=49))
    assert steps(env, wid) == ["requested", "remind", "escalate"]
    [info] = env.status(refund, wid).approvals
    assert info.next_at == info.since + timedelta(hours=72)
    await env.signal(manager_approval.signal, wid, early.model_copy(update={"comment": "no"}))
    status = await env.result(refund, wid)
    assert status.result == {"status": "refused", "decided_by": "finance-lead", "comment": "no"}
    assert balance(env) == 0


async def test_a_stranger_is_refused_and_nothing_is_recorded(env: WorkflowEnvironment) -> None:
    wid = await env.start(refund, {"account_id": "acc", "amount": "10.00"})
    before = len(env.history(refund, wid))
    with pytest.raises(InvalidWorkflowInputError, match="asked of manager"):
        await env.signal(
            manager_approval.signal, wid, ApprovalDecision(approved=True, by="mallory")
        )
    assert len(env.history(refund, wid)) == before


@pytest.mark.parametrize(
    ("approvers", "ladder", "message"),
    [
        ([], [], "at least one approver"),
        (["a"], [remind(timedelta(hours=2)), remind(timedelta(hours=1))], "must come after"),
        (["a"], [escalate(timedelta(hours=1), to=[])], "escalates to nobody"),
        (["a"], [give_up(timedelta(hours=1)), remind(timedelta(hours=2))], "last rung"),
    ],
)
def test_a_ladder_that_cannot_mean_what_it_says_is_refused(
    approvers: list[str], ladder: list[object], message: str
) -> None:
    with pytest.raises(WorkflowDefinitionError, match=message):
        check_ladder(approvers, ladder)  # type: ignore[arg-type]
