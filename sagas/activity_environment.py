"""Run one activity alone, as a worker would, for the activity's own unit tests.

No broker, no store, no workflow: the attempt gets its :func:`~sagas.activity_info`, its
heartbeats are captured in order (none held back by the throttle), and a cancellation
can be injected, from another thread or from a heartbeat, to test the clean-up path.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from sagas.activities import Activity, ActivityInfo, _Attempt, run_attempt

P = ParamSpec("P")
R = TypeVar("R")


class ActivityEnvironment:
    """``ActivityEnvironment().run(charge_card, card, amount)`` returns what a workflow
    would get: the result decoded to the declared type, or the exception raised."""

    def __init__(
        self,
        *,
        attempt: int = 1,
        heartbeat_details: Any = None,
        heartbeat_timeout: float | None = None,
        workflow: str = "workflow:Test/test",
        seq: int = 1,
        on_heartbeat: Callable[[Any], None] | None = None,
    ) -> None:
        """``attempt`` and ``heartbeat_details`` as a retry would see them;
        ``on_heartbeat`` is called with each heartbeat's details (it may :meth:`cancel`)."""
        self.attempt = attempt
        self.heartbeat_details = heartbeat_details
        self.heartbeat_timeout = heartbeat_timeout
        self.workflow = workflow
        self.seq = seq
        self.on_heartbeat = on_heartbeat
        self.heartbeats: list[Any] = []
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        """The running attempt's next :func:`~sagas.heartbeat` raises
        :class:`~sagas.ActivityCancelledError`, as when its workflow is cancelled."""
        self._cancelled.set()

    def run(self, act: Activity[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call from synchronous code: an ``async`` activity runs on an event loop of its
        own, as in a worker's thread."""
        arguments = act.encode_arguments(args, kwargs)  # refused here as at the call
        info = ActivityInfo(
            name=act.name,
            workflow=self.workflow,
            seq=self.seq,
            attempt=self.attempt,
            idempotency_key=f"{self.workflow}#{self.seq}",
            heartbeat_details=self.heartbeat_details,
            heartbeat_timeout=self.heartbeat_timeout,
        )
        attempt = _Attempt(info, report=self._beat, cancelled=self._cancelled, throttle=0.0)
        result: R = act.decode_result(run_attempt(act, arguments, attempt))
        return result

    def _beat(self, details: Any) -> None:
        self.heartbeats.append(details)
        if self.on_heartbeat is not None:
            self.on_heartbeat(details)


__all__ = ["ActivityEnvironment"]
