"""Following the notification log (the relay's input) on SQLite and PostgreSQL, no broker."""

from __future__ import annotations

import threading
import time

from eventstore import Store
from eventstore.sql.log import LogFollower
from tests.eventstore_tests.stream_support import inventory_registry, write_restocks


def test_the_follower_hands_out_batches_in_commit_order(store_url: str) -> None:
    with Store(store_url, inventory_registry()) as store:
        write_restocks(store, [f"sku-{n}" for n in range(5)], 5, batch=7)
        with LogFollower(store, 0, interval=0.005) as follower:
            first = follower.take(10, 5.0)
            rest = follower.take(100, 5.0)
            assert (len(first), len(rest)) == (10, 15)
            ids = [n.position for n in first + rest]
            assert ids == sorted(ids) and len(set(ids)) == 25
            started = time.monotonic()
            assert follower.take(10, 0.2) == []
            assert time.monotonic() - started >= 0.15, "take waits for new events"
            later = threading.Timer(0.3, lambda: write_restocks(store, ["sku-9"], 3))
            later.start()
            woken = follower.take(10, 10.0)
            woken += follower.take(10, 1.0) if len(woken) < 3 else []
            later.join()
            assert [n.version for n in woken] == [1, 2, 3]
            assert woken[0].position > ids[-1]
        with LogFollower(store, ids[19]) as resumed:
            got = resumed.take(100, 5.0)
            while len(got) < 8:
                more = resumed.take(100, 1.0)
                assert more, f"only {len(got)} after position {ids[19]}"
                got += more
        assert [n.position for n in got][:5] == ids[20:]
        assert all(n.position > ids[19] for n in got)
