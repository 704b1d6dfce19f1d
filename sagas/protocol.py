"""The messages of a workflow's life, and the verdicts on them, written once.

Who starts, signals or cancels an execution (the in-process client, the HTTP gateway)
builds its envelope here; the coordinator answers with an :class:`~eventstore.Outcome`
whose ``code`` is a :class:`Refusal` when it did not take the message, and
:func:`verdict` turns that outcome into the error a caller sees. Nobody reads a refusal
out of its wording.

- a start's command id is ``workflow:<Type>/<id>#start``: the same workflow id twice is
  the same execution (the coordinator answers a second start with the first);
- a signal or a cancellation gets a new command id per request (an Idempotency-Key
  names one at the HTTP edge); cancelling a cancelled execution changes nothing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from actors import Envelope, HandlerCrashedError, new_command_id
from actors.envelopes import prevalidated
from eventstore import JSONDict, Outcome
from sagas.definition import AnyWorkflow
from sagas.errors import (
    InvalidWorkflowInputError,
    WorkflowClosedError,
    WorkflowNotFoundError,
    WorkflowParkedError,
    WorkflowRefusedError,
)


class Refusal(StrEnum):
    """Why an execution did not take a message (``Outcome.code``)."""

    NOT_STARTED = "not_started"
    FINISHED = "finished"
    """It completed, compensated or failed: it takes nothing more."""
    CLOSING = "closing"
    """It is compensating: it takes no more signals."""
    PARKED = "parked"
    """Its history no longer replays with the deployed code."""
    UPDATE_REFUSED = "update_refused"
    """An update's validator or handler refused it; nothing was recorded."""
    NOT_REPAIRABLE = "not_repairable"
    """A compensation repair that does not fit: not failed, not the failed one, no reason."""


def start_command_id(address: str) -> str:
    return f"{address}#start"


def start_envelope(wf: AnyWorkflow, workflow_id: str, input_json: Any) -> Envelope:
    """The start of ``wf`` as ``workflow_id``, its input already in JSON form."""
    address = wf.address(workflow_id)
    return prevalidated(
        start_command_id(address), address, "control", "start", {"input": input_json}, None
    )


def signal_envelope(
    wf: AnyWorkflow,
    workflow_id: str,
    name: str,
    payload_json: Any,
    *,
    reply_to: str | None,
    command_id: str | None = None,
) -> Envelope:
    """A signal, its payload already validated and in JSON form."""
    return prevalidated(
        command_id or new_command_id(),
        wf.address(workflow_id),
        "signal",
        name,
        {"payload": payload_json},
        reply_to,
    )


def cancel_envelope(
    wf: AnyWorkflow,
    workflow_id: str,
    reason: str,
    *,
    reply_to: str | None,
    command_id: str | None = None,
) -> Envelope:
    """A request to stop and compensate."""
    return prevalidated(
        command_id or new_command_id(),
        wf.address(workflow_id),
        "control",
        "cancel",
        {"reason": reason[:500]},
        reply_to,
    )


def update_envelope(
    wf: AnyWorkflow,
    workflow_id: str,
    name: str,
    args: JSONDict,
    *,
    reply_to: str | None,
    command_id: str | None = None,
) -> Envelope:
    """A caller's update of a running execution; its outcome carries the result."""
    return prevalidated(
        command_id or new_command_id(),
        wf.address(workflow_id),
        "control",
        "update",
        {"name": name, "args": args},
        reply_to,
    )


def repair_envelope(
    wf: AnyWorkflow,
    workflow_id: str,
    index: int,
    action: str,
    reason: str,
    *,
    reply_to: str | None,
    command_id: str | None = None,
) -> Envelope:
    """A person's repair of a failed compensation: retry it, or skip it with a reason."""
    return prevalidated(
        command_id or new_command_id(),
        wf.address(workflow_id),
        "control",
        "repair",
        {"index": index, "action": action, "reason": reason[:500]},
        reply_to,
    )


def verdict(outcome: Outcome[Any]) -> Outcome[Any]:
    """The outcome if the execution took the message; the caller's error if not."""
    if outcome.status == "applied":
        return outcome
    reason = outcome.error or outcome.status
    if outcome.status == "invalid":
        raise InvalidWorkflowInputError(reason)
    if outcome.status == "dead_lettered":
        raise HandlerCrashedError(outcome.command_id, reason)
    code = outcome.code
    if code == Refusal.NOT_STARTED:
        raise WorkflowNotFoundError(reason)
    if code == Refusal.PARKED:
        raise WorkflowParkedError(reason)
    if code in (Refusal.UPDATE_REFUSED, Refusal.NOT_REPAIRABLE):
        raise WorkflowRefusedError(outcome.command_id, reason)
    raise WorkflowClosedError(outcome.command_id, reason)
