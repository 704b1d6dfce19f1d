"""Durable timers in workflows: sleep, signal timeouts, races, cancellation, on a virtual
clock that the test moves (the worker runs in its thread, as in production)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from actors import RetryPolicy
from sagas import WaitTimedOut, Workflow, WorkflowContext, WorkflowNotFoundError, replay
from tests.sagas_tests.conftest import Shop, ShopFactory
from tests.sagas_tests.support import Vault

pytestmark = pytest.mark.anyio


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class NapInput(BaseModel):
    vault: str
    hours: float = 24


nap = Workflow("Nap", input=NapInput, output=str)


@nap.run
async def run_nap(ctx: WorkflowContext, n: NapInput) -> str:
    start = ctx.now()
    await ctx.sleep(timedelta(hours=n.hours))
    await ctx.call(Vault.put, n.vault, key="gold", amount=1)
    return str(ctx.now() - start)


class Decision(BaseModel):
    approved: bool


deadline = Workflow("Deadline", input=NapInput, output=str)
decide = deadline.signal("decide", Decision)
unused = deadline.signal("unused", str)


@deadline.run
async def run_deadline(ctx: WorkflowContext, n: NapInput) -> str:
    try:
        answer = await ctx.wait_signal(decide, timeout=timedelta(hours=n.hours))
    except WaitTimedOut:
        await ctx.call(Vault.put, n.vault, key="late", amount=1)
        # A signal that comes after the deadline is kept for the next wait.
        second = await ctx.wait_signal(decide)
        return f"timed out, then {second.approved}"
    return f"answered {answer.approved}"


race = Workflow("Race", input=NapInput, output=str)
ping = race.signal("ping", str)


@race.run
async def run_race(ctx: WorkflowContext, n: NapInput) -> str:
    waiting = ctx.wait_signal(ping)
    short, long = ctx.sleep(timedelta(hours=1)), ctx.sleep(timedelta(hours=n.hours))
    winner = await ctx.first(waiting, long, short)
    if winner is waiting:
        return f"signal {waiting.outcome()}"
    return "short" if winner is short else "long"


bad_sleep = Workflow("BadSleep", input=NapInput, output=str)


@bad_sleep.run
async def run_bad_sleep(ctx: WorkflowContext, n: NapInput) -> str:
    await ctx.sleep(timedelta(hours=n.hours))
    return "slept"


patient = Workflow("Patient", input=NapInput, output=int)
TEN_MINUTES = RetryPolicy(attempts=3, initial_interval=600, max_interval=600, retry_rejected=True)


@patient.run
async def run_patient(ctx: WorkflowContext, n: NapInput) -> int:
    return await ctx.call(Vault.take.options(retry=TEN_MINUTES), n.vault, key="gold", amount=2)


stray = Workflow("Stray", input=NapInput, output=str)
"""Waits with a timeout on a signal it does not declare (``decide`` is Deadline's), or on
its own with a negative timeout (``hours`` < 0)."""
hail = stray.signal("hail", str)


@stray.run
async def run_stray(ctx: WorkflowContext, n: NapInput) -> str:
    if n.hours < 0:
        await ctx.wait_signal(hail, timeout=timedelta(hours=n.hours))
        return "hailed"
    await ctx.wait_signal(decide, timeout=timedelta(hours=n.hours))
    return "decided"


TIMER_WORKFLOWS = (nap, deadline, race, bad_sleep, patient, stray)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def shop(make_shop: ShopFactory, clock: ManualClock) -> Shop:
    return make_shop(workflows=TIMER_WORKFLOWS, clock=clock)


async def until(predicate: Any, what: str, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def timers_of(shop: Shop, workflow: Workflow[Any, Any], wid: str) -> list[str]:
    try:
        return [t.status for t in shop.workflows.status(workflow, wid).timers]
    except WorkflowNotFoundError:
        return []


async def test_sleep_waits_for_the_clock_and_survives_in_the_store(
    shop: Shop, clock: ManualClock
) -> None:
    shop.workflows.start(nap, {"vault": "v1"}, workflow_id="n1")
    await until(lambda: timers_of(shop, nap, "n1") == ["pending"], "the timer to be set")
    [row] = shop.host.store.timers("workflow:Nap/n1")
    assert row.due_at == clock.now + timedelta(hours=24)
    clock.advance(timedelta(hours=23, minutes=59))
    await asyncio.sleep(0.3)
    assert shop.vault("v1") == 0
    assert shop.workflows.status(nap, "n1").status == "running"
    clock.advance(timedelta(minutes=1))
    status = await shop.workflows.wait(nap, "n1")
    assert (status.status, status.result) == ("completed", "1 day, 0:00:00")
    assert shop.vault("v1") == 1
    assert [t.status for t in status.timers] == ["fired"]
    assert shop.host.store.timers("workflow:Nap/n1") == []
    types = [e.event_type for e in shop.workflows.history(nap, "n1")]
    assert types[:3] == ["wf.Started", "wf.TimerStarted", "wf.TimerFired"]


async def test_a_signal_before_the_deadline_wins(shop: Shop, clock: ManualClock) -> None:
    shop.workflows.start(deadline, {"vault": "v2", "hours": 2}, workflow_id="d1")
    await until(lambda: timers_of(shop, deadline, "d1") == ["pending"], "the deadline")
    clock.advance(timedelta(hours=1, minutes=59))
    await shop.workflows.signal(decide, "d1", Decision(approved=True))
    status = await shop.workflows.wait(deadline, "d1")
    assert status.result == "answered True"
    assert [t.status for t in status.timers] == ["cancelled"]
    assert shop.host.store.timers("workflow:Deadline/d1") == []
    assert replayed_result(shop, "d1") == "answered True"
    clock.advance(timedelta(hours=1))
    await asyncio.sleep(0.2)
    assert shop.vault("v2", "late") == 0


async def test_a_signal_after_the_deadline_loses_and_is_kept(
    shop: Shop, clock: ManualClock
) -> None:
    shop.workflows.start(deadline, {"vault": "v3", "hours": 2}, workflow_id="d2")
    await until(lambda: timers_of(shop, deadline, "d2") == ["pending"], "the deadline")
    clock.advance(timedelta(hours=2))
    await until(lambda: shop.vault("v3", "late") == 1, "the timeout branch")
    await shop.workflows.signal(decide, "d2", Decision(approved=False))
    status = await shop.workflows.wait(deadline, "d2")
    assert status.result == "timed out, then False"
    types = [e.event_type for e in shop.workflows.history(deadline, "d2")]
    assert types.index("wf.TimerFired") < types.index("wf.SignalReceived")
    assert replayed_result(shop, "d2") == "timed out, then False"


def replayed_result(shop: Shop, wid: str) -> object:
    """The history replayed through the code: the same branch is taken, or it raises."""
    address = deadline.address(wid)
    engine = replay(deadline, address, shop.host.store.load(address).events)
    assert engine.final
    return engine.result


async def test_first_takes_the_earliest_and_cancels_the_other_timers(
    shop: Shop, clock: ManualClock
) -> None:
    shop.workflows.start(race, {"vault": "-", "hours": 5}, workflow_id="r1")
    await until(lambda: len(timers_of(shop, race, "r1")) == 2, "both timers")
    clock.advance(timedelta(hours=1))
    status = await shop.workflows.wait(race, "r1")
    assert status.result == "short"
    by_label = sorted(t.status for t in status.timers)
    assert by_label == ["cancelled", "fired"]
    assert shop.host.store.timers("workflow:Race/r1") == []
    shop.workflows.start(race, {"vault": "-", "hours": 5}, workflow_id="r2")
    await until(lambda: len(timers_of(shop, race, "r2")) == 2, "both timers")
    await shop.workflows.signal(ping, "r2", "hello")
    status = await shop.workflows.wait(race, "r2")
    assert status.result == "signal hello"
    assert [t.status for t in status.timers] == ["cancelled", "cancelled"]


async def test_cancelling_a_sleeping_workflow_cancels_its_timer(
    shop: Shop, clock: ManualClock
) -> None:
    shop.workflows.start(nap, {"vault": "v4"}, workflow_id="n2")
    await until(lambda: timers_of(shop, nap, "n2") == ["pending"], "the timer")
    await shop.workflows.cancel(nap, "n2", reason="not needed")
    status = await shop.workflows.wait(nap, "n2")
    assert status.status == "compensated"
    assert [t.status for t in status.timers] == ["cancelled"]
    assert shop.host.store.timers("workflow:Nap/n2") == []
    clock.advance(timedelta(days=2))
    await asyncio.sleep(0.2)
    assert shop.vault("v4") == 0


@pytest.mark.parametrize("hours", [-1, 24 * 365 * 20])
async def test_a_negative_or_absurd_sleep_fails_the_workflow_and_sets_nothing(
    shop: Shop, hours: float
) -> None:
    shop.workflows.start(bad_sleep, {"vault": "-", "hours": hours}, workflow_id="b1")
    status = await shop.workflows.wait(bad_sleep, "b1")
    assert status.status == "compensated"
    assert status.error is not None
    assert "negative" in status.error or "longer than" in status.error
    assert status.timers == []
    assert shop.host.store.timers("workflow:BadSleep/b1") == []


@pytest.mark.parametrize(
    ("hours", "error"),
    [(1, "workflow Stray has no signal named 'decide'; its signals are: hail"), (-1, "negative")],
)
async def test_a_timeout_on_an_undeclared_signal_or_a_negative_one_fails_and_sets_nothing(
    shop: Shop, hours: float, error: str
) -> None:
    wid = f"s{hours}"
    shop.workflows.start(stray, {"vault": "-", "hours": hours}, workflow_id=wid)
    status = await shop.workflows.wait(stray, wid)
    assert status.status == "compensated"
    assert status.error is not None and error in status.error, status.error
    assert status.timers == []
    assert shop.host.store.timers(f"workflow:Stray/{wid}") == []
    types = [r.event.event_type for r in shop.workflows.history(stray, wid)]
    assert "wf.TimerStarted" not in types and "wf.SignalReceived" not in types, types


async def test_a_sleeping_workflow_evicted_from_the_cache_is_woken_by_its_timer(
    make_shop: ShopFactory, clock: ManualClock
) -> None:
    shop = make_shop(workflows=TIMER_WORKFLOWS, clock=clock, cache_size=0)
    shop.workflows.start(nap, {"vault": "v5", "hours": 3}, workflow_id="n3")
    await until(lambda: timers_of(shop, nap, "n3") == ["pending"], "the timer")
    await until(lambda: "workflow:Nap/n3" not in shop.host.runtime, "the eviction")
    clock.advance(timedelta(hours=3))
    status = await shop.workflows.wait(nap, "n3")
    assert status.status == "completed"
    assert shop.vault("v5") == 1


async def test_a_restarted_worker_fires_the_timers_the_old_one_held(
    make_shop: ShopFactory, clock: ManualClock
) -> None:
    first = make_shop(workflows=TIMER_WORKFLOWS, clock=clock)
    first.workflows.start(nap, {"vault": "v6", "hours": 1}, workflow_id="n4")
    await until(lambda: timers_of(first, nap, "n4") == ["pending"], "the timer")
    mailbox = first.host.mailbox
    first.host.worker.stop()
    first.host._thread.join(10)  # type: ignore[union-attr]
    clock.advance(timedelta(hours=2))  # due while no worker runs
    second = make_shop(workflows=TIMER_WORKFLOWS, clock=clock, mailbox=mailbox)
    status = await second.workflows.wait(nap, "n4")
    assert status.status == "completed"
    assert second.vault("v6") == 1


async def test_a_retry_waiting_ten_minutes_holds_no_cache_entry_and_still_runs(
    make_shop: ShopFactory, clock: ManualClock
) -> None:
    shop = make_shop(workflows=TIMER_WORKFLOWS, clock=clock, cache_size=0)
    shop.workflows.start(patient, {"vault": "v7"}, workflow_id="p1")

    def retry_waiting() -> bool:
        try:
            [step] = shop.workflows.status(patient, "p1").steps
        except (WorkflowNotFoundError, ValueError):
            return False
        return step.attempts == 2 and step.not_before is not None

    await until(retry_waiting, "the refused first attempt")
    [row] = shop.host.store.timers("workflow:Patient/p1")
    assert row.due_at == clock.now + timedelta(minutes=10)
    # Evicted (the cache is trimmed right after the commit): no memory, no thread.
    await until(lambda: "workflow:Patient/p1" not in shop.host.runtime, "the eviction")
    await shop.client.update(Vault.put, "v7", key="gold", amount=5)
    clock.advance(timedelta(minutes=9))
    await asyncio.sleep(0.3)
    assert shop.vault("v7") == 5
    clock.advance(timedelta(minutes=1))
    status = await shop.workflows.wait(patient, "p1")
    assert (status.status, status.result) == ("completed", 3)
    assert shop.vault("v7") == 3
