"""Local activities (``ctx.run_local``): run inline on the coordinator's worker, recorded
before the code goes on, never run again on replay, retried after a durable timer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import BaseModel

from sagas import (
    ActivityError,
    ApplicationError,
    RetryPolicy,
    Workflow,
    WorkflowContext,
    activity,
    replay,
)
from tests.sagas_tests.conftest import Shop, ShopFactory
from tests.sagas_tests.test_timers import ManualClock, until

pytestmark = pytest.mark.anyio

CALLS: dict[str, int] = {}


@activity
def reserve_number(key: str, fail_times: int = 0) -> int:
    CALLS[key] = CALLS.get(key, 0) + 1
    if CALLS[key] <= fail_times:
        raise ConnectionError(f"number service busy (call {CALLS[key]})")
    return 1000 + CALLS[key]


@activity
async def refuse(key: str) -> int:
    CALLS[key] = CALLS.get(key, 0) + 1
    raise ApplicationError("no numbers left", type="Exhausted", non_retryable=True)


class LocalInput(BaseModel):
    key: str
    fail_times: int = 0


numbered = Workflow("Numbered", input=LocalInput, output=str)


@numbered.run
async def run_numbered(ctx: WorkflowContext, i: LocalInput) -> str:
    quick = reserve_number.options(retry=RetryPolicy(attempts=3, initial_interval=5))
    number = await ctx.run_local(quick, i.key, fail_times=i.fail_times)
    try:
        await ctx.run_local(refuse, f"{i.key}-refused")
    except ActivityError as exc:
        return f"number {number}; then {exc.error_type} after {exc.attempts} attempt(s)"
    return f"number {number}"


@pytest.fixture(autouse=True)
def fresh_calls() -> None:
    CALLS.clear()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def shop(make_shop: ShopFactory, clock: ManualClock) -> Shop:
    return make_shop(workflows=[numbered], clock=clock)


def history_types(shop: Shop, wid: str) -> list[str]:
    return [e.event_type for e in shop.workflows.history(numbered, wid)]


async def test_a_local_activity_runs_once_and_is_recorded_before_the_code_goes_on(
    shop: Shop,
) -> None:
    shop.workflows.start(numbered, {"key": "l1"}, workflow_id="l1")
    status = await shop.workflows.wait(numbered, "l1")
    assert status.result == "number 1001; then Exhausted after 1 attempt(s)"
    assert CALLS["l1"] == 1
    assert CALLS["l1-refused"] == 1  # non-retryable: not tried again
    assert history_types(shop, "l1")[:3] == [
        "wf.Started",
        "wf.LocalActivityRan",
        "wf.LocalActivityRan",
    ]
    address = numbered.address("l1")
    engine = replay(numbered, address, shop.host.store.load(address).events)
    assert engine.result == status.result
    assert CALLS["l1"] == 1  # the replay read the result from the history


async def test_a_failed_attempt_is_retried_after_a_durable_timer(
    shop: Shop, clock: ManualClock
) -> None:
    shop.workflows.start(numbered, {"key": "l2", "fail_times": 2}, workflow_id="l2")
    await until(lambda: CALLS.get("l2") == 1, "the first attempt")
    # The attempt runs while its batch is processed; its retry timer exists once it commits.
    await until(lambda: bool(shop.host.store.timers("workflow:Numbered/l2")), "the retry timer")
    [row] = shop.host.store.timers("workflow:Numbered/l2")
    assert row.due_at == clock.now + timedelta(seconds=5)
    clock.advance(timedelta(seconds=5))
    await until(lambda: CALLS.get("l2") == 2, "the second attempt")
    clock.advance(timedelta(seconds=10))
    status = await shop.workflows.wait(numbered, "l2")
    assert status.result == "number 1003; then Exhausted after 1 attempt(s)"
    attempts = [
        (e.event.attempt, e.event.status)  # type: ignore[attr-defined]
        for e in shop.workflows.history(numbered, "l2")
        if e.event_type == "wf.LocalActivityRan" and e.event.name == "reserve_number"  # type: ignore[attr-defined]
    ]
    assert attempts == [(1, "failed"), (2, "failed"), (3, "applied")]


async def test_a_local_activity_out_of_attempts_fails_where_it_is_awaited(
    shop: Shop, clock: ManualClock
) -> None:
    shop.workflows.start(numbered, {"key": "l3", "fail_times": 9}, workflow_id="l3")
    for n in (1, 2):
        await until(lambda n=n: CALLS.get("l3") == n, f"attempt {n}")
        clock.advance(timedelta(seconds=20))
    status = await shop.workflows.wait(numbered, "l3")
    assert status.status == "compensated"
    assert status.error is not None and "number service busy (call 3)" in status.error
    assert CALLS["l3"] == 3
