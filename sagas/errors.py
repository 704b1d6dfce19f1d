"""Errors of the workflow layer: one root, each named for what happened.

Two kinds matter to workflow authors: :class:`StepRejected` / :class:`StepFailed` (a call
did not take effect; catch them to react) and everything else, which is about a workflow
that is defined, started or replayed wrongly. The API maps these to HTTP status codes in
one place.
"""

from __future__ import annotations

from typing import Any


class SagasError(Exception):
    """Root of every error the workflow layer raises."""


class WorkflowDefinitionError(SagasError, TypeError):
    """A workflow, its run function or one of its queries is declared wrongly."""


class UnknownWorkflowError(SagasError, LookupError):
    """No workflow type (or no query or signal of that name) is registered."""


class WorkflowNotFoundError(SagasError, LookupError):
    """No execution with that workflow id has started (or its start is not processed yet)."""


class InvalidWorkflowInputError(SagasError, ValueError):
    """The input of a start, the payload of a signal or a query's arguments do not fit."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or []


class WorkflowParkedError(SagasError):
    """The execution is parked (its history does not replay with the current code)."""


class WorkflowClosedError(SagasError):
    """The execution has finished (or is compensating) and takes no such message."""

    def __init__(self, command_id: str, reason: str) -> None:
        super().__init__(reason)
        self.command_id = command_id
        self.reason = reason


class WorkflowRefusedError(SagasError):
    """The execution looked at the request and refused it (an update's validator, a repair
    that does not fit); nothing was recorded."""

    def __init__(self, command_id: str, reason: str) -> None:
        super().__init__(reason)
        self.command_id = command_id
        self.reason = reason


class StepFailed(SagasError):  # noqa: N818 - what a workflow catches: the verdict on a step
    """A call made by a workflow did not take effect.

    ``status`` is the entity's outcome: ``rejected`` (a domain rule refused it; see
    :class:`StepRejected`), ``invalid`` (arguments or address did not fit at the
    worker) or ``dead_lettered`` (the handler crashed).
    """

    def __init__(
        self, seq: int, address: str, command: str, status: str, reason: str, attempts: int
    ) -> None:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"step {seq} {address}.{command} was {status}{tries}: {reason}")
        self.seq = seq
        self.address = address
        self.command = command
        self.status = status
        self.reason = reason
        self.attempts = attempts


class StepRejected(StepFailed):
    """A domain rule refused the call (``raise Rejected(...)`` in the entity); no effect."""


class ActivityError(StepFailed):
    """An activity did not succeed within its retry policy and timeouts.

    ``error_type`` is the class name of what it raised (or an ``ApplicationError``'s
    ``type``); ``timed_out`` whether the last attempt overran a timeout, ``timeout``
    which one (``start_to_close``, ``schedule_to_start``, ``heartbeat``,
    ``schedule_to_close``); ``non_retryable`` whether the error stopped the retries at once.
    """

    def __init__(
        self,
        seq: int,
        name: str,
        error_type: str | None,
        reason: str,
        attempts: int,
        *,
        timed_out: bool = False,
        non_retryable: bool = False,
        timeout: str | None = None,
    ) -> None:
        super().__init__(seq, "activity", name, "failed", reason, attempts)
        self.error_type = error_type
        self.timed_out = timed_out
        self.timeout = timeout
        self.non_retryable = non_retryable


class ChildWorkflowError(StepFailed):
    """A child workflow did not complete: it compensated or failed (``status``), or its
    id belongs to an execution this parent did not start."""

    def __init__(self, seq: int, address: str, status: str, reason: str) -> None:
        super().__init__(seq, address, "start", status, reason, 1)
        self.child = address
        self.child_status = status


class WaitTimedOut(SagasError, TimeoutError):  # noqa: N818 - what a workflow catches
    """A wait with a ``timeout`` (a signal, a condition) was not satisfied in time.

    Raised where the wait is awaited; the signal, if it comes later, is kept for the next
    wait on it.
    """

    def __init__(self, what: str, timeout: str) -> None:
        super().__init__(f"no {what} within {timeout}")
        self.what = what
        self.timeout = timeout


class WorkflowError(SagasError):
    """Workflow code used the engine wrongly (e.g. awaited something that is not a step)."""


class ReplayError(SagasError):
    """Rebuilding an execution from its history failed; the execution is parked."""

    def __init__(self, address: str, message: str, position: int | None = None) -> None:
        super().__init__(f"{address}: {message}")
        self.address = address
        self.position = position


class NonDeterminismError(ReplayError):
    """Replaying the history with the current code did something else than the history.

    ``step`` names the step (the call's sequence number, or the history event) where
    they part; ``expected`` is what the history recorded, ``actual`` what the code did.
    """

    def __init__(
        self, address: str, position: int | None, step: str, expected: str, actual: str
    ) -> None:
        at = f"history event #{position}, " if position is not None else ""
        super().__init__(
            address,
            f"non-deterministic workflow code: replay diverged at {at}{step}: the history "
            f"has {expected}, but the code now does {actual}. Workflow code must make the "
            "same calls in the same order for the same inputs; deploy code that does, and "
            "the parked execution resumes when it is next loaded",
            position,
        )
        self.step = step
        self.expected = expected
        self.actual = actual
