"""What workflow code may do: the context handed to ``run(ctx, input)``.

Everything a workflow awaits is a :class:`~sagas.pending.Pending` made by the context (a
call, a signal, a timer, a gather, a race); the engine drives the coroutine itself,
without an event loop, so the same inputs always make the code take the same path. Time,
randomness and ids come from the context, which takes them from the history. The context
reaches the engine only through :class:`~sagas.engine_view.EngineView`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, NoReturn, ParamSpec, Protocol, TypeVar

from actors import Command, EntitySpec, RetryPolicy, UnknownCommandError, check_entity_id
from actors.retry import DEFAULT_COMPENSATION_RETRY
from eventstore import JSONDict
from sagas.activities import Activity
from sagas.engine_view import EngineView
from sagas.errors import WaitTimedOut, WorkflowError
from sagas.pending import CallHandle, Decoder, Pending
from sagas.signals import Signal

T = TypeVar("T")
O_co = TypeVar("O_co", covariant=True)


class ChildWorkflow(Protocol[O_co]):
    """What ``ctx.child`` takes: a workflow definition (``Workflow[I, O]``)."""

    def address(self, workflow_id: str) -> str: ...

    def encode_input(self, data: Any) -> Any: ...

    def decode_output(self, data: Any) -> O_co: ...


P = ParamSpec("P")
R = TypeVar("R")


class CompensationScope:
    """``with ctx.compensation(...):`` registers on entry and guards the calls inside.

    The compensation is registered before the block runs. When the saga compensates,
    it is skipped if none of the calls made inside the block took effect (each was
    rejected, invalid or crashed): there is nothing to undo.
    """

    def __init__(
        self, engine: EngineView, address: str, command: str, args: JSONDict, retry: RetryPolicy
    ) -> None:
        self._engine = engine
        self._target = (address, command, args, retry)
        self.index: int | None = None

    def __enter__(self) -> CompensationScope:
        address, command, args, retry = self._target
        self.index = self._engine.register_compensation(address, command, args, retry, True)
        self._engine.open_guard(self.index)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.index is not None:
            self._engine.close_guard(self.index)


class WorkflowContext:
    """Handed to ``run(ctx, input)``: the only way workflow code touches the world."""

    def __init__(self, engine: EngineView) -> None:
        self._engine = engine

    @property
    def workflow_id(self) -> str:
        return self._engine.workflow_id

    @property
    def workflow_type(self) -> str:
        return self._engine.workflow_type

    @property
    def address(self) -> str:
        return self._engine.address

    @property
    def memo(self) -> dict[str, Any]:
        """JSON-able values the workflow wants its queries to see (rebuilt on replay)."""
        return self._engine.memo

    @property
    def is_replaying(self) -> bool:
        """True while the code re-runs recorded history (e.g. to skip logging twice)."""
        return self._engine.replaying

    # -- deterministic values -----------------------------------------------------------

    def now(self) -> datetime:
        """The time the current input (start, reply, signal) was handled, from the history."""
        return self._engine.now()

    def random(self) -> float:
        """A float in [0, 1) from a generator seeded in the history."""
        return self._engine.random_bits(53) / (1 << 53)

    def uuid4(self) -> uuid.UUID:
        """A version-4 UUID drawn from the same seeded generator."""
        return uuid.UUID(int=self._engine.random_bits(128), version=4)

    # -- versioning ----------------------------------------------------------------------

    def patched(self, change_id: str) -> bool:
        """Whether to take the new branch of a code change (``if ctx.patched("x"): new``).

        True for executions that reach this point with this code (recorded in their
        history, so their replays agree); False for executions that passed this point
        before the change, so they replay the old branch and run on. Once no execution
        older than the change is left, replace the ``if`` by its new branch and keep
        ``ctx.deprecate_patch("x")`` there until histories with the patch are gone too.
        """
        return self._engine.patched(_change_id(change_id))

    def deprecate_patch(self, change_id: str) -> None:
        """The new branch is all there is: histories that recorded the patch still replay
        (and it is still recorded, for code that still asks ``patched``)."""
        self._engine.patched(_change_id(change_id))

    # -- steps ----------------------------------------------------------------------------

    def call(
        self, handler: Command[P, R], entity_id: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> CallHandle[R]:
        """Send a command to an entity; await the handle for its result (the declared type).

        The call is scheduled at once (so several calls can run together, see
        :meth:`gather`). A refusal raises :class:`~sagas.StepRejected` where it is
        awaited; ``Account.withdraw.options(retry=RetryPolicy(...))`` tries again (with a
        new command id) on refusals and crashes.
        """
        address, body, decode = _target(handler, entity_id, args, kwargs)
        return self._engine.schedule_call(
            address, handler.name, body, handler.call_options.retry, decode
        )

    def execute_activity(
        self, act: Activity[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> CallHandle[R]:
        """Run an activity on a worker; await the handle for its result (the declared type).

        The attempt is recorded before it is sent and retried by the activity's policy
        (``charge.options(retry=RetryPolicy(...), start_to_close=30)``); its final failure
        raises :class:`~sagas.ActivityError` where it is awaited. Arguments that do not
        fit the function's signature raise here, before anything is recorded.
        """
        body = act.encode_arguments(args, kwargs)
        return self._engine.schedule_activity(
            act.name, body, act.retry, act.call_options, act.decode_result
        )

    def run_local(self, act: Activity[P, R], /, *args: P.args, **kwargs: P.kwargs) -> CallHandle[R]:
        """Run a short activity inline, on this worker; await the handle for its result.

        No trip through the activity task log: for side effects of milliseconds (an id
        from another service, a cache write). Each attempt's outcome is recorded before
        the code goes on and never run again on replay; failures are retried by the
        activity's policy after a durable timer, and the final one raises
        :class:`~sagas.ActivityError` here. Longer work belongs in
        :meth:`execute_activity` (the batch waits while a local activity runs).
        """
        body = act.encode_arguments(args, kwargs)
        return self._engine.run_local(act, body)

    def child(
        self,
        workflow: ChildWorkflow[R],
        input: Any,
        *,
        workflow_id: str | None = None,
        parent_close: Literal["cancel", "abandon"] = "cancel",
    ) -> CallHandle[R]:
        """Start a child workflow; await the handle for its result (its output type).

        Its id defaults to ``<this id>-<step>`` (deterministic). A child that compensates
        or fails raises :class:`~sagas.ChildWorkflowError` where it is awaited, so the
        parent can compensate its own steps. If this workflow's code ends while the
        child runs, the child is cancelled (``parent_close="abandon"`` lets it run on).
        Not awaiting the handle starts the child without waiting for it.
        """
        wid = (
            workflow_id
            if workflow_id is not None
            else f"{self.workflow_id}-{self._engine.next_seq()}"
        )
        body = workflow.encode_input(input)
        return self._engine.schedule_child(
            workflow.address(wid), body, parent_close, workflow.decode_output
        )

    def add_compensation(
        self, handler: Command[P, Any], entity_id: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """Register a compensation that runs, unconditionally, if the saga fails later.

        Prefer :meth:`compensation` as a ``with`` block around the step it undoes: it is
        skipped when that step did not take effect.
        """
        address, body, _ = _target(handler, entity_id, args, kwargs)
        retry = handler.call_options.retry or DEFAULT_COMPENSATION_RETRY
        self._engine.register_compensation(address, handler.name, body, retry, False)

    def compensation(
        self, handler: Command[P, Any], entity_id: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> CompensationScope:
        """``with ctx.compensation(Account.deposit, a, amount=x): await ctx.call(...)``.

        Registered before the block runs; when the saga compensates, run newest first,
        retried by ``options(retry=...)`` (default: ten attempts over about four minutes).
        """
        address, body, _ = _target(handler, entity_id, args, kwargs)
        retry = handler.call_options.retry or DEFAULT_COMPENSATION_RETRY
        return CompensationScope(self._engine, address, handler.name, body, retry)

    def continue_as_new(self, input: Any) -> Pending[NoReturn]:
        """``return await ctx.continue_as_new(next_input)``: end this run, start the next
        one: same workflow id, empty history, ``next_input`` (the workflow's input type).

        For executions that live for months: the history, and so the time to load it,
        stays that of one run. Once calls in flight are answered, this run ends and the
        next starts in the same commit, with its timers cancelled and the signals it did
        not read delivered to the next run. Input that does not fit the workflow's input
        type raises :class:`~sagas.InvalidWorkflowInputError` here, recording nothing.
        """
        return self._engine.continue_as_new(input)

    def wait_signal(self, signal: Signal[T], *, timeout: timedelta | None = None) -> Pending[T]:
        """Wait for the next such signal (signals that came earlier are buffered).

        With ``timeout``, raises :class:`~sagas.WaitTimedOut` where it is awaited if the
        signal has not come by then (one that comes later is kept for the next wait).
        Which came first, the signal or the deadline, is recorded: replay agrees.
        """
        waiting = self._engine.wait_signal(signal.name)
        if timeout is None:
            return waiting
        timer = self._engine.start_timer(timeout, f"timeout of signal {signal.name}")
        return _or_timeout(self.first(waiting, timer), waiting, f"signal {signal.name!r}", timeout)

    def wait_condition(
        self, predicate: Callable[[], bool], *, timeout: timedelta | None = None
    ) -> Pending[None]:
        """Wait until ``predicate()`` holds: a function of the workflow's own state (its
        memo, its locals), which updates (``@workflow.update``) and the code change.

        It is checked now and after everything the execution takes in, so it must be
        deterministic and cheap. With ``timeout``, raises :class:`~sagas.WaitTimedOut`
        where it is awaited if the condition has not held by then.
        """
        if not callable(predicate):
            raise WorkflowError(f"ctx.wait_condition takes a function, got {predicate!r}")
        waiting = self._engine.wait_condition(predicate, "condition")
        if timeout is None or waiting.done:
            return waiting
        timer = self._engine.start_timer(timeout, "timeout of a condition")
        return _or_timeout(self.first(waiting, timer), waiting, "condition", timeout)

    def sleep(self, delay: timedelta | datetime) -> Pending[None]:
        """A durable timer: await it to sleep for ``delay`` (or until an aware datetime).

        It survives restarts and costs no thread; race it against other steps with
        :meth:`first`. Negative or absurdly long delays (over ten years) are refused.
        """
        return self._engine.start_timer(delay, "sleep")

    def first(self, *steps: Pending[Any]) -> Pending[Pending[Any]]:
        """Wait for whichever of several steps finishes first; the value is that step.

        ``done = await ctx.first(reply, ctx.sleep(timedelta(hours=1)))`` then
        ``if done is reply: ...``. The others are abandoned: a losing timer is
        cancelled, a losing signal wait withdrawn; a call already sent still runs (its
        result is recorded; await it later if it matters).
        """
        _check_steps("ctx.first", steps)
        if not steps:
            raise WorkflowError("ctx.first needs at least one step to wait for")
        race: Pending[Pending[Any]] = Pending(f"first of {len(steps)}")

        def finished(step: Pending[Any]) -> None:
            if race.done:
                return
            race.resolve(step)
            for other in steps:
                if other is not step:
                    other.abandon()

        for step in steps:
            step.on_done(finished)
        race.on_abandon(lambda: _abandon_all(steps))
        return race

    def gather(
        self, *steps: Pending[Any], fail_fast: bool = False, return_exceptions: bool = False
    ) -> Pending[list[Any]]:
        """Wait for several steps (calls, activities, children, signals, timers); their
        results in order.

        On a failure, by default every step is still waited for and then the first
        failure is raised, so none is left in flight. ``fail_fast=True`` raises the first
        failure at once and abandons the rest (timers are cancelled, signal waits
        withdrawn; a call, activity or child already sent still runs, and compensation
        waits for its answer). ``return_exceptions=True`` never raises: the list holds
        each step's result or its exception, for partial failures the code sorts out.
        """
        _check_steps("ctx.gather", steps)
        if fail_fast and return_exceptions:
            raise WorkflowError(
                "ctx.gather: fail_fast raises at the first failure and return_exceptions "
                "never raises; choose one"
            )
        gathered: Pending[list[Any]] = Pending(f"gather of {len(steps)}")
        gathered.on_abandon(lambda: _abandon_all(steps))

        def check(step: Pending[Any]) -> None:
            if gathered.done:
                return
            if fail_fast and step.failed:
                gathered.fail(_error_of(step))
                _abandon_all(steps)
                return
            if not all(s.done for s in steps):
                return
            if return_exceptions:
                gathered.resolve([_error_of(s) if s.failed else s.outcome() for s in steps])
                return
            failed = next((s for s in steps if s.failed), None)
            if failed is not None:
                gathered.fail(_error_of(failed))
                return
            gathered.resolve([s.outcome() for s in steps])

        if not steps:
            gathered.resolve([])
        for s in steps:
            s.on_done(check)
        return gathered


def _error_of(step: Pending[Any]) -> BaseException:
    try:
        step.outcome()
    except BaseException as exc:
        return exc
    raise AssertionError(f"{step!r} did not fail")  # pragma: no cover


def _change_id(change_id: str) -> str:
    if not isinstance(change_id, str) or not 0 < len(change_id) <= 200:
        raise WorkflowError(
            f"a patch's change id is a non-empty string of up to 200 characters, got {change_id!r}"
        )
    return change_id


def _abandon_all(steps: tuple[Pending[Any], ...]) -> None:
    for step in steps:
        step.abandon()


def _check_steps(what: str, steps: tuple[Any, ...]) -> None:
    for step in steps:
        if not isinstance(step, Pending):
            raise WorkflowError(
                f"{what} takes workflow steps (ctx.call, ctx.execute_activity, "
                f"ctx.wait_signal, ctx.sleep, ...), got {step!r}"
            )


def _or_timeout(
    race: Pending[Pending[Any]], waiting: Pending[T], what: str, timeout: timedelta
) -> Pending[T]:
    """The value of ``waiting`` if it won the race, else a :class:`WaitTimedOut`."""
    result: Pending[T] = Pending(f"{what} within {timeout}")

    def decided(_: Pending[Any]) -> None:
        if race.failed:
            try:
                race.outcome()
            except BaseException as exc:
                result.fail(exc)
            return
        winner = race.outcome()
        if winner is waiting:
            try:
                result.resolve(waiting.outcome())
            except BaseException as exc:
                result.fail(exc)
        else:
            result.fail(WaitTimedOut(what, str(timeout)))

    race.on_done(decided)
    result.on_abandon(race.abandon)
    return result


def _target(
    handler: Command[Any, Any], entity_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[str, JSONDict, Decoder]:
    """The address, validated arguments and result decoder of a call."""
    spec = EntitySpec.of(handler.entity)
    command = spec.compiled(handler)
    if command.kind != "command":
        raise UnknownCommandError(
            f"{handler!r} is a query, not a command: a workflow calls commands"
        )
    address = f"{spec.type_name}/{check_entity_id(entity_id)}"
    body: JSONDict = command.parse(handler.arguments(args, kwargs)).model_dump(mode="json")
    return address, body, command.decode_result
