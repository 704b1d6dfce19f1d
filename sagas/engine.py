"""The replay engine: drives one execution's coroutine, one input at a time.

Live and replay run the same code path. Each *input* (start, reply, signal, cancel) is
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
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from actors import EntitySpec
from eventstore import JSONDict, RecordedEvent
from sagas.context import CallHandle, Decoder, Pending, WorkflowContext
from sagas.definition import AnyWorkflow, split_address
from sagas.errors import (
    NonDeterminismError,
    ReplayError,
    SagasError,
    StepFailed,
    StepRejected,
    WorkflowError,
)
from sagas.history import (
    Annotation,
    CallCompleted,
    CallScheduled,
    CancelRequested,
    Compensated,
    Compensating,
    CompensationRegistered,
    CompensationSkipped,
    Completed,
    Decision,
    Failed,
    InputEvent,
    SignalReceived,
    Started,
)
from sagas.retry import RetryPolicy

Phase = Literal["new", "running", "finishing", "compensating", "completed", "compensated", "failed"]
FINAL_PHASES = ("completed", "compensated", "failed")


def describe(exc: BaseException) -> str:
    if isinstance(exc, SagasError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Call:
    """A call the execution made: a forward step or a compensation."""

    seq: int
    address: str
    command: str
    args: JSONDict
    retry: RetryPolicy | None
    compensation: int | None
    guards: tuple[int, ...]
    decode: Decoder
    command_id: str
    handle: CallHandle[Any] | None = None
    attempt: int = 1
    not_before: datetime | None = None
    status: str | None = None
    """The final outcome (None while in flight or waiting for a retry)."""
    error: str | None = None

    @property
    def correlation(self) -> str:
        return f"{self.seq}.{self.attempt}"


@dataclass
class Compensation:
    index: int
    address: str
    command: str
    args: JSONDict
    retry: RetryPolicy
    guarded: bool
    calls: list[int] = field(default_factory=list)
    state: Literal["registered", "running", "done", "skipped", "failed"] = "registered"

    @property
    def name(self) -> str:
        return f"{self.address}.{self.command}"


class Engine:
    """One execution's code, its calls and its compensation stack, in memory."""

    def __init__(
        self,
        definition: AnyWorkflow,
        address: str,
        entities: Mapping[str, EntitySpec] | None = None,
    ) -> None:
        self.definition = definition
        self.address = address
        self.workflow_type, self.workflow_id = split_address(address)
        self.memo: dict[str, Any] = {}
        self.replaying = False
        self.phase: Phase = "new"
        self.calls: dict[int, Call] = {}
        self.compensations: list[Compensation] = []
        self.error: str | None = None
        self.result: Any = None
        self.cancelled = False
        self._entities = dict(entities or {})
        self._seq = 0
        self._now: datetime | None = None
        self._rng = random.Random(0)
        self._coro: Coroutine[Any, Any, Any] | None = None
        self._driving = False
        self._inject: BaseException | None = None
        self._guards: list[int] = []
        self._signals: dict[str, deque[Any]] = {}
        self._waiters: dict[str, deque[Pending[Any]]] = {}
        self._out: list[Decision] = []

    # -- inputs ---------------------------------------------------------------------------

    def feed(self, event: InputEvent) -> list[Decision]:
        """Process one input; return the decisions the code and the saga took."""
        self._out = []
        self._now = event.at
        if isinstance(event, Started):
            self._start(event)
        elif isinstance(event, CallCompleted):
            self._reply(event)
        elif isinstance(event, SignalReceived):
            self._signal(event)
        elif isinstance(event, CancelRequested):
            self._cancel(event)
        else:
            raise WorkflowError(f"{event.event_type} is not an input the engine knows")
        self._settle()
        out, self._out = self._out, []
        return out

    def _start(self, event: Started) -> None:
        if self.phase != "new":
            raise WorkflowError(f"{self.address} is already started")
        self._rng = random.Random(event.seed)
        self.phase = "running"
        parsed = self.definition.parse_input(event.input)
        coro = self.definition.run_fn(WorkflowContext(self), parsed)
        self._coro = cast(Coroutine[Any, Any, Any], coro)
        self._drive()

    def _reply(self, event: CallCompleted) -> None:
        call = self.calls[event.seq]
        if event.status == "applied":
            call.status = "applied"
            if call.compensation is not None:
                self._compensation(call.compensation).state = "done"
            elif call.handle is not None:
                try:
                    call.handle.resolve(call.decode(event.result))
                except Exception as exc:
                    call.handle.fail(
                        WorkflowError(
                            f"the result of {call.address}.{call.command} does not fit its "
                            f"declared type: {describe(exc)}"
                        )
                    )
        else:
            retry = call.retry
            if retry is not None and event.status != "invalid" and retry.allows(call.attempt + 1):
                self._retry(call, retry)
                return
            call.status, call.error = event.status, event.error or event.status
            if call.compensation is not None:
                comp = self._compensation(call.compensation)
                comp.state = "failed"
                self.phase = "failed"
                self._out.append(
                    Failed(
                        error=(
                            f"compensation #{comp.index} {comp.name} could not finish after "
                            f"{call.attempt} attempt(s): {event.status}: {call.error}; the saga "
                            f"failed with: {self.error}"
                        ),
                        compensation=comp.name,
                    )
                )
                return
            if call.handle is not None:
                kind = StepRejected if event.status == "rejected" else StepFailed
                call.handle.fail(
                    kind(
                        call.seq, call.address, call.command, event.status, call.error, call.attempt
                    )
                )
        self._drive()

    def _retry(self, call: Call, retry: RetryPolicy) -> None:
        call.attempt += 1
        call.command_id = self._command_id(call.seq, call.attempt)
        call.not_before = self.now() + retry.delay(call.attempt)
        self._out.append(self._scheduled(call))

    def _signal(self, event: SignalReceived) -> None:
        value = self.definition.decode_signal(event.name, event.payload)
        waiters = self._waiters.get(event.name)
        if waiters:
            waiters.popleft().resolve(value)
        else:
            self._signals.setdefault(event.name, deque()).append(value)
        self._drive()

    def _cancel(self, event: CancelRequested) -> None:
        if self.phase not in ("running", "finishing"):
            return
        self.cancelled = True
        self.error = f"cancelled: {event.reason}" if event.reason else "cancelled"
        self.phase = "compensating"
        coro, self._coro = self._coro, None
        if coro is not None:
            self._driving = True
            try:
                # Code that awaits in a `finally` cannot run after cancellation: ignore it.
                with contextlib.suppress(Exception):
                    coro.close()
            finally:
                self._driving = False
        self._out.append(Compensating(error=self.error, cancelled=True))

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
                    self._returned(stop.value)
                    return
                except Exception as exc:
                    self._coro = None
                    self._raised(exc)
                    return
                if not isinstance(awaited, Pending):
                    self._inject = WorkflowError(
                        f"workflow code awaited {awaited!r}, which is not a workflow step; only "
                        "ctx.call, ctx.wait_signal and ctx.gather may be awaited (asyncio and "
                        "other event loops cannot run inside a workflow)"
                    )
                    continue
                if not awaited.done:
                    return
        finally:
            self._driving = False

    def _returned(self, value: Any) -> None:
        try:
            self.result = self.definition.encode_output(value)
        except Exception as exc:
            self._raised(
                WorkflowError(
                    f"the workflow returned {value!r}, which does not fit its output type: {exc}"
                )
            )
            return
        self.phase = "finishing"

    def _raised(self, exc: Exception) -> None:
        self.error = describe(exc)
        self.phase = "compensating"
        self._out.append(Compensating(error=self.error))

    # -- the saga ----------------------------------------------------------------------

    def _settle(self) -> None:
        """After an input: finish, or compensate, once no forward call is in flight."""
        if self._coro is not None or self.phase not in ("finishing", "compensating"):
            return
        if any(c.status is None for c in self.calls.values() if c.compensation is None):
            return
        if self.phase == "finishing":
            self.phase = "completed"
            self._out.append(Completed(result=self.result))
            return
        if any(c.state == "running" for c in self.compensations):
            return
        for comp in reversed(self.compensations):
            if comp.state != "registered":
                continue
            if comp.guarded and not any(self.calls[s].status == "applied" for s in comp.calls):
                comp.state = "skipped"
                self._out.append(
                    CompensationSkipped(
                        index=comp.index, reason="none of the calls it guards took effect"
                    )
                )
                continue
            comp.state = "running"
            self._schedule(comp.address, comp.command, comp.args, comp.retry, _same, comp.index)
            return
        self.phase = "compensated"
        self._out.append(Compensated(error=self.error or "compensated"))

    def _compensation(self, index: int) -> Compensation:
        return self.compensations[index - 1]

    # -- what the context calls ----------------------------------------------------------

    def now(self) -> datetime:
        if self._now is None:
            raise WorkflowError("the execution has not started")
        return self._now

    def random_bits(self, bits: int) -> int:
        self._active("draw random numbers")
        return self._rng.getrandbits(bits)

    def entity_spec(self, name: str) -> EntitySpec | None:
        return self._entities.get(name)

    def schedule_call(
        self,
        address: str,
        command: str,
        args: JSONDict,
        retry: RetryPolicy | None,
        decode: Decoder,
    ) -> CallHandle[Any]:
        self._active("make calls")
        call = self._schedule(address, command, args, retry, decode, None)
        handle: CallHandle[Any] = CallHandle(call.seq, address, command)
        call.handle = handle
        return handle

    def register_compensation(
        self, address: str, command: str, args: JSONDict, retry: RetryPolicy, guarded: bool
    ) -> int:
        self._active("register compensations")
        comp = Compensation(len(self.compensations) + 1, address, command, args, retry, guarded)
        self.compensations.append(comp)
        self._out.append(
            CompensationRegistered(
                index=comp.index,
                address=address,
                command=command,
                args=args,
                retry=retry,
                guarded=guarded,
            )
        )
        return comp.index

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
            pending.resolve(buffered.popleft())
        else:
            self._waiters.setdefault(name, deque()).append(pending)
        return pending

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
    ) -> Call:
        self._seq += 1
        guards = tuple(self._guards) if compensation is None else ()
        call = Call(
            seq=self._seq,
            address=address,
            command=command,
            args=args,
            retry=retry,
            compensation=compensation,
            guards=guards,
            decode=decode,
            command_id=self._command_id(self._seq, 1),
        )
        for g in guards:
            self._compensation(g).calls.append(call.seq)
        self.calls[call.seq] = call
        self._out.append(self._scheduled(call))
        return call

    def _scheduled(self, call: Call) -> CallScheduled:
        return CallScheduled(
            seq=call.seq,
            attempt=call.attempt,
            address=call.address,
            command=call.command,
            args=call.args,
            command_id=call.command_id,
            compensation=call.compensation,
            guards=list(call.guards),
            retry=call.retry,
            not_before=call.not_before,
        )

    def _command_id(self, seq: int, attempt: int) -> str:
        return f"{self.address}#{seq}" if attempt == 1 else f"{self.address}#{seq}.{attempt}"

    # -- what the coordinator reads ----------------------------------------------------

    @property
    def final(self) -> bool:
        return self.phase in FINAL_PHASES

    def in_flight(self) -> list[Call]:
        return [c for c in self.calls.values() if c.status is None]

    def accepts_reply(self, seq: int, attempt: int, address: str) -> bool:
        call = self.calls.get(seq)
        return (
            call is not None
            and call.status is None
            and call.attempt == attempt
            and call.address == address
        )

    def adopt(self, recorded: Decision) -> None:
        """After a replayed decision matched, keep what the history says (retry policies)."""
        if isinstance(recorded, CallScheduled):
            call = self.calls[recorded.seq]
            call.not_before = recorded.not_before
            call.retry = recorded.retry
        elif isinstance(recorded, CompensationRegistered):
            self._compensation(recorded.index).retry = recorded.retry


