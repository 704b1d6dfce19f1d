"""The replay engine: drives one execution's coroutine, one input at a time.

Live and replay run the same code path. Each *input* (start, reply, signal, timer, cancel) is
fed to :meth:`Engine.feed`, which resumes the coroutine until it waits again and returns
the *decisions* it took (calls scheduled, compensations registered, the end). Live, the
coordinator records the input and its decisions together; on replay, :func:`replay`
feeds the recorded inputs and checks that the code takes the recorded decisions, raising
:class:`~sagas.NonDeterminismError` at the first difference.

The saga machinery lives here too: when the code fails or is cancelled, the engine waits
for calls still in flight (their outcome decides whether a guarded compensation has
anything to undo), then runs the compensations newest first, one at a time, each retried
per its :class:`~sagas.RetryPolicy`.
"""

from __future__ import annotations

import contextlib
import random
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, Literal, NoReturn, cast

from actors import RetryPolicy
from actors.timers import due_time
from eventstore import JSONDict
from sagas.activities import Activity, ActivityOptions
from sagas.activity_tasks import TIMED_OUT, activity_address, failure, timeout_of
from sagas.context import CallHandle, Decoder, Pending, WorkflowContext
from sagas.definition import AnyWorkflow, split_address
from sagas.errors import (
    ActivityError,
    ChildWorkflowError,
    SagasError,
    StepFailed,
    StepRejected,
    WorkflowError,
)
from sagas.fold import ExecutionRecord, StepInfo
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
    Patched,
    SignalReceived,
    Started,
    TimerCancelled,
    TimerFired,
    TimerStarted,
    UpdateAccepted,
    UpdateCompleted,
)
from sagas.local_activities import LOCAL_ROUTE, LocalAttempts
from sagas.runs import step_prefix

ParentClose = Literal["cancel", "abandon"]
"""What happens to a child still running when its parent's code ends."""
Phase = Literal["new", "running", "finishing", "compensating", "completed", "compensated", "failed"]
FINAL_PHASES = ("completed", "compensated", "failed")


