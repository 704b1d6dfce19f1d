"""The replay engine: drives one execution's coroutine, one input at a time.

Live and replay run the same code path. Each *input* (start, reply, signal, timer, cancel) is
fed to :meth:`Engine.feed`, which resumes the coroutine until it waits again and returns
the *decisions* it took (calls scheduled, compensations registered, the end). Live, the
coordinator records the input and its decisions together; on replay, :func:`replay`
feeds the recorded inputs and checks that the code takes the recorded decisions, raising
:class:`~sagas.NonDeterminismError` at the first difference.

The steps the code takes (calls, timers, signal waits, compensations) are recorded by
:class:`~sagas.engine_steps.EngineSteps`, which this class extends.

The saga machinery lives here too: when the code fails or is cancelled, the engine waits
for calls still in flight (their outcome decides whether a guarded compensation has
anything to undo), then runs the compensations newest first, one at a time, each retried
per its :class:`~sagas.RetryPolicy`.
"""

from __future__ import annotations

import contextlib
import random
from collections import deque
from collections.abc import Coroutine
from typing import Any, cast

from actors import RetryPolicy
from sagas.activity_tasks import TIMED_OUT, failure, timeout_of
from sagas.context import WorkflowContext
from sagas.engine_steps import EngineSteps
from sagas.errors import (
    ActivityError,
    ChildWorkflowError,
    SagasError,
    StepFailed,
    StepRejected,
    WorkflowError,
)
from sagas.history import (
    CallCompleted,
    CallScheduled,
    CancelRequested,
    ChildCancelRequested,
    ChildCompleted,
    Compensated,
    Compensating,
    CompensationRegistered,
    CompensationRepaired,
    CompensationSkipped,
    Completed,
    ContinuedAsNew,
    Decision,
    Failed,
    InputEvent,
    SignalReceived,
    Started,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    UpdateAccepted,
    UpdateCompleted,
)
from sagas.pending import Pending
from sagas.status import StepInfo

FINAL_PHASES = ("completed", "compensated", "failed")