def _same(value: Any) -> Any:
    return value


def replay(
    definition: AnyWorkflow,
    address: str,
    events: Iterable[RecordedEvent],
    entities: Mapping[str, EntitySpec] | None = None,
) -> Engine:
    """Rebuild an engine from a history, checking that the code still takes its decisions."""
    engine = Engine(definition, address, entities)
    engine.replaying = True
    try:
        _replay_into(engine, events)
    except ReplayError:
        raise
    except Exception as exc:
        raise ReplayError(address, f"replaying the history failed: {describe(exc)}") from exc
    engine.replaying = False
    return engine


def _replay_into(engine: Engine, events: Iterable[RecordedEvent]) -> None:
    address = engine.address
    produced: deque[Decision] = deque()
    for rec in events:
        event = rec.event
        if isinstance(event, Annotation):
            continue
        if isinstance(event, InputEvent):
            if produced:
                raise diverged(address, rec.version, None, produced[0])
            try:
                produced.extend(engine.feed(event))
            except Exception as exc:
                raise ReplayError(
                    address,
                    f"replaying history event #{rec.version} ({event.event_type}) failed: "
                    f"{describe(exc)}",
                    rec.version,
                ) from exc
        elif isinstance(event, Decision):
            if not produced:
                raise diverged(address, rec.version, event, None)
            mine = produced.popleft()
            if mine.signature() != event.signature():
                raise diverged(address, rec.version, event, mine)
            engine.adopt(event)
        else:
            raise ReplayError(
                address,
                f"history event #{rec.version} ({event.event_type}) is not a workflow event",
            )
    if produced:
        raise diverged(address, None, None, produced[0])


def diverged(
    address: str, position: int | None, expected: Decision | None, actual: Decision | None
) -> NonDeterminismError:
    """The error for a replay where the history has ``expected`` and the code did ``actual``."""
    named = next(
        (d for d in (expected, actual) if isinstance(d, CallScheduled)),
        expected or actual,
    )
    if isinstance(named, CallScheduled):
        step = f"step {named.seq}"
    elif isinstance(named, CompensationRegistered):
        step = f"compensation #{named.index}"
    else:
        step = named.describe() if named is not None else "the end"
    return NonDeterminismError(
        address,
        position,
        step,
        expected.describe() if expected is not None else "nothing more at this point",
        actual.describe() if actual is not None else "nothing at this point",
    )
