"""Activities: the side effects a workflow decides on and a worker performs.

Workflows decide, activities act. An activity is an ordinary function (sync or async)
declared with :func:`activity` and listed in the domain (``Domain(..., activities=...)``).
A workflow runs one with ``await ctx.execute_activity(charge_card, card, amount)``: the
call is typed by the function's signature, its arguments are validated before anything
is recorded, and its result is decoded to the declared return type.

An attempt may run more than once (a worker killed mid-attempt, a reply lost): every
attempt of one call sees the same :attr:`ActivityInfo.idempotency_key`, to deduplicate in
the outside system. Inside an attempt, :func:`activity_info` says which attempt this is and
:func:`heartbeat` reports progress; the next attempt reads the last details reported.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import inspect
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from actors import RetryPolicy
from eventstore import details, explain
from sagas.errors import InvalidWorkflowInputError, WorkflowDefinitionError

P = ParamSpec("P")
R = TypeVar("R")


class ApplicationError(Exception):
    """An error an activity raises on purpose; ``non_retryable=True`` stops the retries
    at once (a card declined stays declined), whatever the policy allows."""

    def __init__(self, message: str, *, type: str | None = None, non_retryable: bool = False):
        super().__init__(message)
        self.type = type or "ApplicationError"
        self.non_retryable = non_retryable


class ActivityCancelledError(Exception):
    """Raised by :func:`heartbeat` once the workflow no longer wants the attempt (it was
    cancelled or has finished): clean up and let it propagate."""


class ActivityOptions(BaseModel):
    """How one call of an activity is run: timeouts in seconds, retries by the policy.

    ``start_to_close`` bounds one attempt, ``schedule_to_close`` all attempts together
    (retries included), ``heartbeat_timeout`` the silence between two heartbeats, and
    ``schedule_to_start`` how long an attempt may wait for a worker to take it (no
    activity worker running, all of them busy): a task nobody took in time is failed as
    timed out and retried, rather than left to wait out its whole start-to-close.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_to_close: float = Field(default=60.0, gt=0, le=86_400 * 7)
    schedule_to_close: float | None = Field(default=None, gt=0, le=86_400 * 365)
    heartbeat_timeout: float | None = Field(default=None, gt=0, le=86_400)
    schedule_to_start: float | None = Field(default=None, gt=0, le=86_400 * 7)


DEFAULT_ACTIVITY_RETRY = RetryPolicy()
"""Ten attempts, 1 s doubling to at most 60 s, unless the call says otherwise."""


@dataclass(frozen=True)
class ActivityInfo:
    """What an attempt knows about itself."""

    name: str
    workflow: str
    seq: int
    attempt: int
    idempotency_key: str
    """The same for every attempt of one call: ``workflow:Type/id#step``."""
    heartbeat_details: Any = None
    """What the previous attempt last reported with :func:`heartbeat` (None at first)."""
    heartbeat_timeout: float | None = None


_NOTHING: Any = object()
_JSON: TypeAdapter[Any] = TypeAdapter(Any)


@dataclass
class _Attempt:
    info: ActivityInfo
    report: Callable[[Any], None]
    cancelled: threading.Event = field(default_factory=threading.Event)
    throttle: float | None = None
    """Seconds between two heartbeats sent (None: the default rule of :func:`heartbeat`)."""
    last_sent: float = 0.0
    pending: Any = _NOTHING
    sent: Any = _NOTHING

    def unsent(self) -> tuple[bool, Any]:
        """Details reported but held back by the throttle (sent before a failure answer,
        so that the next attempt resumes from the latest)."""
        held = self.pending is not _NOTHING and self.pending != self.sent
        return held, self.pending if held else None


_CURRENT: contextvars.ContextVar[_Attempt] = contextvars.ContextVar("entityflow_activity")


def activity_info() -> ActivityInfo:
    """The running attempt's info; only inside an activity."""
    return _current().info


def heartbeat(details: Any = None) -> None:
    """Report progress (JSON-able ``details``). Throttled: at most one message per second,
    or per third of the heartbeat timeout if that is shorter; the latest details win.

    Raises :class:`ActivityCancelledError` once the workflow was cancelled or finished,
    and ``TypeError`` at once for details that cannot be recorded as JSON (not later, in
    the worker, where the activity would see an unrelated failure).
    """
    attempt = _current()
    try:
        _JSON.dump_json(details)
    except Exception as exc:
        raise TypeError(
            f"heartbeat details must be JSON values (dicts, lists, strings, numbers, "
            f"models), not {type(details).__name__}: {exc}"
        ) from None
    attempt.pending = details
    now = time.monotonic()
    timeout = attempt.info.heartbeat_timeout
    every = attempt.throttle
    if every is None:
        every = min(1.0, timeout / 3) if timeout else 1.0
    if now - attempt.last_sent >= every:
        attempt.last_sent = now
        attempt.sent = details
        attempt.report(details)
    if attempt.cancelled.is_set():
        raise ActivityCancelledError(
            f"{attempt.info.idempotency_key}: the workflow no longer wants this attempt"
        )


