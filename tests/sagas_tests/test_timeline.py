"""The saga timeline built from real histories: executions run in-process on a virtual
clock, then their histories are laid out and checked entry by entry (order, attempts,
errors, durations, compensations, what is still open)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from actors import RetryPolicy
from eventstore import RecordedEvent
from examples.shop import ENTITIES, Account
from sagas import (
    Approval,
    ApprovalDecision,
    Domain,
    Workflow,
    WorkflowContext,
    activity,
    activity_info,
    escalate,
    give_up,
    request_approval,
)
from sagas.testing import DEFAULT_START, WorkflowEnvironment
from sagas.timeline import build_timeline
from sagas.timeline_models import Timeline, TimelineEntry

pytestmark = pytest.mark.anyio


@activity
def book_hotel(city: str) -> str:
    """Busy twice, then books."""
    attempt = activity_info().attempt
    if attempt < 3:
        raise ConnectionError(f"the hotel desk is busy (attempt {attempt})")
    return f"booked in {city}"


class TripInput(BaseModel):
    account: str
    city: str
    price: Decimal


trip = Workflow("Trip", input=TripInput, output=str)
go = trip.signal("go", str)


@trip.run
async def run_trip(ctx: WorkflowContext, t: TripInput) -> str:
    ctx.memo["stage"] = "paying"
    with ctx.compensation(Account.deposit, t.account, amount=t.price):
        await ctx.call(Account.withdraw, t.account, amount=t.price)
    ctx.memo["stage"] = "booking"
    hotel = book_hotel.options(retry=RetryPolicy(attempts=3, initial_interval=2.0))
    await ctx.execute_activity(hotel, t.city)
    ctx.memo["stage"] = "resting"
    await ctx.sleep(timedelta(hours=1))
    ctx.memo["stage"] = "waiting"
    word = await ctx.wait_signal(go, timeout=timedelta(days=1))
    ctx.memo["stage"] = f"extras ({word})"
    extras = Account.withdraw.options(
        retry=RetryPolicy(attempts=2, initial_interval=5.0, retry_rejected=True)
    )
    await ctx.call(extras, t.account, amount=Decimal("1000"))  # refused twice: compensate
    return "never"


class RefundInput(BaseModel):
    account: str


refund = Workflow("TimelineRefund", input=RefundInput, output=str)
approval = Approval(refund, "manager")


@refund.run
async def run_refund(ctx: WorkflowContext, r: RefundInput) -> str:
    decision = await request_approval(
        ctx,
        approval,
        approvers=["manager"],
        ladder=[escalate(timedelta(hours=2), to=["boss"]), give_up(timedelta(hours=5))],
    )
    return "approved" if decision.approved else "rejected"


@activity
def stamp(key: str) -> int:
    """A local activity: jammed on its first attempt."""
    if activity_info().attempt == 1:
        raise ConnectionError("the stamp machine is jammed")
    return 7


class LabelInput(BaseModel):
    minutes: int


label = Workflow("Label", input=LabelInput, output=str)


@label.run
async def run_label(ctx: WorkflowContext, i: LabelInput) -> str:
    await ctx.sleep(timedelta(minutes=i.minutes))
    return f"label {ctx.workflow_id}"


class ParcelInput(BaseModel):
    account: str


parcel = Workflow("Parcel", input=ParcelInput, output=str)


@parcel.run
async def run_parcel(ctx: WorkflowContext, p: ParcelInput) -> str:
    if ctx.patched("labels"):
        ctx.memo["labels"] = True
    stamped = stamp.options(retry=RetryPolicy(attempts=3, initial_interval=3.0))
    await ctx.run_local(stamped, "k")
    await ctx.child(label, LabelInput(minutes=10))
    hopeless = Account.withdraw.options(retry=RetryPolicy(attempts=2, initial_interval=1.0))
    ctx.add_compensation(hopeless, p.account, amount=Decimal("1000"))
    raise RuntimeError("the truck is full")


DOMAIN = Domain(ENTITIES, [trip, refund, parcel, label], activities=[book_hotel, stamp])


def entry(timeline: Timeline, ident: str) -> TimelineEntry:
    found = [e for e in timeline.entries if e.id == ident]
    assert len(found) == 1, [e.id for e in timeline.entries]
    return found[0]


async def _trip(env: WorkflowEnvironment, signal: str | None) -> tuple[str, list[RecordedEvent]]:
    await env.call(env.client.update(Account.open, "acct-1", owner="Ada"))
    await env.call(env.client.update(Account.deposit, "acct-1", amount=Decimal("50")))
    wid = await env.start(trip, TripInput(account="acct-1", city="Oslo", price=Decimal("20")))
    if signal is not None:
        await env.sleep(timedelta(hours=2))
        await env.signal(go, wid, signal)
    return wid, env.history(trip, wid)


async def test_a_compensated_saga_on_the_time_axis() -> None:
    async with WorkflowEnvironment(DOMAIN) as env:
        wid, _ = await _trip(env, "<b>now</b>")
        status = await env.result(trip, wid)
        assert status.status == "compensated"
        timeline = build_timeline(env.history(trip, wid), memo={"stage": "x"})

    signal = timeline.entries[5]
    assert [e.id for e in timeline.entries] == [
        "started",
        "step-1",
        "activity-2",
        "timer-3",
        "timer-4",
        f"signal-v{signal.first_version}",
        "step-5",
        "compensating",
        "compensation-6",
        "compensated",
    ]
    assert [e.kind for e in timeline.entries] == [
        "workflow",
        "step",
        "activity",
        "timer",
        "timer",
        "signal",
        "step",
        "workflow",
        "compensation",
        "workflow",
    ]
    # the first step: one attempt, applied at once (the virtual clock did not move)
    pay = entry(timeline, "step-1")
    assert (pay.name, pay.status, pay.guards) == ("Account/acct-1.withdraw", "applied", [1])
    assert [a.status for a in pay.attempts] == ["applied"]
    assert pay.duration_seconds == 0.0
    assert pay.detail["args"] == {"amount": "20"}

    # the activity failed twice, each attempt with its error, and waited 2 s then 4 s
    hotel = entry(timeline, "activity-2")
    assert (hotel.name, hotel.status) == ("book_hotel", "applied")
    assert [a.attempt for a in hotel.attempts] == [1, 2, 3]
    assert [a.status for a in hotel.attempts] == ["rejected", "rejected", "applied"]
    assert [a.error for a in hotel.attempts] == [
        "ConnectionError: the hotel desk is busy (attempt 1)",
        "ConnectionError: the hotel desk is busy (attempt 2)",
        None,
    ]
    assert [a.code for a in hotel.attempts] == ["ConnectionError", "ConnectionError", None]
    waits = [
        (later.started_at - earlier.ended_at).total_seconds()  # type: ignore[operator]
        for earlier, later in zip(hotel.attempts, hotel.attempts[1:], strict=False)
    ]
    assert waits == [2.0, 4.0]
    assert hotel.duration_seconds == 6.0
    assert hotel.detail["result"] == "booked in Oslo"
    assert hotel.error is None

    # the sleep lasted its hour; the signal's timeout lost the race and was cancelled
    rest = entry(timeline, "timer-3")
    assert (rest.name, rest.status, rest.duration_seconds) == ("sleep", "fired", 3600.0)
    assert rest.start == DEFAULT_START + timedelta(seconds=6)
    timeout = entry(timeline, "timer-4")
    assert (timeout.name, timeout.status) == ("timeout of signal go", "cancelled")
    assert (signal.name, signal.status, signal.detail) == (
        "go",
        "received",
        {"payload": "<b>now</b>"},
    )
    assert signal.start == timeout.end

    # the refused step: two attempts, both refused, 5 s apart; then the compensation
    extras = entry(timeline, "step-5")
    assert extras.status == "rejected"
    assert [(a.attempt, a.status) for a in extras.attempts] == [(1, "rejected"), (2, "rejected")]
    assert extras.error == "insufficient funds: balance 30, asked 1000"
    assert extras.duration_seconds == 5.0
    assert entry(timeline, "compensating").error == (
        f"step 5 Account/acct-1.withdraw was rejected after 2 attempts: {extras.error}"
    )
    undo = entry(timeline, "compensation-6")
    assert (undo.name, undo.compensation, undo.status) == ("Account/acct-1.deposit", 1, "applied")
    assert undo.start >= extras.end  # type: ignore[operator]

    assert timeline.status == "compensated"
    assert timeline.ended_at == entry(timeline, "compensated").start
    assert timeline.compensations_pending == []
    assert [c.status for c in timeline.compensations] == ["done"]
    assert timeline.waiting_on == []
    assert timeline.memo == {"stage": "x"}
    starts = [e.start for e in timeline.entries]
    assert starts == sorted(starts)
    versions = [e.first_version for e in timeline.entries]
    assert versions == sorted(versions)


async def test_an_execution_waiting_shows_what_it_waits_on_and_what_it_would_undo() -> None:
    async with WorkflowEnvironment(DOMAIN) as env:
        wid, _ = await _trip(env, None)
        await env.sleep(timedelta(hours=1, seconds=10))  # the sleep fires; the wait begins
        timeline = build_timeline(env.history(trip, wid))
    assert timeline.status == "running"
    assert timeline.ended_at is None
    open_entries = [e for e in timeline.entries if e.end is None]
    assert [e.id for e in open_entries] == ["timer-4"]
    assert open_entries[0].duration_seconds is None
    due = DEFAULT_START + timedelta(days=1, hours=1, seconds=6)
    assert timeline.waiting_on == [f"timer #4 (timeout of signal go) due {due.isoformat()}"]
    assert timeline.compensations_pending == ["#1 Account/acct-1.deposit"]
    assert timeline.memo is None


async def test_an_approval_with_its_ladder_and_decision() -> None:
    async with WorkflowEnvironment(DOMAIN) as env:
        await env.call(env.client.update(Account.open, "acct-2", owner="Ada"))
        wid = await env.start(refund, RefundInput(account="acct-2"))
        await env.sleep(timedelta(hours=3))
        decision = ApprovalDecision(approved=False, by="boss", comment="<no>")
        await env.signal(approval.signal, wid, decision)
        status = await env.result(refund, wid)
        assert status.result == "rejected"
        timeline = build_timeline(env.history(refund, wid))
    (asked,) = [e for e in timeline.entries if e.kind == "approval"]
    assert asked.status == "rejected"
    assert [s["kind"] for s in asked.detail["steps"]] == ["requested", "escalate", "rejected"]
    assert asked.detail["steps"][-1]["by"] == "boss"
    assert asked.detail["steps"][-1]["comment"] == "<no>"
    assert asked.duration_seconds == 3 * 3600.0
    assert asked.detail["approvers"] == ["manager", "boss"]
    timers = [e for e in timeline.entries if e.kind == "timer"]
    assert [t.status for t in timers][-1] == "cancelled"  # the give-up rung never came
    assert timeline.status == "completed"
    assert timeline.result == "rejected"


async def test_a_patch_a_local_activity_a_child_and_a_compensation_that_fails() -> None:
    async with WorkflowEnvironment(DOMAIN) as env:
        await env.call(env.client.update(Account.open, "acct-3", owner="Ada"))
        wid = await env.start(parcel, ParcelInput(account="acct-3"))
        status = await env.result(parcel, wid)
        assert status.status == "failed"
        timeline = build_timeline(env.history(parcel, wid))
    assert [e.id for e in timeline.entries] == [
        "started",
        "patch-v2",  # ctx.patched may be asked twice with one id: the version tells them apart
        "local_activity-1",
        "timer-2",
        "child-3",
        "compensating",
        "compensation-4",
        "failed",
    ]
    assert entry(timeline, "patch-v2").name == "labels"
    local = entry(timeline, "local_activity-1")
    assert (local.name, local.status, local.duration_seconds) == ("stamp", "applied", 3.0)
    assert [(a.attempt, a.status, a.code) for a in local.attempts] == [
        (1, "failed", "ConnectionError"),
        (2, "applied", None),
    ]
    assert local.attempts[0].error == "ConnectionError: the stamp machine is jammed"
    assert local.detail == {"result": 7}
    wait = entry(timeline, "timer-2")
    assert (wait.name, wait.status, wait.end) == (
        "retry of local activity stamp",
        "fired",
        local.attempts[1].started_at,
    )
    child = entry(timeline, "child-3")
    assert child.name == f"Label/{wid}-3"
    assert (child.status, child.duration_seconds) == ("completed", 600.0)
    assert child.detail["result"] == f"label {wid}-3"
    assert entry(timeline, "compensating").error == "RuntimeError: the truck is full"
    undo = entry(timeline, "compensation-4")
    assert (undo.status, undo.compensation, len(undo.attempts)) == ("rejected", 1, 2)
    assert undo.error == "insufficient funds: balance 0, asked 1000"
    assert timeline.status == "failed"
    assert timeline.failed_compensation == "Account/acct-3.withdraw"
    assert timeline.compensations_pending == ["#1 Account/acct-3.withdraw"]
    assert [c.status for c in timeline.compensations] == ["failed"]
    assert timeline.error is not None and timeline.error.startswith("compensation #1")
    assert timeline.ended_at == entry(timeline, "failed").start
    assert timeline.waiting_on == []


def test_an_empty_history_has_no_timeline() -> None:
    empty: list[Any] = []
    with pytest.raises(ValueError, match="not started"):
        build_timeline(empty)
