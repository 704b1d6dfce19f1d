"""``python -m bench.timer_worker [entityflow worker flags]``: ``entityflow worker``, unchanged,
that also says on stdout when it got its first partitions and when it first read its timers.

The timers bench starts it to time a worker's start-up with many timers pending. It runs
the real ``api.cli`` worker command; only two methods are wrapped, in this process:
``Worker.on_assigned`` (the first assignment) and the first ``TimerIndex.refresh`` after
it (the read of the timers due within the horizon). Each prints one line
``BENCH {"event": ..., "t": <time.time()>, ...}`` that the bench reads.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from actors.timers import TimerIndex
from actors.worker import Worker

MARK = "BENCH "


def _say(event: str, **fields: Any) -> None:
    print(MARK + json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def _instrument() -> None:
    assigned_at: list[float] = []
    refreshed: list[bool] = []
    on_assigned = Worker.on_assigned
    refresh = TimerIndex.refresh

    def timed_assigned(self: Worker, partitions: list[int]) -> None:
        on_assigned(self, partitions)
        if not assigned_at:
            assigned_at.append(time.time())
            _say("assigned", partitions=len(partitions))

    def timed_refresh(self: TimerIndex) -> None:
        if not assigned_at or refreshed:
            refresh(self)
            return
        # The first refresh after the assignment reads the store (assigned() reset the index).
        started = time.perf_counter()
        refresh(self)
        took = time.perf_counter() - started
        refreshed.append(True)
        _say("refreshed", ms=took * 1000, held=len(self))

    setattr(Worker, "on_assigned", timed_assigned)  # noqa: B010 (mypy: no method assignment)
    setattr(TimerIndex, "refresh", timed_refresh)  # noqa: B010


def main() -> int:
    _instrument()
    from api.cli import main as cli_main

    return cli_main(["worker", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