def _current() -> _Attempt:
    try:
        return _CURRENT.get()
    except LookupError:
        raise RuntimeError(
            "activity_info() and heartbeat() work only inside a running activity"
        ) from None


class Activity(Generic[P, R]):
    """A declared activity: its name (stored in histories), its function, and the models
    that validate its arguments and result."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        if not callable(fn):
            raise WorkflowDefinitionError(f"activity {name!r} must be a function")
        self.fn = fn
        self.name = name
        self.is_async = inspect.iscoroutinefunction(fn)
        self.signature = inspect.signature(fn)
        hints = get_type_hints(fn)
        fields: dict[str, Any] = {}
        for pname, param in self.signature.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise WorkflowDefinitionError(
                    f"activity {name!r}: *args and **kwargs cannot be recorded; name each parameter"
                )
            if pname not in hints:
                raise WorkflowDefinitionError(
                    f"activity {name!r}: parameter {pname!r} needs a type annotation (it is "
                    "validated and recorded)"
                )
            default = ... if param.default is param.empty else param.default
            fields[pname] = (hints[pname], default)
        self.arguments: type[BaseModel] = create_model(
            f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
        self.output: TypeAdapter[Any] = TypeAdapter(hints.get("return", Any))
        self.retry = DEFAULT_ACTIVITY_RETRY
        self.call_options = ActivityOptions()

    def options(
        self,
        *,
        retry: RetryPolicy | None = None,
        start_to_close: float | None = None,
        schedule_to_close: float | None = None,
        heartbeat_timeout: float | None = None,
        schedule_to_start: float | None = None,
    ) -> Activity[P, R]:
        """The same activity, run with these options (a new reference; this one is kept).

        ``start_to_close`` (default 60 s) bounds one attempt, ``schedule_to_close`` all of
        them, ``heartbeat_timeout`` the silence between heartbeats, ``schedule_to_start``
        the wait in the task queue until a worker takes the attempt; ``retry`` defaults to
        ten attempts, 1 s doubling to at most 60 s.
        """
        changed = copy.copy(self)
        if retry is not None:
            changed.retry = retry
        update = {
            k: v
            for k, v in {
                "start_to_close": start_to_close,
                "schedule_to_close": schedule_to_close,
                "heartbeat_timeout": heartbeat_timeout,
                "schedule_to_start": schedule_to_start,
            }.items()
            if v is not None
        }
        try:
            changed.call_options = ActivityOptions.model_validate(
                {**self.call_options.model_dump(), **update}
            )
        except ValidationError as exc:
            raise InvalidWorkflowInputError(
                f"invalid options for activity {self.name}: {explain(exc)}", details(exc)
            ) from exc
        return changed

    def encode_arguments(self, args: Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The JSON form of a call's arguments, validated against the signature."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidWorkflowInputError(f"activity {self.name}: {exc}") from exc
        try:
            parsed = self.arguments.model_validate(dict(bound.arguments))
        except ValidationError as exc:
            raise InvalidWorkflowInputError(
                f"invalid arguments for activity {self.name}: {explain(exc)}", details(exc)
            ) from exc
        return parsed.model_dump(mode="json")

    def decode_arguments(self, data: dict[str, Any]) -> dict[str, Any]:
        parsed = self.arguments.model_validate(data)
        return {name: getattr(parsed, name) for name in type(parsed).model_fields}

    def encode_result(self, value: Any) -> Any:
        return self.output.dump_python(self.output.validate_python(value), mode="json")

    def decode_result(self, data: Any) -> Any:
        return self.output.validate_python(data)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Calling it directly calls the function: a test can run it without a worker."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<activity {self.name}>"


class _Declare(Protocol):
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]], /) -> Activity[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Activity[P, R]: ...


@overload
def activity(fn: Callable[P, Coroutine[Any, Any, R]], /) -> Activity[P, R]: ...
@overload
def activity(fn: Callable[P, R], /) -> Activity[P, R]: ...
@overload
def activity(*, name: str) -> _Declare: ...
def activity(fn: Any = None, /, *, name: str | None = None) -> Any:
    """Declare a function an activity (``@activity`` or ``@activity(name="charge")``).

    The name is what histories record: choose it once (renaming the function later must
    not change it), by default the function's ``__name__``.
    """

    def wrap(f: Any) -> Activity[Any, Any]:
        return Activity(f, name or f.__name__)

    return wrap(fn) if fn is not None else wrap


def run_attempt(act: Activity[Any, Any], arguments: dict[str, Any], attempt: _Attempt) -> Any:
    """Run one attempt in this thread with its info and heartbeat in context; the JSON
    result, or the exception it raised."""
    kwargs = act.decode_arguments(arguments)
    token = _CURRENT.set(attempt)
    try:
        if act.is_async:
            result: Any = asyncio.run(
                cast(Callable[..., Coroutine[Any, Any, Any]], act.fn)(**kwargs)
            )
        else:
            result = act.fn(**kwargs)
    finally:
        _CURRENT.reset(token)
    return act.encode_result(result)


__all__ = [
    "Activity",
    "ActivityCancelledError",
    "ActivityInfo",
    "ActivityOptions",
    "ApplicationError",
    "activity",
    "activity_info",
    "heartbeat",
]
