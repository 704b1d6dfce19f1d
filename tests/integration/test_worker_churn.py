"""Sagas keep finishing while a worker is killed and replaced every few seconds.

Two workers with stable identities (``ENTITYFLOW_WORKER_ID``, static group membership)
share the partitions; 3 s after the last replacement took over, one of them is killed
with SIGKILL and a replacement starts under the same identity, while order sagas are
started at a steady pace. The replacement takes its predecessor's partitions back
without a rebalance, and the other worker keeps its own through it (cooperative
rebalancing), so sagas finish during the churn, not only after it; afterwards every
saga has ended as planned and nothing took effect twice. An update sent as the churn
ends is answered at once, not after a session timeout.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from examples.shop import Account
from tests.integration.processes import WorkerProcess, outputs, wait_until
from tests.integration.shop_sagas import (
    SAGAS,
    Shop,
    finished,
    open_shop,
    reconcile,
    seed,
    spawn,
    start_all,
    statuses,
)

pytestmark = [pytest.mark.kafka, pytest.mark.postgres, pytest.mark.slow]

KILL_EVERY = 3.0
KILLS = 8
START_RATE = 8.0
"""Sagas started per second: 200 take 25 s, about as long as the churn."""


def _done(shop: Shop) -> int:
    counts = statuses(shop)
    return counts["completed"] + counts["compensated"] + counts["failed"]


def test_sagas_keep_finishing_while_a_worker_is_killed_every_three_seconds(
    pg_url: str, kafka_bootstrap: str, namespace: str, workers: list[WorkerProcess]
) -> None:
    shop = open_shop(pg_url, kafka_bootstrap, namespace)  # creates the tables first
    ids = ["w-a", "w-b"]
    live = {wid: spawn(workers, pg_url, kafka_bootstrap, namespace, worker_id=wid) for wid in ids}
    for w in live.values():
        w.wait_assigned()
    seed(shop)
    stop = threading.Event()
    starter = threading.Thread(target=start_all, args=(shop, START_RATE, stop), daemon=True)
    try:
        churn_began = time.monotonic()
        starter.start()
        finished_at_start = _done(shop)
        for k in range(KILLS):
            time.sleep(KILL_EVERY)
            wid = ids[k % 2]
            live[wid].kill9()
            live[wid] = spawn(workers, pg_url, kafka_bootstrap, namespace, worker_id=wid)
            # The next kill waits for this replacement to hold its partitions: on a busy
            # machine a Python process takes longer to start than the kill interval, and
            # killing the other worker meanwhile would stop everything, not churn it.
            if k + 1 < KILLS:
                live[wid].wait_assigned()
        churn = time.monotonic() - churn_began
        during = _done(shop) - finished_at_start
        started_during = len(shop.started)

        # The churn is over. Once the last replacement has started (a Python process
        # on a busy machine takes seconds) it holds its predecessor's partitions under
        # the same identity, so an update is answered at once, not after the dead
        # member's session runs out.
        replaced = time.monotonic()
        live[wid].wait_assigned()
        took_over_in = time.monotonic() - replaced
        asked = time.monotonic()
        answer = asyncio.run(
            shop.client.update(Account.open.options(timeout=5), "after-churn", owner="o")
        )
        answered_in = time.monotonic() - asked
        starter.join(120)
        assert len(shop.started) == SAGAS
        wait_until(
            lambda: finished(shop),
            180,
            "every saga to finish",
            poll=0.5,
            context=lambda: f"{statuses(shop)}\n{outputs(*workers)()}",
        )
        rate = during / churn
        print(
            f"\nchurn: {KILLS} kills in {churn:.1f}s; {during} of {started_during} sagas "
            f"started so far finished during it ({rate:.1f}/s); an update right after "
            f"answered in {answered_in * 1000:.0f} ms ({took_over_in:.1f}s after the last "
            "replacement was spawned, it held the partitions)"
        )
        assert answered_in < 3.0, f"the update took {answered_in:.1f}s"
        assert answer.version > 0
        # Most sagas started during the churn also finished during it (the ones started
        # in its last seconds may not have had the time).
        assert during >= 0.6 * started_during, (during, started_during)
        reconcile(shop, pg_url)
    finally:
        stop.set()
        shop.close()
