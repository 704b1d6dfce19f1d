"""Child workflows and versioning on Apache Kafka and PostgreSQL, workers as OS processes.

- 20 parents with 5 children each run while a worker is killed with SIGKILL: every parent
  gets all its children's results, and every child's deposits took effect exactly once.
- A deploy that changes a step behind ``ctx.patched``: the execution that took the old
  step under the old release replays it on the new workers and finishes, the new one
  takes the new step, and neither is parked (guarantee 5).
- An execution continues as new 100 times while three senders signal it concurrently:
  every signal is counted once, every run's deposit happened once, and loading it reads
  only its last run.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from examples.shop import Account
from sagas.history import Started
from sagas.runs import RUN_SNAPSHOT
from tests.integration.composition_domains import batch, evolve, leg, rollover, tick
from tests.integration.processes import WorkerProcess, count_rows, outputs, wait_until
from tests.integration.shop_sagas import open_shop, spawn

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]
PARENTS = 20
CHILDREN = 5
V1 = "tests.integration.composition_v1"
V2 = "tests.integration.composition_v2"


def test_children_finish_exactly_once_through_kill_nine(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    shop = open_shop(pg_url, kafka_bootstrap, namespace, [batch, leg])
    try:
        first = spawn(workers, pg_url, kafka_bootstrap, namespace, V1)
        second = spawn(workers, pg_url, kafka_bootstrap, namespace, V1)
        first.wait_assigned()
        second.wait_assigned()
        accounts = [f"acct-{p}-{c}" for p in range(PARENTS) for c in range(CHILDREN)]

        async def open_all() -> None:
            await asyncio.gather(
                *(shop.client.update(Account.open, a, owner="o") for a in accounts)
            )

        asyncio.run(open_all())
        for p in range(PARENTS):
            mine = accounts[p * CHILDREN : (p + 1) * CHILDREN]
            shop.workflows.start(batch, {"accounts": mine}, workflow_id=f"batch-{p}")
        wait_until(
            lambda: count_rows(pg_url, "entityflow_events", "WHERE topic = 'Deposited'") >= 60,
            60,
            "the children to be under way",
            context=outputs(first, second),
        )
        first.kill9()
        spawn(workers, pg_url, kafka_bootstrap, namespace, V1).wait_assigned()

        def all_done() -> bool:
            rows = [shop.workflows.execution(batch, f"batch-{p}") for p in range(PARENTS)]
            return all(r is not None and r.status == "completed" for r in rows)

        wait_until(all_done, 180, "every parent to complete", context=outputs(*workers))
        for p in range(PARENTS):
            status = shop.workflows.status(batch, f"batch-{p}")
            assert status.result == accounts[p * CHILDREN : (p + 1) * CHILDREN]
        # exactly once: three deposits per account, whatever was redelivered or resent
        deposits = count_rows(pg_url, "entityflow_events", "WHERE topic = 'Deposited'")
        assert deposits == 3 * len(accounts)
        balances = {a: Decimal(shop.client.query(Account.balance, a).result) for a in accounts}
        assert set(balances.values()) == {Decimal(3)}
        children = count_rows(
            pg_url,
            "entityflow_events",
            "WHERE topic = 'wf.Completed' AND originator_id LIKE 'workflow:Leg/%'",
        )
        assert children == len(accounts)
    finally:
        shop.close()


def test_a_patched_change_keeps_running_executions_on_their_old_path(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    v1, v2 = evolve("v1"), evolve("v2")
    shop = open_shop(pg_url, kafka_bootstrap, namespace, [v2])
    try:
        old = spawn(workers, pg_url, kafka_bootstrap, namespace, V1)
        old.wait_assigned()
        asyncio.run(shop.client.update(Account.open, "acct-old", owner="o"))
        asyncio.run(shop.client.update(Account.open, "acct-new", owner="n"))
        shop.workflows.start(v1, {"account_id": "acct-old"}, workflow_id="evolve-old")

        def waiting(workflow_id: str) -> bool:
            row = shop.workflows.execution(v2, workflow_id)
            return row is not None and row.summary.get("steps_done") == 2

        wait_until(
            lambda: waiting("evolve-old"), 60, "the old execution to wait", context=outputs(old)
        )
        old.kill9()  # the deploy: release 1's workers go, release 2's come
        new = spawn(workers, pg_url, kafka_bootstrap, namespace, V2)
        new.wait_assigned()
        shop.workflows.start(v2, {"account_id": "acct-new"}, workflow_id="evolve-new")
        wait_until(
            lambda: waiting("evolve-new"), 60, "the new execution to wait", context=outputs(new)
        )
        go = v2.signal_named("go")
        for wid in ("evolve-old", "evolve-new"):
            asyncio.run(shop.workflows.signal(go, wid, None))

        def finished(workflow_id: str) -> bool:
            row = shop.workflows.execution(v2, workflow_id)
            return row is not None and row.status not in ("running", "compensating")

        for wid in ("evolve-old", "evolve-new"):
            wait_until(lambda wid=wid: finished(wid), 60, f"{wid} to finish", context=outputs(new))
        assert shop.workflows.status(v2, "evolve-old").result == "old path"
        assert shop.workflows.status(v2, "evolve-new").result == "new path"
        assert Decimal(shop.client.query(Account.balance, "acct-old").result) == 4
        assert Decimal(shop.client.query(Account.balance, "acct-new").result) == 22
        new_history = [e.event_type for e in shop.workflows.history(v2, "evolve-new")]
        assert "wf.Patched" in new_history
        old_history = [e.event_type for e in shop.workflows.history(v2, "evolve-old")]
        assert "wf.Patched" not in old_history
        assert "replay diverged" not in new.output
    finally:
        shop.close()


def test_continue_as_new_100_times_loses_no_signal_sent_during_the_hand_overs(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    runs, per_run, senders = 100, 3, 3
    shop = open_shop(pg_url, kafka_bootstrap, namespace, [rollover])
    try:
        worker = spawn(workers, pg_url, kafka_bootstrap, namespace, V1)
        worker.wait_assigned()
        asyncio.run(shop.client.update(Account.open, "acct-roll", owner="o"))
        start = {"account_id": "acct-roll", "per_run": per_run, "runs_left": runs}
        shop.workflows.start(rollover, start, workflow_id="roll")

        async def send(count: int) -> list[str]:
            return [(await shop.workflows.signal(tick, "roll", 1)).status for _ in range(count)]

        async def send_all() -> list[str]:
            share = runs * per_run // senders
            sent = await asyncio.gather(*(send(share) for _ in range(senders)))
            return [status for statuses in sent for status in statuses]

        outcomes = asyncio.run(send_all())
        assert outcomes == ["applied"] * runs * per_run  # each recorded by some run

        def finished() -> bool:
            row = shop.workflows.execution(rollover, "roll")
            return row is not None and row.status == "completed"

        wait_until(finished, 120, "the last run to complete", context=outputs(worker))
        status = shop.workflows.status(rollover, "roll")
        assert (status.result, status.run, len(status.runs)) == (runs * per_run, runs + 1, runs)
        assert Decimal(shop.client.query(Account.balance, "acct-roll").result) == runs
        carried = sum(r.signals_carried for r in status.runs)
        longest = max(r.last_version - r.first_version + 1 for r in status.runs)
        loaded = shop.store.load(rollover.address("roll"), snapshot_type=RUN_SNAPSHOT)
        assert loaded.snapshot is not None
        first = loaded.events[0].event
        assert isinstance(first, Started) and first.run == runs + 1
        assert len(loaded.events) == status.version - status.runs[-1].last_version
        print(f"carried {carried} signals over {runs} hand-overs; longest run {longest} events")
    finally:
        shop.close()
