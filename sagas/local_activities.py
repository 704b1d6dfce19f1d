"""Local activities: short side effects run inline on the coordinator's worker.

``await ctx.run_local(fn, ...)`` runs an ``@activity`` function right where the workflow
code is, with no trip through the activity task log (Restate's ``ctx.run``, Temporal's
local activity). Each attempt's outcome is recorded (``wf.LocalActivityRan``) in the same
commit as the turn that ran it, before the code goes on; a replay reads it from the
history and never runs the function again. A failed attempt is retried by the
activity's policy after a durable timer, so a backoff holds no thread. The price of
running inline: the worker's batch waits for the function (keep it short: milliseconds),
a ``start_to_close`` cannot interrupt it, and a worker killed after an attempt ran but
before its commit runs it again (at least once, like any activity; use
``activity_info().idempotency_key`` to dedupe outside).
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from actors import RetryPolicy
from sagas.activities import (
    Activity,
    ActivityCancelledError,
    ActivityInfo,
    ApplicationError,
    _Attempt,
    run_attempt,
)
from sagas.activity_tasks import CANCELLED, NON_RETRYABLE, failure
from sagas.engine_protocol import EngineCore
from sagas.errors import ActivityError, WorkflowError
from sagas.history import LocalActivityRan
from sagas.runs import step_prefix

LOCAL_ROUTE = "local:"


@dataclass(frozen=True)
class LocalOutcome:
    """What one attempt did: ``applied`` with its JSON result, or ``failed``."""

    status: str
    result: Any = None
    error: str | None = None
    code: str | None = None


def run_local_attempt(
    act: Activity[Any, Any], arguments: dict[str, Any], info: ActivityInfo
) -> LocalOutcome:
    """Run one attempt in this thread (an ``async`` function in a thread of its own, as
    the caller may be inside an event loop); never raises."""
    attempt = _Attempt(info, report=lambda details: None)
    try:
        if act.is_async:
            result = _in_thread(act, arguments, attempt)
        else:
            result = run_attempt(act, arguments, attempt)
    except ActivityCancelledError as exc:
        return LocalOutcome("failed", error=str(exc), code=f"{NON_RETRYABLE}{CANCELLED}")
    except ApplicationError as exc:
        code = f"{NON_RETRYABLE}{exc.type}" if exc.non_retryable else exc.type
        return LocalOutcome("failed", error=f"{exc.type}: {exc}", code=code)
    except Exception as exc:
        last = traceback.format_exception_only(exc)[-1].strip()
        return LocalOutcome("failed", error=last, code=type(exc).__name__)
    return LocalOutcome("applied", result=result)


def _in_thread(act: Activity[Any, Any], arguments: dict[str, Any], attempt: _Attempt) -> Any:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = run_attempt(act, arguments, attempt)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"local-activity-{act.name}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def retry_at(
    retry: RetryPolicy,
    schedule_to_close: float | None,
    attempt: int,
    code: str | None,
    first_at: datetime,
    now: datetime,
) -> datetime | None:
    """When the next attempt runs, or None when this failure is final."""
    if not retry.allows(attempt + 1):
        return None
    error_type, final = failure(code)
    if final or (error_type is not None and error_type in retry.non_retryable):
        return None
    due = now + retry.delay(attempt + 1)
    if schedule_to_close is not None and (due - first_at).total_seconds() >= schedule_to_close:
        return None
    return due


class LocalAttempts:
    """The local activities of one engine: runs (live) or reads (replaying) each attempt,
    then resolves the handle, waits on a durable timer to try again, or fails it."""

    def __init__(self, engine: EngineCore) -> None:
        self.engine = engine
        self.recorded: dict[tuple[int, int], LocalActivityRan] = {}
        """While replaying: the recorded attempts, by (seq, attempt)."""
        self._first: dict[int, datetime] = {}

    def start(self, act: Activity[Any, Any], body: dict[str, Any], seq: int, handle: Any) -> None:
        self._first[seq] = self.engine.now()
        self._attempt(act, body, seq, 1, handle)

    def _attempt(
        self, act: Activity[Any, Any], body: dict[str, Any], seq: int, attempt: int, handle: Any
    ) -> None:
        engine = self.engine
        ran = self.recorded.get((seq, attempt)) if engine.replaying else None
        if ran is None and engine.replaying:
            # Not in the history: code that changed. Never run a side effect on replay;
            # this decision does not match what was recorded, so replay reports it.
            ran = LocalActivityRan(seq=seq, name=act.name, attempt=attempt, status="missing")
        if ran is None:
            ran = self._run(act, body, seq, attempt)
        engine.emit(ran)
        if ran.status == "applied":
            try:
                handle.resolve(act.decode_result(ran.result))
            except Exception as exc:
                handle.fail(WorkflowError(f"local activity {act.name}: result does not fit: {exc}"))
        elif ran.retry_at is not None:
            timer = engine.timer(ran.retry_at, f"retry of local activity {act.name}")
            timer.on_done(lambda _: self._attempt(act, body, seq, attempt + 1, handle))
        else:
            error_type, final = failure(ran.code)
            reason = ran.error or ran.status
            handle.fail(
                ActivityError(seq, act.name, error_type, reason, attempt, non_retryable=final)
            )

    def _run(
        self, act: Activity[Any, Any], body: dict[str, Any], seq: int, attempt: int
    ) -> LocalActivityRan:
        engine = self.engine
        info = ActivityInfo(
            name=act.name,
            workflow=engine.address,
            seq=seq,
            attempt=attempt,
            idempotency_key=f"{step_prefix(engine.address, engine.run)}#{seq}",
        )
        done = run_local_attempt(act, body, info)
        again = None
        if done.status != "applied":
            first = self._first.get(seq, engine.now())
            s2c = act.call_options.schedule_to_close
            again = retry_at(act.retry, s2c, attempt, done.code, first, engine.now())
        return LocalActivityRan(
            seq=seq,
            name=act.name,
            attempt=attempt,
            status=done.status,
            result=done.result,
            error=done.error,
            code=done.code,
            retry_at=again,
        )
