"""Child workflows and versioning on Apache Kafka and PostgreSQL, workers as OS processes.

- 20 parents with 5 children each run while a worker is killed with SIGKILL: every parent
  gets all its children's results, and every child's deposits took effect exactly once.
- A deploy that changes a step behind ``ctx.patched``: the execution that took the old
  step under the old release replays it on the new workers and finishes, the new one
  takes the new step, and neither is parked (guarantee 5).
- An execution continues as new 100 times while three senders signal it concurrently:
  every signal is counted once, every run's deposit happened once, and loading it reads
  only its last run.
- A gather with ``return_exceptions=True`` over children (one fails) and a refused call
  returns each outcome; a parent cancelled mid-fan-out cancels its running children,
  which undo their deposits; a compensation that ran out of attempts is retried over
  HTTP (an API in the test, the worker a process) once its cause is fixed, and the saga
  ends compensated.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import httpx
import pytest

from actors.mailbox.kafka import KafkaMailbox
from api.app import AppParts, create_app
from api.server import ServerThread
from api.settings import Settings
from eventstore import Store
from eventstore.kafka.io import KafkaSettings
from examples.shop import Account
from sagas.history import Started
from sagas.runs import RUN_SNAPSHOT
from tests.integration.composition_domains import (
    batch,
    domain,
    evolve,
    fanout,
    leg,
    mixed,
    rollover,
    tick,
    waiter,
)
from tests.integration.processes import ROOT, WorkerProcess, count_rows, outputs, wait_until
from tests.integration.shop_sagas import PARTITIONS, open_shop, spawn

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
        # The deploy gate, on the histories these processes wrote: release 2's code replays
        # both; release 1's is caught where the new execution took the patched path.
        passed = _replay_check(pg_url, V2)
        assert passed.returncode == 0, passed.stdout
        assert "2 Evolve" in passed.stdout
        caught = _replay_check(pg_url, V1)
        assert caught.returncode == 1, caught.stdout
        diverged = [line for line in caught.stdout.splitlines() if line.startswith("DIVERGES")]
        assert len(diverged) == 1 and diverged[0].startswith(
            "DIVERGES Evolve evolve-new, step 2"
        ), caught.stdout
    finally:
        shop.close()


def _replay_check(store_url: str, domain: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "replay-check", "--domain", domain, "--type", "Evolve"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ENTITYFLOW_STORE": store_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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


def test_gather_with_partial_failures_returns_each_outcome(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    shop = open_shop(pg_url, kafka_bootstrap, namespace, [mixed, leg])
    try:
        spawn(workers, pg_url, kafka_bootstrap, namespace, V1).wait_assigned()
        asyncio.run(shop.client.update(Account.open, "acct-mixed", owner="o"))
        accounts = ["acct-mixed", "acct-never-opened"]
        shop.workflows.start(mixed, {"accounts": accounts}, workflow_id="mixed")
        status = asyncio.run(shop.workflows.wait(mixed, "mixed", timeout=60))
        assert status.status == "completed", status.error
        assert status.result == ["acct-mixed", "ChildWorkflowError", "StepRejected"]
        assert shop.workflows.status(leg, "mixed-2").status == "compensated"
        assert Decimal(shop.client.query(Account.balance, "acct-mixed").result) == 3
    finally:
        shop.close()


def test_a_parent_cancelled_mid_fan_out_cancels_its_children(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    shop = open_shop(pg_url, kafka_bootstrap, namespace, [fanout, waiter])
    accounts = [f"acct-fan-{i}" for i in range(4)]
    try:
        worker = spawn(workers, pg_url, kafka_bootstrap, namespace, V1)
        worker.wait_assigned()

        async def open_all() -> None:
            await asyncio.gather(
                *(shop.client.update(Account.open, a, owner="o") for a in accounts)
            )

        asyncio.run(open_all())
        shop.workflows.start(fanout, {"accounts": accounts}, workflow_id="fan")
        children = [f"fan-{i + 1}" for i in range(len(accounts))]

        def all_waiting() -> bool:
            rows = [shop.workflows.execution(waiter, c) for c in children]
            return all(r is not None and r.summary.get("steps_done") == 1 for r in rows)

        wait_until(all_waiting, 60, "every child to deposit and wait", context=outputs(worker))
        asyncio.run(shop.workflows.cancel(fanout, "fan", "stop the fan-out"))
        assert asyncio.run(shop.workflows.wait(fanout, "fan", timeout=60)).status == "compensated"
        for child in children:
            status = asyncio.run(shop.workflows.wait(waiter, child, timeout=60))
            assert (status.status, status.cancelled) == ("compensated", True), child
        balances = [Decimal(shop.client.query(Account.balance, a).result) for a in accounts]
        assert balances == [0] * len(accounts)  # every child undid its deposit
    finally:
        shop.close()


@contextmanager
def api(pg_url: str, bootstrap: str, namespace: str) -> Iterator[httpx.Client]:
    """The HTTP API over the domain of the worker processes (no worker of its own)."""
    served = domain("v1")
    mailbox = KafkaMailbox(KafkaSettings(bootstrap), namespace=namespace, partitions=PARTITIONS)
    store = Store(pg_url, served.registry())
    try:
        app = create_app(AppParts(store, mailbox, served, Settings(update_timeout=30)))
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=60) as http:
            yield http
    finally:
        mailbox.close()
        store.close()


def test_a_failed_compensation_retried_over_http_finishes_the_saga_compensated(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    worker = spawn(workers, pg_url, kafka_bootstrap, namespace, V1)
    worker.wait_assigned()
    with api(pg_url, kafka_bootstrap, namespace) as http:

        def post(path: str, body: object, status: int = 200) -> None:
            r = http.post(path, json=body)
            assert r.status_code == status, (r.text, outputs(worker)())

        def mend_status(until: str) -> dict[str, object]:
            deadline = time.monotonic() + 60
            while True:
                body: dict[str, object] = http.get(
                    "/workflows/Mend/m1", params={"wait": "5"}
                ).json()
                if body.get("status") == until:
                    return body
                assert time.monotonic() < deadline, (body, outputs(worker)())
                time.sleep(0.1)

        post("/entities/Vault/v1/updates/put", {"key": "gold", "amount": 10})
        post("/workflows/Mend", {"workflow_id": "m1", "input": {"vault": "v1"}}, 202)
        wait_until(
            lambda: http.get("/workflows/Mend/m1").json().get("steps_done") == 1,
            60,
            "the gold to be taken",
            context=outputs(worker),
        )
        post("/entities/Vault/v1/updates/lock", {})
        post("/workflows/Mend/m1/signals/go", None, 202)
        failed = mend_status("failed")
        assert failed["failed_compensation"] == "Vault/v1.put"
        post("/entities/Vault/v1/updates/unlock", {})  # the cause, fixed
        post("/workflows/Mend/m1/compensations/1/retry", {"reason": "unlocked"}, 202)
        done = mend_status("compensated")
        assert done["repairs"] == 1 and done["failed_compensation"] is None
        gold = http.get("/entities/Vault/v1/queries/count", params={"key": "gold"}).json()
        assert gold["result"] == 10  # taken once, put back once
