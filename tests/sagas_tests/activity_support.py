"""Activities and workflows for the activity tests: flaky, declining, slow, resumable.

What an activity did is counted in ``CALLS`` (per test, by an id in its arguments), the
way a test would look at the outside system an activity talks to.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from examples.shop import Account
from sagas import (
    ActivityCancelledError,
    ActivityError,
    ApplicationError,
    RetryPolicy,
    Workflow,
    WorkflowContext,
    activity,
    activity_info,
    heartbeat,
)

FAST = RetryPolicy(attempts=4, initial_interval=0.02, backoff=2.0, max_interval=0.1)

CALLS: Counter[str] = Counter()
KEYS: dict[str, set[str]] = {}
RESUMED_FROM: dict[str, Any] = {}
CANCELLED_SEEN: set[str] = set()
_lock = threading.Lock()


def _count(tag: str) -> int:
    with _lock:
        CALLS[tag] += 1
        KEYS.setdefault(tag, set()).add(activity_info().idempotency_key)
        return CALLS[tag]


class Receipt(BaseModel):
    card: str
    amount: Decimal
    attempt: int


@activity
def charge_card(card: str, amount: Decimal, fail_first: int = 0) -> Receipt:
    """Fails its first ``fail_first`` attempts as a flaky payment API would."""
    n = _count(card)
    if n <= fail_first:
        raise ConnectionError(f"payment API unreachable (attempt {n})")
    return Receipt(card=card, amount=amount, attempt=activity_info().attempt)


@activity(name="decline")
def decline_card(card: str) -> None:
    _count(card)
    raise ApplicationError("card declined", type="CardDeclined", non_retryable=True)


@activity
def sleep_for(tag: str, seconds: float) -> str:
    _count(tag)
    time.sleep(seconds)
    return "woke"


@activity
async def async_greeting(name: str) -> str:
    await asyncio.sleep(0.01)
    return f"hello {name}"


@activity
def count_to(tag: str, items: int, crash_at: int = -1) -> int:
    """Heartbeats its progress; a retry starts where the last attempt reported."""
    _count(tag)
    start = activity_info().heartbeat_details or 0
    RESUMED_FROM[tag] = start
    for i in range(start, items):
        if i == crash_at and activity_info().attempt == 1:
            time.sleep(1.2)  # let the throttled heartbeat of ``i`` go out first
            heartbeat(i)
            raise RuntimeError(f"crashed at item {i}")
        heartbeat(i)
    return items


@activity
def wait_for_cancel(tag: str, seconds: float) -> str:
    """Works (heartbeating) for ``seconds`` unless its workflow is cancelled first."""
    _count(tag)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            heartbeat()
            time.sleep(0.05)
    except ActivityCancelledError:
        CANCELLED_SEEN.add(tag)
        raise
    return "finished"


class PayInput(BaseModel):
    card: str
    amount: Decimal = Decimal("9.99")
    fail_first: int = 0
    attempts: int = 4


pay = Workflow("Pay", input=PayInput, output=dict[str, Any])


@pay.run
async def run_pay(ctx: WorkflowContext, p: PayInput) -> dict[str, Any]:
    charge = charge_card.options(retry=FAST.model_copy(update={"attempts": p.attempts}))
    try:
        receipt = await ctx.execute_activity(charge, p.card, p.amount, fail_first=p.fail_first)
    except ActivityError as exc:
        return {"failed": exc.error_type, "attempts": exc.attempts, "reason": exc.reason}
    return {"receipt": receipt.model_dump(mode="json"), "is_receipt": isinstance(receipt, Receipt)}


patient = Workflow("Patient", input=PayInput, output=dict[str, Any])


@patient.run
async def run_patient(ctx: WorkflowContext, p: PayInput) -> dict[str, Any]:
    """A retry that waits 30 s: long enough to look at a step between two attempts."""
    slow = charge_card.options(retry=RetryPolicy(attempts=2, initial_interval=30.0))
    receipt = await ctx.execute_activity(slow, p.card, p.amount, fail_first=p.fail_first)
    return receipt.model_dump(mode="json")


class TagInput(BaseModel):
    tag: str
    seconds: float = 0.0
    items: int = 0
    crash_at: int = -1


declined = Workflow("Declined", input=TagInput, output=dict[str, Any])


@declined.run
async def run_declined(ctx: WorkflowContext, t: TagInput) -> dict[str, Any]:
    try:
        await ctx.execute_activity(decline_card.options(retry=FAST), t.tag)
    except ActivityError as exc:
        return {"type": exc.error_type, "non_retryable": exc.non_retryable, "n": exc.attempts}
    return {"type": None}


sleepy = Workflow("Sleepy", input=TagInput, output=dict[str, Any])


@sleepy.run
async def run_sleepy(ctx: WorkflowContext, t: TagInput) -> dict[str, Any]:
    once = sleep_for.options(
        retry=RetryPolicy(attempts=2, initial_interval=0.02), start_to_close=0.5
    )
    try:
        await ctx.execute_activity(once, t.tag, t.seconds)
    except ActivityError as exc:
        return {"timed_out": exc.timed_out, "attempts": exc.attempts, "reason": exc.reason}
    return {"timed_out": False}


queued = Workflow("Queued", input=TagInput, output=dict[str, Any])


@queued.run
async def run_queued(ctx: WorkflowContext, t: TagInput) -> dict[str, Any]:
    """Waits at most ``seconds`` for a worker to take each attempt (two attempts)."""
    waiting = sleep_for.options(
        retry=RetryPolicy(attempts=2, initial_interval=0.02), schedule_to_start=t.seconds
    )
    try:
        return {"result": await ctx.execute_activity(waiting, t.tag, 0.0)}
    except ActivityError as exc:
        return {"timeout": exc.timeout, "type": exc.error_type, "attempts": exc.attempts}


class GreetInput(BaseModel):
    name: str


greet = Workflow("Greet", input=GreetInput, output=str)


@greet.run
async def run_greet(ctx: WorkflowContext, g: GreetInput) -> str:
    return await ctx.execute_activity(async_greeting, g.name)


progress = Workflow("Progress", input=TagInput, output=int)


@progress.run
async def run_progress(ctx: WorkflowContext, t: TagInput) -> int:
    counting = count_to.options(
        retry=RetryPolicy(attempts=3, initial_interval=0.02), heartbeat_timeout=5
    )
    return await ctx.execute_activity(counting, t.tag, t.items, crash_at=t.crash_at)


class RefundInput(BaseModel):
    tag: str
    account: str


refundable = Workflow("Refundable", input=RefundInput, output=str)


@refundable.run
async def run_refundable(ctx: WorkflowContext, r: RefundInput) -> str:
    with ctx.compensation(Account.deposit, r.account, amount=Decimal(5)):
        await ctx.call(Account.withdraw, r.account, amount=Decimal(5))
    working = wait_for_cancel.options(heartbeat_timeout=5)
    return await ctx.execute_activity(working, r.tag, 30.0)


ACTIVITIES = (charge_card, decline_card, sleep_for, async_greeting, count_to, wait_for_cancel)
ACTIVITY_WORKFLOWS = (pay, patient, declined, sleepy, queued, greet, progress, refundable)
