"""A client call that never returns: noticed, explained in the log, and released.

kafka-python 3.0 runs each client's network on an IO thread of its own. A caller's
``poll`` hands its request to that thread and then waits on an event *with no timeout*
(``NetworkSelector.run``) for the thread to have run it. Late in a long test run, on a
loaded 2-core machine and after the broker had restarted, we saw that request never
run: a worker's poll never returned, so its partitions, its rebalances and its timers
stood still (the group gave them to nobody), and only restarting the process helped.

A guarded call that outlives its bound is released the way the client itself releases
its callers when its IO thread dies (``_fail_pending_waiters``): the call raises
``KafkaTimeoutError``, the watchdog logs what the client's loop looked like, and the
owner replaces the client (:attr:`Guard.tripped`). A bound is generous (tens of
seconds, against polls of a fraction of one), so a slow but healthy call is never cut.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import KafkaTimeoutError

log = logging.getLogger("entityflow.kafka")

STUCK_CALL_SECONDS = 20.0
"""How long a poll may block before it counts as stuck (a poll asks for at most 1 s)."""


@dataclass
class Guard:
    """One call in progress; ``tripped`` once the watchdog released it."""

    what: str
    net: Any
    limit: float
    started: float = field(default_factory=time.monotonic)
    tripped: bool = False


def describe_loop(net: Any) -> str:
    """What a client's network loop is doing, from the outside (for the log only)."""
    io = getattr(net, "_io_thread", None)
    alive = io is not None and io.is_alive()
    ready = len(getattr(net, "_ready", ()))
    scheduled = len(getattr(net, "_scheduled", ()))
    waiting = len(getattr(net, "_pending_waiters", {}))
    error = getattr(net, "_exception", None)
    where = ""
    ident = io.ident if io is not None and alive else None
    frame = sys._current_frames().get(ident) if ident is not None else None
    if frame is not None:
        innermost = traceback.extract_stack(frame)[-5:]
        where = "; IO thread in " + " <- ".join(
            f"{f.name} ({f.filename.rsplit('/', 1)[-1]}:{f.lineno})" for f in reversed(innermost)
        )
    return (
        f"IO thread {'alive' if alive else 'not running'}, {ready} ready and {scheduled} "
        f"scheduled tasks, {waiting} callers waiting, loop error {error!r}{where}"
    )


class StuckCallWatchdog:
    """One daemon thread per process that looks at every guarded call once a second."""

    def __init__(self, interval: float = 1.0) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._calls: dict[int, Guard] = {}
        self._thread: threading.Thread | None = None

    @contextmanager
    def guard(self, net: Any, what: str, limit: float = STUCK_CALL_SECONDS) -> Iterator[Guard]:
        if not limit > 0:
            raise ValueError(
                f"a stuck call's bound must be a positive number of seconds, not {limit!r}"
            )
        call = Guard(what, net, limit)
        with self._lock:
            self._calls[id(call)] = call
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="entityflow-stuck-calls", daemon=True
                )
                self._thread.start()
        try:
            yield call
        finally:
            with self._lock:
                self._calls.pop(id(call), None)

    def check(self) -> list[Guard]:
        """Release every call past its bound; returns those released now."""
        now = time.monotonic()
        with self._lock:
            overdue = [
                c for c in self._calls.values() if not c.tripped and now - c.started > c.limit
            ]
            for call in overdue:
                call.tripped = True
        for call in overdue:
            log.error(
                "%s has not returned after %.1fs: releasing it and replacing the client (%s)",
                call.what,
                now - call.started,
                describe_loop(call.net),
            )
            release = getattr(call.net, "_fail_pending_waiters", None)
            if release is not None:
                release(KafkaTimeoutError(f"{call.what} was stuck; released after {call.limit:g}s"))
        return overdue

    def _watch(self) -> None:
        while True:
            time.sleep(self._interval)
            try:
                self.check()
            except Exception:  # the watchdog must outlive any one bad check
                log.exception("the stuck-call watchdog failed a check")


WATCHDOG = StuckCallWatchdog()


def abandon(client: Any, what: str) -> None:
    """Close a released client on a thread of its own: its close may get stuck the same way."""

    def close() -> None:
        try:
            client.close(autocommit=False)
        except Exception as exc:  # a stuck client's close may fail any way; it is gone either way
            log.warning("closing the abandoned %s: %s", what, exc)

    threading.Thread(target=close, name="entityflow-abandoned-client", daemon=True).start()


__all__ = [
    "STUCK_CALL_SECONDS",
    "WATCHDOG",
    "Guard",
    "StuckCallWatchdog",
    "abandon",
    "describe_loop",
]