def describe(exc: BaseException) -> str:
    if isinstance(exc, SagasError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def correlation(step: StepInfo) -> str:
    """What a reply to this attempt of a call carries, so a late reply of an earlier
    attempt is told apart."""
    return f"{step.seq}.{step.attempts}"


class Engine(EngineSteps):
    """One execution's code and its saga, in memory; its state is :attr:`record`.

    Every input and every decision is folded into the record as it happens, so the
    engine reads the status of its steps and compensations from the same fold that
    readers see; the steps the code takes are recorded by :class:`EngineSteps`.
    """

    # -- inputs ---------------------------------------------------------------------------

    def feed(self, event: InputEvent) -> list[Decision]:
        """Process one input; return the decisions the code and the saga took."""
        self._out = []
        self._now = event.at
        self._handover = (isinstance(event, Started) and event.run > 1) or (
            isinstance(event, SignalReceived) and event.carried
        )
        if isinstance(event, Started):
            if self.phase != "new":
                raise WorkflowError(f"{self.address} is already started")
            self.record.apply(event, event.at)
            self._start(event)
        elif isinstance(event, CallCompleted):
            self.record.apply(event, event.at)
            self._reply(event)
        elif isinstance(event, SignalReceived):
            self.record.apply(event, event.at)
            self._signal(event)
        elif isinstance(event, TimerFired):
            self.record.apply(event, event.at)
            self._timer_fired(event)
        elif isinstance(event, ChildCompleted):
            self.record.apply(event, event.at)
            self._child_completed(event)
        elif isinstance(event, CancelRequested):
            self.record.apply(event, event.at)
            self._cancel(event)
        elif isinstance(event, UpdateAccepted):
            self.record.apply(event, event.at)
            self._update(event)
        elif isinstance(event, CompensationRepaired):
            self.record.apply(event, event.at)  # compensating again: _settle goes on
        else:
            raise WorkflowError(f"{event.event_type} is not an input the engine knows")
        self._settle()
        out, self._out = self._out, []
        return out

    def _start(self, event: Started) -> None:
        self._rng = random.Random(event.seed)
        parsed = self.definition.parse_input(event.input)
        coro = self.definition.run_fn(WorkflowContext(self), parsed)
        self._coro = cast(Coroutine[Any, Any, Any], coro)
        self._drive()

    def _reply(self, event: CallCompleted) -> None:
        step = self.record.steps[event.seq]
        handle = self._handles.get(event.seq)
        child = self._children.get(event.seq)
        if child is not None and event.status == "applied":
            parent = event.result.get("parent") if isinstance(event.result, dict) else None
            if parent != self.address and handle is not None:  # the id was someone else's
                handle.fail(
                    ChildWorkflowError(
                        step.seq,
                        step.address,
                        "taken",
                        f"{step.address} already exists and was not started by this workflow",
                    )
                )
            self._drive()
            return
        if event.status == "applied":
            if step.compensation is None and handle is not None:
                try:
                    handle.resolve(self._decoders[event.seq](event.result))
                except Exception as exc:
                    handle.fail(
                        WorkflowError(
                            f"the result of {step.address}.{step.command} does not fit its "
                            f"declared type: {describe(exc)}"
                        )
                    )
        else:
            retry = step.retry
            if retry is not None and self._retryable(step, event, retry):
                self._retry(step, retry)
                return
            error = event.error or event.status
            if step.compensation is not None:
                comp = self.record.compensations[step.compensation]
                self._emit(
                    Failed(
                        error=(
                            f"compensation #{comp.index} {comp.name} could not finish after "
                            f"{step.attempts} attempt(s): {event.status}: {error}; the saga "
                            f"failed with: {self.record.error}"
                        ),
                        compensation=comp.name,
                    )
                )
                return
            if handle is not None and step.activity is not None:
                error_type, final = failure(event.code)
                handle.fail(
                    ActivityError(
                        step.seq,
                        step.command,
                        error_type,
                        error,
                        step.attempts,
                        timed_out=error_type == TIMED_OUT,
                        timeout=timeout_of(event.code),
                        non_retryable=final,
                    )
                )
            elif handle is not None:
                kind = StepRejected if event.status == "rejected" else StepFailed
                handle.fail(
                    kind(step.seq, step.address, step.command, event.status, error, step.attempts)
                )
        self._drive()

    def _retryable(self, step: StepInfo, event: CallCompleted, retry: RetryPolicy) -> bool:
        """Whether another attempt is allowed: within the budget, not marked final by the
        error, and (for an activity) still inside its schedule-to-close."""
        if event.status == "invalid" or not retry.allows(step.attempts + 1):
            return False
        refused = event.status == "rejected" and step.activity is None
        if refused and step.compensation is None and not retry.retry_rejected:
            return False
        error_type, final = failure(event.code)
        if final or (error_type is not None and error_type in retry.non_retryable):
            return False
        options = step.activity
        if options is not None and options.schedule_to_close is not None:
            first = step.first_scheduled_at or self.now()
            next_start = self.now() + retry.delay(step.attempts + 1)
            if (next_start - first).total_seconds() >= options.schedule_to_close:
                return False
        return True

    def _retry(self, step: StepInfo, retry: RetryPolicy) -> None:
        attempt = step.attempts + 1
        self._emit(
            self._scheduled(
                step.seq,
                step.address,
                step.command,
                step.args,
                step.compensation,
                step.guards,
                retry,
                attempt=attempt,
                not_before=self.now() + retry.delay(attempt),
            ).model_copy(update={"activity": step.activity})
        )

    def _signal(self, event: SignalReceived) -> None:
        value = self.definition.decode_signal(event.name, event.payload)
        waiters = self._waiters.get(event.name)
        if waiters:
            waiters.popleft().resolve(value)
        else:
            self._arrivals += 1
            self._signals.setdefault(event.name, deque()).append(
                (self._arrivals, value, event.payload)
            )
        self._drive()

    def _update(self, event: UpdateAccepted) -> None:
        """Run the handler on the memo (checked beforehand, so it is expected to succeed;
        on replay it runs again), record its result, and let the code see the change."""
        spec = self.definition.update_spec(event.name)
        result = spec.apply(self.record.query_view(self.memo), event.args)
        self._emit(UpdateCompleted(name=event.name, result=result))
        self._drive()

    def _timer_fired(self, event: TimerFired) -> None:
        handle = self._timers.pop(event.seq, None)
        if handle is not None:
            handle.resolve(None)
        self._drive()

    def _code_ended(self) -> None:
        """The code returned, raised or was cancelled: nobody waits for its timers, and
        children still running are cancelled (unless started to be abandoned)."""
        for timer in self.record.pending_timers():
            self._timers.pop(timer.seq, None)
            self._emit(TimerCancelled(seq=timer.seq))
        for child in self.record.running_children():
            if self._children.get(child.seq) == "cancel":
                address = self.record.steps[child.seq].address
                self._emit(ChildCancelRequested(seq=child.seq, address=address))

    def _child_completed(self, event: ChildCompleted) -> None:
        handle = self._handles.get(event.seq)
        if handle is not None:
            step = self.record.steps[event.seq]
            if event.status == "completed":
                try:
                    handle.resolve(self._decoders[event.seq](event.result))
                except Exception as exc:
                    handle.fail(WorkflowError(f"{step.address}: {describe(exc)}"))
            else:
                reason = event.error or event.status
                handle.fail(ChildWorkflowError(step.seq, step.address, event.status, reason))
        self._drive()

    def accepts_child_result(self, seq: int) -> bool:
        child = self.record.children.get(seq)
        return child is not None and child.status in ("starting", "running")

    def _cancel(self, event: CancelRequested) -> None:
        if self.phase not in ("running", "finishing"):
            return
        self.cancelled = True
        error = f"cancelled: {event.reason}" if event.reason else "cancelled"
        coro, self._coro = self._coro, None
        if coro is not None:
            self._driving = True
            try:
                # Code that awaits in a `finally` cannot run after cancellation: ignore it.
                with contextlib.suppress(Exception):
                    coro.close()
            finally:
                self._driving = False
        self._code_ended()
        self._emit(Compensating(error=error, cancelled=True))

    # -- driving the coroutine ---------------------------------------------------------

    def _drive(self) -> None:
        coro = self._coro
        self._driving = True
        try:
            while coro is not None:
                try:
                    if self._inject is not None:
                        exc, self._inject = self._inject, None
                        awaited = coro.throw(exc)
                    else:
                        awaited = coro.send(None)
                except StopIteration as stop:
                    self._coro = None
                    self._code_ended()
                    self._returned_value(stop.value)
                    return
                except Exception as exc:
                    self._coro = None
                    self._code_ended()
                    self._raised(exc)
                    return
                if self._next_input is not None:  # ctx.continue_as_new: this run's code ends
                    self._coro = None
                    with contextlib.suppress(Exception):
                        coro.close()
                    self._code_ended()
                    self._returned = True
                    return
                if not isinstance(awaited, Pending):
                    self._inject = WorkflowError(
                        f"workflow code awaited {awaited!r}, which is not a workflow step; only "
                        "workflow steps (ctx.call, ctx.wait_signal, ctx.sleep, ctx.gather, "
                        "ctx.first, ...) may be awaited (asyncio and other event loops cannot "
                        "run inside a workflow)"
                    )
                    continue
                if not awaited.done and not (self._check_conditions() and awaited.done):
                    return
        finally:
            self._driving = False

    def _returned_value(self, value: Any) -> None:
        try:
            self._result = self.definition.encode_output(value)
        except Exception as exc:
            self._raised(
                WorkflowError(
                    f"the workflow returned {value!r}, which does not fit its output type: {exc}"
                )
            )
            return
        self._returned = True

    def _raised(self, exc: Exception) -> None:
        self._emit(Compensating(error=describe(exc)))

    # -- the saga ----------------------------------------------------------------------

    def _settle(self) -> None:
        """After an input: finish, or compensate, once no forward call is in flight."""
        phase = self.phase
        if self._coro is not None or phase not in ("finishing", "compensating"):
            return
        record = self.record
        if record.forward_in_flight():
            return
        if phase == "finishing":
            self._emit(self._continued() if self.continuing else Completed(result=self._result))
            return
        if any(c.status == "running" for c in record.compensations.values()):
            return
        for comp in reversed(record.compensations.values()):
            if comp.status != "registered":
                continue
            if record.moot(comp):
                self._emit(
                    CompensationSkipped(
                        index=comp.index, reason="none of the calls it guards took effect"
                    )
                )
                continue
            self._schedule(comp.address, comp.command, comp.args, comp.retry, _same, comp.index)
            return
        self._emit(Compensated(error=record.error or "compensated"))

    @property
    def continuing(self) -> bool:
        """The code asked to continue as new and this run is winding down (or has ended)."""
        return self._next_input is not None and self.phase == "finishing"

    def _continued(self) -> ContinuedAsNew:
        """The end of this run: the next one's input and the signals nobody read, in the
        order they came."""
        assert self._next_input is not None
        unread = sorted(
            (arrival, name, payload)
            for name, queue in self._signals.items()
            for arrival, _, payload in queue
        )
        carried = [{"name": name, "payload": payload} for _, name, payload in unread]
        return ContinuedAsNew(input=self._next_input[0], run=self.run, carried=carried)

    # -- what the coordinator reads ----------------------------------------------------

    @property
    def final(self) -> bool:
        return self.phase in FINAL_PHASES

    def in_flight(self) -> list[StepInfo]:
        return self.record.in_flight()

    def accepts_reply(self, seq: int, attempt: int, address: str) -> bool:
        step = self.record.steps.get(seq)
        return (
            step is not None
            and step.status == "pending"
            and step.attempts == attempt
            and step.address == address
        )

    def adopt(self, recorded: Decision) -> None:
        """After a replayed decision matched, keep what the history says (retry policies,
        due times), not what the code would choose today."""
        if isinstance(recorded, CallScheduled):
            step = self.record.steps[recorded.seq]
            step.not_before = recorded.not_before
            step.retry = recorded.retry
        elif isinstance(recorded, CompensationRegistered):
            self.record.compensations[recorded.index].retry = recorded.retry
        elif isinstance(recorded, TimerStarted):
            self.record.timers[recorded.seq].due_at = recorded.due_at


def _same(value: Any) -> Any:
    return value
