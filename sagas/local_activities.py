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
