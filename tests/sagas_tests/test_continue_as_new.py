"""Continue-as-new: a run ends and the next starts in the same commit, same workflow id,
empty history; unread signals carried over, the old run's timers cancelled, loading
reads only the current run (SQLite and PostgreSQL, on the virtual clock)."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from examples.subscription import DOMAIN, Billing, change_price, subscription
from sagas import (
    Domain,
    InvalidWorkflowInputError,
    Workflow,
    WorkflowContext,
    WorkflowKind,
    WorkflowNotFoundError,
    activity,
    activity_info,
)
from sagas.history import ContinuedAsNew, SignalReceived, Started, TimerCancelled
from sagas.replay_check import check_histories, export_histories, file_histories, stored_histories
from sagas.runs import RUN_SNAPSHOT
from sagas.testing import WorkflowEnvironment

pytestmark = pytest.mark.anyio


class Tally(BaseModel):
    total: int = 0
    runs_left: int


tally = Workflow("Tally", input=Tally, output=int)
add = tally.signal("add", int)


@tally.run
async def run_tally(ctx: WorkflowContext, t: Tally) -> int:
    """Reads one signal per run, then naps an hour: the others wait for the next runs."""
    ctx.sleep(timedelta(days=365))  # never awaited: cancelled when the run ends
    total = t.total + await ctx.wait_signal(add)
    if t.runs_left == 0:
        return total
    await ctx.sleep(timedelta(hours=1))
    return await ctx.continue_as_new(Tally(total=total, runs_left=t.runs_left - 1))


class Odd(BaseModel):
    step: int


odd = Workflow("Odd", input=Odd, output=str)


@odd.run
async def run_odd(ctx: WorkflowContext, o: Odd) -> str:
    try:
        await ctx.continue_as_new({"step": "not a number"})
    except InvalidWorkflowInputError as exc:
        return f"refused: {exc}"
    return "continued"


hasty = Workflow("Hasty", input=Odd, output=str)


@hasty.run
async def run_hasty(ctx: WorkflowContext, o: Odd) -> str:
    """Continues as new as soon as it starts: only the first run may."""
    await ctx.continue_as_new(Odd(step=o.step + 1))
    return "unreachable"


@activity
def key_of() -> str:
    return activity_info().idempotency_key


class Keys(BaseModel):
    keys: list[str] = []
    runs_left: int


keyed = Workflow("Keyed", input=Keys, output=list[str])


@keyed.run
async def run_keyed(ctx: WorkflowContext, k: Keys) -> list[str]:
    keys = [*k.keys, await ctx.execute_activity(key_of), await ctx.run_local(key_of)]
    if k.runs_left == 0:
        return keys
    return await ctx.continue_as_new(Keys(keys=keys, runs_left=k.runs_left - 1))


@pytest.fixture
async def env(store_url: str) -> AsyncIterator[WorkflowEnvironment]:
    domain = Domain(
        DOMAIN.entities,
        [subscription, tally, odd, hasty, keyed, lingering, parent, sleeper],
        activities=[key_of, held],
    )
    async with WorkflowEnvironment(domain, store=store_url) as environment:
        yield environment


def types(env: WorkflowEnvironment, wf: Workflow[object, object], wid: str) -> list[str]:
    return [r.event.event_type for r in env.history(wf, wid)]


async def test_a_subscription_bills_every_month_across_runs(env: WorkflowEnvironment) -> None:
    sub = {"customer": "c1", "price": 100, "months": 7, "months_per_run": 3}
    await env.start(subscription, sub, workflow_id="c1")
    await env.sleep(timedelta(days=45))  # month 1 billed at 100, month 2 under way
    await env.signal(change_price, "c1", 250)
    status = await env.result(subscription, "c1")
    assert (status.status, status.result, status.run) == ("completed", 7, 3)
    assert env.client.query(Billing.months, "c1").result == [1, 2, 3, 4, 5, 6, 7]
    assert env.client.query(Billing.total, "c1").result == 100 + 6 * 250
    # the chain of runs: each run's history is a range of the one stream
    assert [(r.run, r.input["billed"], r.next_input["billed"]) for r in status.runs] == [
        (1, 0, 3),
        (2, 3, 6),
    ]
    second = env.workflows.history(subscription, "c1", run=2)
    assert isinstance(second[0].event, Started) and second[0].event.run == 2
    assert isinstance(second[-1].event, ContinuedAsNew)
    assert second[0].version == status.runs[1].first_version
    current = env.workflows.history(subscription, "c1", run=3)
    assert current[0].version == status.runs[1].last_version + 1
    assert status.steps_done == 1  # the current run's steps only
    with pytest.raises(WorkflowNotFoundError, match="no run 4"):
        env.workflows.history(subscription, "c1", run=4)


async def test_signals_the_run_did_not_read_are_carried_to_the_next(
    env: WorkflowEnvironment,
) -> None:
    await env.start(tally, Tally(runs_left=4), workflow_id="t")
    for n in (1, 2, 3, 4, 5):  # all five while the first run naps: one run reads one
        await env.signal(add, "t", n)
    status = await env.result(tally, "t")
    assert (status.status, status.result, status.run) == ("completed", 15, 5)
    assert [r.signals_carried for r in status.runs] == [4, 3, 2, 1]
    history = env.history(tally, "t")
    carried = [r.event for r in history if isinstance(r.event, SignalReceived)]
    assert [s.payload for s in carried if s.carried] == [2, 3, 4, 5, 3, 4, 5, 4, 5, 5]
    # each run's year-long timer was cancelled when the run ended; none is left
    assert sum(isinstance(r.event, TimerCancelled) for r in history) == 5
    assert env.host.store.timers(tally.address("t")) == []
    # five runs, one execution: started once, ended once
    registry, labels = env.host.metrics.registry, {"workflow_type": "Tally"}
    assert registry.get_sample_value("entityflow_workflows_started_total", labels) == 1
    ended = {**labels, "status": "completed"}
    assert registry.get_sample_value("entityflow_workflows_ended_total", ended) == 1


async def test_loading_reads_only_the_current_run(env: WorkflowEnvironment) -> None:
    sub = {"customer": "c2", "price": 100, "months": 9, "months_per_run": 1}
    await env.start(subscription, sub, workflow_id="c2")
    await env.sleep(timedelta(days=30 * 5 + 1))  # five months billed, five runs ended
    address = subscription.address("c2")
    loaded = env.host.store.load(address, snapshot_type=RUN_SNAPSHOT)
    assert loaded.snapshot is not None
    assert [r["run"] for r in loaded.snapshot.state["runs"]] == [5]  # the run that ended there
    first = loaded.events[0].event
    assert isinstance(first, Started) and first.run == 6
    assert all(not isinstance(r.event, ContinuedAsNew) for r in loaded.events)
    # without the snapshot (its save failed), the whole stream is read and the same run
    # rebuilt: earlier runs are folded for their chain, not replayed
    kind = WorkflowKind(subscription)
    full = kind.load(address, env.host.store.load(address))
    from_snapshot = kind.load(address, loaded)
    assert full.engine is not None and from_snapshot.engine is not None
    assert full.record.run == from_snapshot.record.run == 6
    assert [r.run for r in full.record.runs] == [1, 2, 3, 4, 5]
    assert full.record.version == from_snapshot.record.version == loaded.version
    assert full.engine.memo == from_snapshot.engine.memo == {"billed": 5, "price": 100}
    # evicted, the execution is loaded from the snapshot and replays its current run only
    env.host.worker.runtime.forget([address])
    status = await env.result(subscription, "c2")
    assert (status.status, status.result, status.run) == ("completed", 9, 10)
    assert env.client.query(Billing.months, "c2").result == list(range(1, 10))


async def test_input_that_does_not_validate_raises_in_the_code_and_records_nothing(
    env: WorkflowEnvironment,
) -> None:
    await env.start(odd, Odd(step=1), workflow_id="o")
    status = await env.result(odd, "o")
    assert status.status == "completed" and status.run == 1
    assert "invalid input for workflow Odd" in status.result and "step" in status.result
    assert "wf.ContinuedAsNew" not in types(env, odd, "o")


async def test_a_run_cannot_continue_as_new_while_it_is_handed_over(
    env: WorkflowEnvironment,
) -> None:
    await env.start(hasty, Odd(step=1), workflow_id="h")
    status = await env.result(hasty, "h")
    assert (status.status, status.run) == ("compensated", 2)
    assert "while it is being handed over" in (status.error or "")


async def test_each_run_gives_its_activities_their_own_idempotency_keys(
    env: WorkflowEnvironment,
) -> None:
    await env.start(keyed, Keys(runs_left=1), workflow_id="k")
    status = await env.result(keyed, "k")
    assert status.result == [
        "workflow:Keyed/k#1",
        "workflow:Keyed/k#2",
        "workflow:Keyed/k~2#1",
        "workflow:Keyed/k~2#2",
    ]


async def test_replay_check_and_export_read_the_current_run(
    env: WorkflowEnvironment, tmp_path: Path
) -> None:
    await env.start(tally, Tally(runs_left=3), workflow_id="rc")
    for n in (1, 2):
        await env.signal(add, "rc", n)
    await env.sleep(timedelta(hours=3))  # two runs ended, the third waits for a signal
    store, workflows = env.host.store, [tally]
    histories = list(stored_histories(store, workflows))
    ((_, _, events),) = histories
    assert isinstance(events[0].event, Started) and events[0].event.run == 3
    assert check_histories(histories).ok
    assert export_histories(histories, tmp_path) == 1
    from_files = list(file_histories(tmp_path, workflows, store.registry))
    assert [e.version for e in from_files[0][2]] == [e.version for e in events]
    assert check_histories(from_files).ok
    # code whose runs no longer nap before continuing diverges, named at the current run
    changed = Workflow("Tally", input=Tally, output=int)
    changed.signal("add", int)

    @changed.run
    async def run_changed(ctx: WorkflowContext, t: Tally) -> int:
        return t.total

    report = check_histories(stored_histories(store, [changed]))
    (divergence,) = report.divergences
    assert divergence.workflow_id == "rc" and divergence.step is not None


RELEASE = threading.Event()


@activity
def held() -> str:
    RELEASE.wait(10)
    return "released"


class Held(BaseModel):
    run: int = 1


lingering = Workflow("Lingering", input=Held, output=int)
poke = lingering.signal("poke", int)


@lingering.run
async def run_lingering(ctx: WorkflowContext, h: Held) -> int:
    """Run 1 continues as new with an activity still out: it ends once that is answered."""
    if h.run == 2:
        return await ctx.wait_signal(poke)
    ctx.execute_activity(held)
    return await ctx.continue_as_new(Held(run=2))


async def test_a_signal_sent_while_the_run_winds_down_reaches_the_next(
    env: WorkflowEnvironment,
) -> None:
    RELEASE.clear()
    env.workflows.start(lingering, Held(), workflow_id="l")  # not run_until_idle: it would
    while env.workflows.execution(lingering, "l") is None:  # wait for the activity
        env.host.worker.step()
    assert env.status(lingering, "l").run == 1  # waiting for the activity's answer
    outcome = await env.signal(poke, "l", 7)
    assert outcome.status == "applied"
    RELEASE.set()
    status = await env.result(lingering, "l")
    assert (status.status, status.result, status.run) == ("completed", 7, 2)
    assert status.runs[0].signals_carried == 1


sleeper = Workflow("Sleeper", input=Held, output=int)
wake = sleeper.signal("wake", int)


@sleeper.run
async def run_sleeper(ctx: WorkflowContext, h: Held) -> int:
    return await ctx.wait_signal(wake)


parent = Workflow("Parent", input=Held, output=str)


@parent.run
async def run_parent(ctx: WorkflowContext, h: Held) -> str:
    if h.run == 2:
        return "second run"
    ctx.child(sleeper, Held(), workflow_id="kept-cancel")
    ctx.child(sleeper, Held(), workflow_id="kept-abandon", parent_close="abandon")
    return await ctx.continue_as_new(Held(run=2))


async def test_children_follow_their_parent_close_policy_when_a_run_ends(
    env: WorkflowEnvironment,
) -> None:
    await env.start(parent, Held(), workflow_id="p")
    status = await env.result(parent, "p")
    assert (status.status, status.result, status.run) == ("completed", "second run", 2)
    cancelled = env.status(sleeper, "kept-cancel")
    assert (cancelled.status, cancelled.cancelled) == ("compensated", True)
    assert env.status(sleeper, "kept-abandon").status == "running"
