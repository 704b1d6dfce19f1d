"""The messages between a workflow and the workers that run its activities, written once.

- a **task** (one attempt) goes from the coordinator, after the commit that recorded it,
  to the mailbox's activity topic: address ``activity:<name>``, command id
  ``workflow:<Type>/<id>#<step>`` (``.<attempt>`` from the second attempt on), answered
  with a reply to the workflow, correlated ``<step>.<attempt>`` like an entity call;
- a **heartbeat** goes from the running attempt to the workflow (control ``heartbeat``);
- a **timeout** is a reply the coordinator sends itself when an attempt overran, so that
  it enters the history as an input and replays the same way.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from actors import ACTIVITY_ROUTE, Envelope
from actors.envelopes import reply_envelope
from eventstore import Outcome
from sagas.fold import StepInfo

TIMED_OUT = "timed_out"
"""``Outcome.code`` of an attempt that overran its start-to-close or heartbeat timeout."""
NON_RETRYABLE = "non_retryable:"
"""Prefix of the ``Outcome.code`` of an error the activity marked non-retryable itself
(``non_retryable:CardDeclined``)."""
CANCELLED = "ActivityCancelled"
"""Error type of an attempt that stopped because its workflow was cancelled or finished."""
UNKNOWN_ACTIVITY = "unknown_activity"
"""``Outcome.code`` when the worker that took the task does not run that activity; retried
(during a rolling deployment, the next attempt may reach a worker that does)."""


class ActivityTask(BaseModel):
    """The body (``Envelope.args``) of one attempt's task."""

    model_config = ConfigDict(frozen=True)

    workflow: str
    seq: int
    attempt: int
    idempotency_key: str
    arguments: dict[str, Any]
    heartbeat_details: Any = None
    heartbeat_timeout: float | None = None


def failure(code: str | None) -> tuple[str | None, bool]:
    """(error type, whether it stopped the retries) of an attempt's ``Outcome.code``."""
    if code is not None and code.startswith(NON_RETRYABLE):
        return code.removeprefix(NON_RETRYABLE), True
    return code, False


def is_activity_step(step: StepInfo) -> bool:
    return step.address.startswith(ACTIVITY_ROUTE)


def activity_address(name: str) -> str:
    return f"{ACTIVITY_ROUTE}{name}"


def idempotency_key(step: StepInfo) -> str:
    """The same for every attempt of one step, and different in each run of an execution
    that continued as new: the step's first command id (``<address>[~<run>]#<step>``)."""
    suffix = f".{step.attempts}"
    return step.command_id.removesuffix(suffix) if step.attempts > 1 else step.command_id


def task_envelope(workflow: str, step: StepInfo, correlation: str) -> Envelope:
    timeouts = step.activity
    task = ActivityTask(
        workflow=workflow,
        seq=step.seq,
        attempt=step.attempts,
        idempotency_key=idempotency_key(step),
        arguments=step.args,
        heartbeat_details=step.heartbeat_details,
        heartbeat_timeout=timeouts.heartbeat_timeout if timeouts else None,
    )
    return Envelope(
        command_id=step.command_id,
        address=step.address,
        kind="command",
        name=step.command,
        args=task.model_dump(mode="json"),
        reply_to=f"actor:{workflow}",
        correlation=correlation,
    )


def heartbeat_envelope(task: ActivityTask, details: Any) -> Envelope:
    return Envelope(
        address=task.workflow,
        kind="control",
        name="heartbeat",
        args={"seq": task.seq, "attempt": task.attempt, "details": details},
    )


def timeout_reply(workflow: str, step: StepInfo, correlation: str, why: str) -> Envelope:
    outcome: Outcome[Any] = Outcome(
        step.command_id, step.address, step.command, "rejected", error=why, code=TIMED_OUT
    )
    return reply_envelope(workflow, outcome, correlation)


def overrun(step: StepInfo, now: datetime) -> str | None:
    """Why the running attempt has overrun, if it has: start-to-close, heartbeat or
    schedule-to-close (measured from when the attempt was due, which is when it was sent)."""
    options = step.activity
    if options is None:
        return None
    started = step.not_before or step.scheduled_at or now
    if now - started > timedelta(seconds=options.start_to_close):
        return f"overran its start-to-close timeout of {options.start_to_close:g}s"
    if options.heartbeat_timeout is not None:
        beat = step.heartbeat_at if step.heartbeat_at and step.heartbeat_at > started else started
        if now - beat > timedelta(seconds=options.heartbeat_timeout):
            return (
                f"sent no heartbeat within its heartbeat timeout of {options.heartbeat_timeout:g}s"
            )
    if options.schedule_to_close is not None:
        first = step.first_scheduled_at or started
        if now - first > timedelta(seconds=options.schedule_to_close):
            return f"overran its schedule-to-close timeout of {options.schedule_to_close:g}s"
    return None
