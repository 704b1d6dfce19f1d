"""The messages between a workflow and the workers that run its activities, written once.

- a **task** (one attempt) goes from the coordinator, after the commit that recorded it,
  to the mailbox's activity topic: address ``activity:<name>``, command id
  ``workflow:<Type>/<id>#<step>`` (``.<attempt>`` from the second attempt on), answered
  with a reply to the workflow, correlated ``<step>.<attempt>`` like an entity call;
- a **heartbeat** goes from the running attempt to the workflow (control ``heartbeat``);
  an attempt with a schedule-to-start timeout also sends one, marked ``started``, when a
  worker takes it (only then: it costs a message, and nothing else needs to know);
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
from sagas.status import StepInfo

TIMED_OUT = "timed_out"
"""``Outcome.code`` of an attempt that overran a timeout: ``timed_out:<which>``, which is
one of :data:`TIMEOUTS` (histories written before it was named say ``timed_out``)."""
TIMEOUTS = ("start_to_close", "schedule_to_start", "heartbeat", "schedule_to_close")
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
    start_by: datetime | None = None
    """With a schedule-to-start timeout: the moment after which the workflow has failed
    this attempt as not taken in time; a worker that takes it later passes it over."""


def failure(code: str | None) -> tuple[str | None, bool]:
    """(error type, whether it stopped the retries) of an attempt's ``Outcome.code``; every
    timeout has the error type ``timed_out`` (see :func:`timeout_of` for which one)."""
    if code is not None and code.startswith(NON_RETRYABLE):
        return code.removeprefix(NON_RETRYABLE), True
    if code is not None and code.startswith(f"{TIMED_OUT}:"):
        return TIMED_OUT, False
    return code, False


def timeout_of(code: str | None) -> str | None:
    """Which timeout an attempt's ``Outcome.code`` says it overran (None: it did not)."""
    if code == TIMED_OUT:
        return "start_to_close"  # the only one histories recorded before they were named
    if code is not None and code.startswith(f"{TIMED_OUT}:"):
        return code.removeprefix(f"{TIMED_OUT}:")
    return None


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
    s2s = timeouts.schedule_to_start if timeouts else None
    due = step.not_before or step.scheduled_at
    task = ActivityTask(
        workflow=workflow,
        seq=step.seq,
        attempt=step.attempts,
        idempotency_key=idempotency_key(step),
        arguments=step.args,
        heartbeat_details=step.heartbeat_details,
        heartbeat_timeout=timeouts.heartbeat_timeout if timeouts else None,
        start_by=due + timedelta(seconds=s2s) if s2s is not None and due is not None else None,
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


def heartbeat_envelope(task: ActivityTask, details: Any, *, started: bool = False) -> Envelope:
    args: dict[str, Any] = {"seq": task.seq, "attempt": task.attempt, "details": details}
    if started:
        args["started"] = True
    return Envelope(address=task.workflow, kind="control", name="heartbeat", args=args)


def timeout_reply(
    workflow: str, step: StepInfo, correlation: str, overran: tuple[str, str]
) -> Envelope:
    which, why = overran
    outcome: Outcome[Any] = Outcome(
        step.command_id,
        step.address,
        step.command,
        "rejected",
        error=why,
        code=f"{TIMED_OUT}:{which}",
    )
    return reply_envelope(workflow, outcome, correlation)


def overrun(step: StepInfo, now: datetime) -> tuple[str, str] | None:
    """Which timeout the running attempt has overrun and why, if it has: start-to-close,
    schedule-to-start, heartbeat or schedule-to-close (measured from when the attempt was
    due, which is when it was sent)."""
    options = step.activity
    if options is None:
        return None
    started = step.not_before or step.scheduled_at or now
    if now - started > timedelta(seconds=options.start_to_close):
        why = f"overran its start-to-close timeout of {options.start_to_close:g}s"
        return "start_to_close", why
    s2s = options.schedule_to_start
    taken = step.started_at is not None and step.started_at >= started
    if s2s is not None and not taken and now - started > timedelta(seconds=s2s):
        return "schedule_to_start", (
            f"was not taken by any activity worker within its schedule-to-start timeout of "
            f"{s2s:g}s (is a worker running activity {step.command!r}?)"
        )
    if options.heartbeat_timeout is not None:
        beat = step.heartbeat_at if step.heartbeat_at and step.heartbeat_at > started else started
        if now - beat > timedelta(seconds=options.heartbeat_timeout):
            return "heartbeat", (
                f"sent no heartbeat within its heartbeat timeout of {options.heartbeat_timeout:g}s"
            )
    if options.schedule_to_close is not None:
        first = step.first_scheduled_at or started
        if now - first > timedelta(seconds=options.schedule_to_close):
            return "schedule_to_close", (
                f"overran its schedule-to-close timeout of {options.schedule_to_close:g}s"
            )
    return None
