"""The steps workflow code takes, checked and recorded as decisions: the engine's half
that :class:`~sagas.WorkflowContext` calls.

Every ``ctx.call``, activity, timer, signal wait, compensation, child and patch lands
here while the code runs; each is refused unless the code is running (not from a query or
another thread), and each becomes a decision folded into the execution's record at once.
This half also owns the in-memory state of an execution, so :class:`~sagas.engine.Engine`
builds on it the half that feeds inputs, drives the coroutine and runs the saga.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, Literal, NoReturn, cast

from actors import RetryPolicy
from actors.timers import due_time
from eventstore import JSONDict
from sagas.activities import Activity, ActivityOptions
from sagas.activity_tasks import activity_address
from sagas.definition import AnyWorkflow, split_address
from sagas.errors import WorkflowError
from sagas.fold import ExecutionRecord
from sagas.history import (
    CallScheduled,
    CompensationRegistered,
    Decision,
    Patched,
    TimerCancelled,
    TimerStarted,
)
from sagas.local_activities import LOCAL_ROUTE, LocalAttempts
from sagas.pending import CallHandle, Decoder, Pending
from sagas.runs import step_prefix

ParentClose = Literal["cancel", "abandon"]
"""What happens to a child still running when its parent's code ends."""
Phase = Literal["new", "running", "finishing", "compensating", "completed", "compensated", "failed"]


class EngineSteps:
    """An execution's in-memory state and the steps its code may take.

    Every decision is folded into :attr:`record` as it is taken; what only the running
    code needs (the handles it awaits, how to decode a result) is kept beside it.
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

    # -- what the context calls ----------------------------------------------------------

    def _emit(self, decision: Decision) -> None:
        self._out.append(decision)
        self.record.apply(decision, self.now())

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

    # -- conditions and children ------------------------------------------------------

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

    def next_seq(self) -> int:
        return self._seq + 1

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