def describe(exc: BaseException) -> str:
    if isinstance(exc, SagasError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def correlation(step: StepInfo) -> str:
    """What a reply to this attempt of a call carries, so a late reply of an earlier
    attempt is told apart."""
    return f"{step.seq}.{step.attempts}"


class Engine:
    """One execution's code and its saga, in memory; its state is :attr:`record`.

    Every input and every decision is folded into the record as it happens, so the
    engine reads the status of its steps and compensations from the same fold that
    readers see; what only the running code needs (the handles it awaits, how to
    decode a result) is kept beside it.
    """

    def __init__(self, definition: AnyWorkflow, address: str, run: int = 1) -> None:
        self.definition = definition
        self.address = address
        self.run = run
        self._handover = False
        self._next_input: tuple[Any] | None = None
        """Set by ``ctx.continue_as_new``: the next run's input (JSON)."""
        self.workflow_type, self.workflow_id = split_address(address)
        self.record = ExecutionRecord(address, self.workflow_type, self.workflow_id)
        self.memo: dict[str, Any] = {}
        self.replaying = False
        self.cancelled = False
        self._returned = False
        self._result: Any = None
        self._handles: dict[int, CallHandle[Any]] = {}
        self._decoders: dict[int, Decoder] = {}
        self._seq = 0
        self._now: datetime | None = None
        self._rng = random.Random(0)
        self._coro: Coroutine[Any, Any, Any] | None = None
        self._driving = False
        self._inject: BaseException | None = None
        self._guards: list[int] = []
        self._signals: dict[str, deque[tuple[int, Any, Any]]] = {}
        """Signals received and not read yet: (arrival, value, payload) per name."""
        self._arrivals = 0
        self._waiters: dict[str, deque[Pending[Any]]] = {}
        self._timers: dict[int, Pending[None]] = {}
        self._children: dict[int, ParentClose] = {}
        self._signal_guards: dict[str, Callable[[Any], str | None]] = {}
        self._conditions: list[tuple[Callable[[], bool], Pending[None]]] = []
        self.local = LocalAttempts(self)
        self.recorded_patches: frozenset[str] = frozenset()
        """While replaying: the change ids the history took the new branch of."""
        self._out: list[Decision] = []

    @property
    def phase(self) -> Phase:
        logical = self.record.logical
        if logical == "pending":
            return "new"
        if logical == "running" and self._returned:
            return "finishing"
        return cast(Phase, logical)

    @property
    def error(self) -> str | None:
        return self.record.error

    @property
    def result(self) -> Any:
        return self.record.result

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

    def _emit(self, decision: Decision) -> None:
        self._out.append(decision)
        self.record.apply(decision, self.now())

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

    def wait_condition(self, predicate: Callable[[], bool], what: str) -> Pending[None]:
        self._active("wait for conditions")
        pending: Pending[None] = Pending(what)
        if predicate():
            pending.resolve(None)
            return pending
        entry = (predicate, pending)
        self._conditions.append(entry)
        pending.on_abandon(
            lambda: self._conditions.remove(entry) if entry in self._conditions else None
        )
        return pending

    def _check_conditions(self) -> bool:
        """Resolve the waits whose condition now holds; True if any did."""
        met = [(p, w) for p, w in self._conditions if p()]
        for entry in met:
            self._conditions.remove(entry)
            entry[1].resolve(None)
        return bool(met)

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

    def next_seq(self) -> int:
        return self._seq + 1

    def accepts_child_result(self, seq: int) -> bool:
        child = self.record.children.get(seq)
        return child is not None and child.status in ("starting", "running")

    def schedule_child(
        self,
        address: str,
        input_json: Any,
        parent_close: ParentClose,
        decode: Decoder,
    ) -> CallHandle[Any]:
        self._active("start child workflows")
        if address == self.address:
            raise WorkflowError(f"{self.address} cannot start itself as its own child")
        seq = self._seq + 1
        args: JSONDict = {"input": input_json, "parent": self.address, "parent_seq": seq}
        self._children[seq] = parent_close
        self._schedule(address, "start", args, None, decode, None)
        handle: CallHandle[Any] = CallHandle(seq, address, "start")
        self._handles[seq] = handle
        return handle

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

    # -- what the context calls ----------------------------------------------------------

    def continue_as_new(self, input_json: Any) -> Pending[NoReturn]:
        """End this run once its calls in flight are answered; the next run starts from
        ``input_json`` in the same commit. Invalid input raises here, recording nothing."""
        self._active("continue as new")
        if self._handover:
            raise WorkflowError(
                f"{self.address}: run {self.run} cannot continue as new while it is being "
                "handed over from the previous run; wait for something (a signal, a timer, a "
                "call) first"
            )
        self._next_input = (self.definition.encode_input(input_json),)
        return Pending("continue as new")

    def now(self) -> datetime:
        if self._now is None:
            raise WorkflowError("the execution has not started")
        return self._now

    def random_bits(self, bits: int) -> int:
        self._active("draw random numbers")
        return self._rng.getrandbits(bits)

    def schedule_call(
        self,
        address: str,
        command: str,
        args: JSONDict,
        retry: RetryPolicy | None,
        decode: Decoder,
    ) -> CallHandle[Any]:
        self._active("make calls")
        seq = self._schedule(address, command, args, retry, decode, None)
        handle: CallHandle[Any] = CallHandle(seq, address, command)
        self._handles[seq] = handle
        return handle

    def schedule_activity(
        self,
        name: str,
        args: JSONDict,
        retry: RetryPolicy,
        options: ActivityOptions,
        decode: Decoder,
    ) -> CallHandle[Any]:
        self._active("run activities")
        seq = self._schedule(activity_address(name), name, args, retry, decode, None, options)
        handle: CallHandle[Any] = CallHandle(seq, activity_address(name), name)
        self._handles[seq] = handle
        return handle

    def register_compensation(
        self, address: str, command: str, args: JSONDict, retry: RetryPolicy, guarded: bool
    ) -> int:
        self._active("register compensations")
        index = len(self.record.compensations) + 1
        self._emit(
            CompensationRegistered(
                index=index,
                address=address,
                command=command,
                args=args,
                retry=retry,
                guarded=guarded,
            )
        )
        return index

    def open_guard(self, index: int) -> None:
        self._guards.append(index)

    def close_guard(self, index: int) -> None:
        if index in self._guards:
            self._guards.remove(index)

    def wait_signal(self, name: str) -> Pending[Any]:
        self._active("wait for signals")
        self.definition.signal_adapter(name)
        pending: Pending[Any] = Pending(f"signal {name!r}")
        buffered = self._signals.get(name)
        if buffered:
            pending.resolve(buffered.popleft()[1])
        else:
            waiters = self._waiters.setdefault(name, deque())
            waiters.append(pending)
            pending.on_abandon(lambda: waiters.remove(pending) if pending in waiters else None)
        return pending

    def start_timer(self, delay: timedelta | datetime, label: str) -> Pending[None]:
        self._active("set timers")
        return self._timer(delay, label)

    def _timer(self, delay: timedelta | datetime, label: str) -> Pending[None]:
        due = due_time(self.now(), delay)  # refuses negative and absurd delays, before recording
        self._seq += 1
        seq = self._seq
        handle: Pending[None] = Pending(f"timer #{seq} ({label})")
        self._timers[seq] = handle
        self._emit(TimerStarted(seq=seq, due_at=due, label=label[:200]))

        def cancelled() -> None:
            if self._timers.pop(seq, None) is not None and self.record.timers[seq].status == (
                "pending"
            ):
                self._emit(TimerCancelled(seq=seq))

        handle.on_abandon(cancelled)
        return handle

    def guard_signal(self, name: str, guard: Callable[[Any], str | None] | None) -> None:
        """While set, a signal ``name`` whose payload the guard objects to (it returns why)
        is refused before anything is recorded."""
        if guard is None:
            self._signal_guards.pop(name, None)
        else:
            self._signal_guards[name] = guard

    def signal_refusal(self, name: str, payload: Any) -> str | None:
        guard = self._signal_guards.get(name)
        if guard is None:
            return None
        return guard(self.definition.decode_signal(name, payload))

    def record_decision(self, decision: Decision) -> None:
        """A decision a helper of the context takes (an approval step), recorded in order."""
        self._active("record steps")
        self._emit(decision)

    def patched(self, change_id: str) -> bool:
        """The new branch for code running live or replaying a history that took it; the
        old one for a history recorded before the change."""
        self._active("check patches")
        if self.replaying and change_id not in self.recorded_patches:
            return False
        self._emit(Patched(change_id=change_id))
        return True

    def run_local(self, act: Activity[Any, Any], body: JSONDict) -> CallHandle[Any]:
        self._active("run local activities")
        self._seq += 1
        handle: CallHandle[Any] = CallHandle(self._seq, f"{LOCAL_ROUTE}{act.name}", act.name)
        self.local.start(act, body, self._seq, handle)
        return handle

    def emit(self, decision: Decision) -> None:
        """Record a decision taken outside the code's own steps (a local attempt)."""
        self._emit(decision)

    def timer(self, delay: timedelta | datetime, label: str) -> Pending[None]:
        """A timer set by the machinery, not the code (a retry's wait)."""
        return self._timer(delay, label)

    def accepts_timer(self, seq: int) -> bool:
        timer = self.record.timers.get(seq)
        return timer is not None and timer.status == "pending"

    def _active(self, what: str) -> None:
        if not self._driving or self.phase != "running":
            raise WorkflowError(
                f"{self.address}: workflow code may {what} only while it runs (not from "
                "queries, other threads, or after it was cancelled)"
            )

    def _schedule(
        self,
        address: str,
        command: str,
        args: JSONDict,
        retry: RetryPolicy | None,
        decode: Decoder,
        compensation: int | None,
        activity: ActivityOptions | None = None,
    ) -> int:
        self._seq += 1
        guards = list(self._guards) if compensation is None else []
        self._decoders[self._seq] = decode
        scheduled = self._scheduled(self._seq, address, command, args, compensation, guards, retry)
        if activity is not None:
            scheduled = scheduled.model_copy(update={"activity": activity})
        self._emit(scheduled)
        return self._seq

    def _scheduled(
        self,
        seq: int,
        address: str,
        command: str,
        args: JSONDict,
        compensation: int | None,
        guards: list[int],
        retry: RetryPolicy | None,
        *,
        attempt: int = 1,
        not_before: datetime | None = None,
    ) -> CallScheduled:
        return CallScheduled(
            seq=seq,
            attempt=attempt,
            address=address,
            command=command,
            args=args,
            command_id=self._command_id(seq, attempt),
            compensation=compensation,
            guards=guards,
            retry=retry,
            not_before=not_before,
        )

    def _command_id(self, seq: int, attempt: int) -> str:
        prefix = step_prefix(self.address, self.run)
        return f"{prefix}#{seq}" if attempt == 1 else f"{prefix}#{seq}.{attempt}"

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
